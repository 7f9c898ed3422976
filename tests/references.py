"""Independent reference transcriptions shared by several test files, written once.

Nothing here calls qexport: each function is written from the README's "Numerics" text (or copied
from the seed code it names), so a test comparing qexport with it compares two implementations.

- `seed002_quantize_tensor`: seed 002's `quantize_tensor` (net_quant.py), torch, verbatim
  (used by tests/test_quant_affine.py and tests/test_pipeline.py);
- `ternary_channel` / `check_ternary`: the TWN rule, one channel at a time in float64 with
  exactly rounded sums (`math.fsum`) and the strict comparison (used by tests/test_quant_ternary.py and
  tests/test_quant_fastpath.py).
"""

from __future__ import annotations

import math

import numpy as np


def seed002_quantize_tensor(x, num_bits=8):
    """Copied from seed 002 (net_quant.py), unchanged apart from indentation (torch tensors in/out)."""
    qmin = 0.
    qmax = 2.**num_bits - 1.
    min_val, max_val = x.min(), x.max()
    scale = (max_val - min_val) / (qmax - qmin)
    initial_zero_point = qmin - min_val / scale
    zero_point = 0
    if initial_zero_point < qmin:
        zero_point = qmin
    elif initial_zero_point > qmax:
        zero_point = qmax
    else:
        zero_point = initial_zero_point
    zero_point = int(zero_point)
    q_x = zero_point + x / scale
    q_x.clamp_(qmin, qmax).round_()
    q_x = q_x.round().int()
    return q_x, scale, zero_point


# ------------------------------------------------------------------------------------------------
# Ternary (README "Numerics", TWN paper)

F32_ULP_MIN = 2.0**-149  # spacing of float32 subnormals: the rounding step of a tiny delta


def ternary_channel(values, ratio):
    """TWN rule for one channel in float64, sums exactly rounded (math.fsum), strict comparison:
    delta = float32(ratio * mean|w|); t = sign(w) where |w| > delta else 0; alpha = mean of the
    kept |w|, 0 when none is kept.  Returns (delta, flat int8 codes, alpha, empty)."""
    vals = np.asarray(values, np.float64).reshape(-1)  # exact for float32 input
    mag = np.abs(vals)
    delta = float(np.float32(ratio * math.fsum(mag.tolist()) / len(vals)))  # exactly rounded sum
    keep = mag > delta  # strict
    codes = np.where(keep, np.where(vals > 0, 1, -1), 0).astype(np.int8)
    kept = mag[keep].tolist()
    alpha = math.fsum(kept) / len(kept) if kept else 0.0
    return delta, codes, alpha, not kept


def check_ternary(w, per_channel, ratio, res) -> None:
    """Assert that `res` (a qexport TernaryResult for ternarize(w, per_channel, ratio)) follows the
    rule, channel by channel, against `ternary_channel`.

    qexport's float64 mean may differ from fsum's exact one in the last bits before the float32
    rounding, so delta is compared within that rounding; where the two float32 deltas are equal the
    codes must be identical and alpha equal within float32 rounding; in every case the codes must
    follow from the exported float32 delta exactly.  Returns nothing: every check is an assert."""
    w = np.asarray(w, np.float32)
    assert res.codes.dtype == np.int8 and res.codes.shape == w.shape
    shape_p = (w.shape[0],) if per_channel else ()
    assert res.delta.shape == shape_p and res.alpha.shape == shape_p
    assert res.delta.dtype == np.float32 and res.alpha.dtype == np.float32
    assert np.isfinite(res.alpha).all() and (res.alpha >= 0).all() and np.isfinite(res.delta).all()
    rows = [w[c] for c in range(w.shape[0])] if per_channel else [w]
    codes = res.codes if per_channel else res.codes[None]
    deltas, alphas = np.atleast_1d(res.delta), np.atleast_1d(res.alpha)
    empty, all_equal = 0, True
    for c, row in enumerate(rows):
        delta, ref_codes, alpha, is_empty = ternary_channel(row, ratio)
        empty += is_empty
        assert abs(float(deltas[c]) - delta) <= abs(delta) * 2.0**-22 + F32_ULP_MIN, (c, deltas[c], delta)
        if deltas[c] == np.float32(delta):
            assert np.array_equal(np.asarray(codes[c]).reshape(-1), ref_codes), c
            assert abs(float(alphas[c]) - alpha) <= alpha * 2.0**-22 + 1e-45, (c, alphas[c], alpha)
        else:
            all_equal = False
        # codes always consistent with the exported float32 delta
        mag = np.abs(row.astype(np.float64))
        assert np.array_equal(codes[c] != 0, mag > float(deltas[c])), c
        assert np.array_equal(codes[c][codes[c] != 0], np.where(row[codes[c] != 0] > 0, 1, -1).astype(np.int8)), c
        assert (alphas[c] == 0) == (not (codes[c] != 0).any()), c
    if all_equal:
        assert res.empty_channels == empty
