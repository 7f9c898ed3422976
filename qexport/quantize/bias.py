"""Bias of the integer forward pass, README "Numerics": bias (seed 002).

Input codes x stand for x / G (G = input gain, default 256) and the layer's effective scale is
S_eff = m / 2**s, so the bias in accumulator units is

    b_q = rint(b * G / (m / 2**s))        float64, round half to even, stored as int32

m and s are scalars (per tensor) or (C,) arrays matching b (per channel).
"""

from __future__ import annotations

import numpy as np

from ..errors import PlanError

_I32 = np.iinfo(np.int32)


def quantize_bias(b, m, s, input_gain: int = 256, layer: str = "?") -> np.ndarray:
    """int32 b_q (b, m, s broadcast together).  PlanError (naming `layer`) when a value falls outside int32,
    when m == 0 for a non-zero bias (a zero scale cannot carry one), or when b is not finite."""
    b = np.asarray(b, dtype=np.float64)
    m = np.asarray(m, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    if not np.isfinite(b).all():
        raise PlanError(f"layer {layer}: bias has non-finite values")
    if (m < 0).any() or (s < 0).any() or (s > 62).any():
        raise PlanError(f"layer {layer}: integer scale needs m >= 0 and 0 <= s <= 62")
    m, s, b = np.broadcast_arrays(m, s, b)
    zero_m = m == 0
    if (zero_m & (b != 0)).any():
        raise PlanError(f"layer {layer}: integer scale multiplier is 0 but the bias is not zero")
    s_eff = m.astype(np.float64) / np.ldexp(1.0, s)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = np.where(zero_m, 0.0, np.rint(b * float(input_gain) / np.where(zero_m, 1.0, s_eff)))
    if not (np.isfinite(q).all() and (q >= _I32.min).all() and (q <= _I32.max).all()):
        worst = float(np.max(np.abs(np.where(np.isfinite(q), q, np.inf))))
        raise PlanError(f"layer {layer}: quantized bias does not fit int32 (|b_q| up to {worst:.4g}); "
                        f"use a larger scale or a smaller input gain")  # fmt: skip
    return q.astype(np.int32)
