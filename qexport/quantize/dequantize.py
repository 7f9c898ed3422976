"""Dequantization, defined once: the float32 value every quantized weight stands for.

    w = float32(scale * (q - zero_point))        (per channel on axis 0 where scale is (C,))

affine: scale and zero point of the layer; binary/ternary: alpha as scale (1 without alpha),
zero point 0.  Used by the error report, the ONNX writer and golden vectors.
"""

from __future__ import annotations

import numpy as np

from . import chunks
from .channels import axis0

_F32_MAX = float(np.finfo(np.float32).max)


def layer_scale_zero_point(q) -> tuple[np.ndarray, np.ndarray]:
    """(scale float32, zero point) of a quantized layer (a QuantLayer), as dequantize takes them."""
    if q.scheme == "affine":
        return np.asarray(q.params["scale"], np.float32), np.asarray(q.params["zero_point"])
    if q.scheme in ("binary", "ternary"):
        alpha = q.params.get("alpha")
        scale = np.asarray(1.0 if alpha is None else alpha, np.float32)
        return scale, np.zeros(scale.shape, np.int8)
    raise ValueError(f"layer {q.name}: scheme {q.scheme!r} has no dequantized value")


def bias_step(q) -> np.ndarray:
    """float32 step of an affine int32 bias: b = b_q * (m / 2^s) / G (README "Numerics": bias)."""
    m = np.asarray(q.params["multiplier"], np.float64)
    s = np.asarray(q.params["shift"], np.float64)
    return np.asarray(m / np.exp2(s) / float(np.asarray(q.params["input_gain"])), np.float32)


def dequantize_layer(q, codes) -> np.ndarray:
    """The float32 weights a quantized layer's canonical codes stand for."""
    return dequantize(codes, *layer_scale_zero_point(q))


def dequantize(codes, scale, zero_point) -> np.ndarray:
    """float32 scale * (q - zero_point), per channel on axis 0 when the parameters are (C,).

    Equal to the float32 product (computed exactly in float64, rounded once), except that a
    result beyond the float32 range saturates to +-float32 max instead of becoming inf.
    """
    q = np.asarray(codes)
    scale32, z_in = np.asarray(scale, dtype=np.float32), np.asarray(zero_point, dtype=np.int64)
    if (q.dtype.kind == "i" or (q.dtype.kind == "u" and q.dtype.itemsize < 8)) and q.size and q.ndim \
            and scale32.shape == z_in.shape and scale32.shape in ((), q.shape[:1]):
        return _fast_dequantize(q, scale32, z_in)
    s = axis0(scale32, q.ndim).astype(np.float64)
    z = axis0(z_in, q.ndim)
    out = s * (q.astype(np.int64) - z).astype(np.float64)
    return np.clip(out, -_F32_MAX, _F32_MAX).astype(np.float32)


def _fast_dequantize(q: np.ndarray, scale32: np.ndarray, zp: np.ndarray) -> np.ndarray:
    """dequantize's formula block by block (integer codes with at least one axis)."""
    rows = np.ascontiguousarray(q.reshape(q.shape[0], -1))
    s64 = np.broadcast_to(scale32.astype(np.float64), rows.shape[:1])[:, None]
    z = np.broadcast_to(zp, rows.shape[:1])[:, None]
    out = np.empty(rows.shape, np.float32)
    grid = chunks.Grid(*rows.shape)

    def kernel(b):
        r0, r1, c0, c1 = b
        d = chunks.scratch((r1 - r0, c1 - c0), np.int64, slot=1)
        np.subtract(rows[r0:r1, c0:c1], z[r0:r1], out=d, dtype=np.int64)
        buf = chunks.scratch(d.shape, np.float64)
        np.multiply(s64[r0:r1], d, out=buf, dtype=np.float64)
        np.clip(buf, -_F32_MAX, _F32_MAX, out=buf)
        out[r0:r1, c0:c1] = buf

    grid.map(kernel)
    return out.reshape(q.shape)
