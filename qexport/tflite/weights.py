"""TFLite's weight quantization (int8 symmetric, zero point 0, -127..127) and the weight-scale floor
that keeps an int32 bias representable (README "TFLite")."""

from __future__ import annotations

import numpy as np

from .arith import INT32_MAX, round_away


def symmetric_int8(w: np.ndarray, per_channel: bool, least=0.0) -> tuple[np.ndarray, np.ndarray]:
    """(codes int8 in -127..127, float32 scales): scale = max|w| / 127 per output channel (axis 0)
    or for the tensor, at least `least` (per channel or one value); an all-zero channel gets
    scale 1 unless `least` asks for more."""
    w = np.asarray(w, np.float64)
    flat = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    peak = np.abs(flat).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    scale = np.maximum(scale, least).astype(np.float32)
    codes = np.clip(round_away(flat / scale.astype(np.float64)[:, None]), -127, 127).astype(np.int8)
    return codes.reshape(w.shape), scale


def bias_floor(bias, s_in: float, fan_in: int) -> np.ndarray:
    """The least weight scale at which round(b / (S_in S_w)) fits int32 beside the largest sum of
    products (255 * 127 * fan_in): TFLite's converter raises the weight scale of such a channel (tiny
    weights, a large bias) the same way."""
    return np.abs(np.asarray(bias, np.float64)) / (float(s_in) * (INT32_MAX // 2 - 255 * 127 * fan_in))
