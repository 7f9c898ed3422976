"""Scale policy of the quantize stage (README "Numerics": integer scale, bias): every run-time
float scale as a checked (m, s) pair, and the smallest affine scale the integer pass can use."""

from __future__ import annotations

import numpy as np

from ..errors import PlanError
from ..model import LayerPlan, PlanOptions
from . import affine, dead_channels, intscale


def checked_int_scale(layer: str, scale: np.ndarray, opts: PlanOptions, what: str):
    """(m, s, relative error) for a run-time float scale, checked against --max-scale-error."""
    if layer in opts.scale_shift:
        m_val, s_val = opts.scale_shift[layer]
        m = np.full(scale.shape, m_val, np.int32)
        s = np.full(scale.shape, s_val, np.int32)
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.abs(m / np.exp2(s.astype(np.float64)) - scale) / scale
        return m, s, err  # an explicit override is the user's choice: reported, not refused
    m, s, err = intscale.integer_scale(scale.astype(np.float64), opts.mult_bits)
    m, s, err = dead_channels.zero_dead(scale, m, s, err, opts.max_scale_error)  # exact zeros (m = 0)
    if err.size and float(np.max(err)) > opts.max_scale_error:
        raise PlanError(dead_channels.scale_error_message(layer, what, scale, m, s, err, opts))
    return m, s, err


def scale_floor(b, opts: PlanOptions, per_channel: bool, channels: int) -> np.ndarray:
    """Smallest affine scale the integer pass can use: m >> s within --max-scale-error needs
    S >= m_min / 2^31 (m_min = ceil(1 / (2 * max error)), capped at 2^M - 1), and the int32 bias
    round(b * G / S) needs S >= |b| * G / (2^31 - 1) (with the (m, s) error as margin)."""
    err = max(opts.max_scale_error, 1e-12)
    m_min = min(int(np.ceil(0.5 / err)), (1 << opts.mult_bits) - 1)
    floor = np.full(channels if per_channel else (), m_min / 2.0**31)
    if b is not None:
        need = np.abs(np.asarray(b, np.float64)) * opts.input_gain * (1 + err) * (1 + 1e-6) / (2.0**31 - 1)
        floor = np.maximum(floor, need if per_channel else need.max(initial=0.0))
    return floor


def widen_tiny_scales(name: str, w, b, res, lp: LayerPlan, opts: PlanOptions):
    """Raise scales below scale_floor (dead or near-dead channels, e.g. BN gamma ~ 0 after folding)."""
    floor = scale_floor(b, opts, lp.per_channel, w.shape[0])
    low = res.scale.astype(np.float64) < floor
    if not low.any():
        return res, 0
    if opts.zero_point == "truncate":
        raise PlanError(f"layer {name}: its scale {float(np.min(res.scale)):.3g} is too small for m >> s or an "
                        f"int32 bias; --zero-point truncate cannot change it (use the default rounding mode)")  # fmt: skip
    qmax = (1 << lp.bits) - 1
    scale = np.where(low, np.nextafter(floor.astype(np.float32), np.float32(np.inf)), res.scale).astype(np.float32)
    rows = w.reshape(w.shape[0], -1) if lp.per_channel else w.reshape(1, -1)
    lo = np.minimum(rows.min(axis=1), 0).astype(np.float64)
    lo = lo if lp.per_channel else lo.reshape(())
    zp = np.where(low, np.clip(np.rint(-lo / scale.astype(np.float64)), 0, qmax), res.zero_point).astype(np.int32)
    codes = affine.quantize_with(w, scale, zp, lp.bits)
    return affine.AffineResult(codes, scale, zp, res.saturated), int(np.count_nonzero(low))
