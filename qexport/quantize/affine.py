"""Unsigned affine quantization (README "Numerics": affine unsigned; seed 002).

`affine_quantize` gives codes (uint8 for bits <= 8, else uint16), a float32 scale and an int32
zero point, per tensor or per output channel (axis 0); `--zero-point truncate` reproduces seed
002's `quantize_tensor` code for code.  The formulas, the constant-tensor rule and the
saturation count are in the README; each function states what it computes.  float32 input is
processed in blocks on a few threads (qexport.quantize.chunks), bit-identical to the
whole-array formulas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import chunks
from .channels import axis0

ZERO_POINT_MODES = ("round", "truncate")
_TINY = np.float32(np.finfo(np.float32).tiny)  # smallest normal float32


@dataclass(frozen=True)
class AffineResult:
    codes: np.ndarray  # uint8 (bits <= 8) or uint16, same shape as the input
    scale: np.ndarray  # float32, 0-d per tensor or (C,) per channel
    zero_point: np.ndarray  # int32, same shape as scale
    saturated: int  # elements whose unclamped code fell outside 0..qmax


def _qmax(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an integer in 2..16, got {bits!r}")
    return (1 << int(bits)) - 1


def _code_dtype(bits: int):
    return np.uint8 if bits <= 8 else np.uint16


def _rows(w, per_channel: bool) -> np.ndarray:
    """`w` as float32 rows: (C, n) per channel, (1, n) per tensor."""
    w = np.asarray(w)
    if w.dtype.kind != "f":
        raise TypeError(f"expected a floating-point tensor, got {w.dtype}")
    if not np.isfinite(w).all():
        raise ValueError("tensor has non-finite values")
    if w.size == 0 or (per_channel and w.ndim == 0):
        raise ValueError(f"need a tensor with at least one channel and element, got shape {w.shape}")
    w = w.astype(np.float32, copy=False)
    return w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)


def _round_scale(lo64: np.ndarray, hi64: np.ndarray, qmax: int) -> np.ndarray:
    scale = ((hi64 - lo64) / qmax).astype(np.float32)
    return np.where(scale < _TINY, _TINY, scale)


def _params(rows: np.ndarray, qmax: int, mode: str):
    """(scale float32 (R,), zero_point int32 (R,), constant bool (R,)) for float32 rows (R, n)."""
    return _params_of(rows.min(axis=1), rows.max(axis=1), qmax, mode)


def _params_of(wmin: np.ndarray, wmax: np.ndarray, qmax: int, mode: str):
    """_params from the rows' float32 minima and maxima (R,)."""
    if mode == "round":
        lo = np.minimum(wmin, 0).astype(np.float64)
        hi = np.maximum(wmax, 0).astype(np.float64)
        scale = _round_scale(lo, hi, qmax)
        zp = np.clip(np.rint(-lo / scale.astype(np.float64)), 0, qmax)
    elif mode == "truncate":
        with np.errstate(over="ignore", under="ignore"):
            scale = (wmax - wmin) / np.float32(qmax)  # float32, as torch
        bad = ~np.isfinite(scale) | (scale == 0)
        if bad.any():
            fallback = _round_scale(wmin.astype(np.float64), wmax.astype(np.float64), qmax)
            scale = np.where(bad, fallback, scale)
        with np.errstate(over="ignore"):
            initial = np.float32(0) - wmin / scale  # float32
        zp = np.trunc(np.where(initial < 0, 0, np.where(initial > qmax, qmax, initial)))
    else:
        raise ValueError(f"zero_point must be one of {ZERO_POINT_MODES}, got {mode!r}")
    const = wmin == wmax
    c = wmin
    scale = np.where(const, np.where(c == 0, np.float32(1), np.abs(c)), scale).astype(np.float32)
    zp = np.where(const, (c < 0).astype(np.float64), zp).astype(np.int32)
    return scale, zp, const


def _round_codes(w: np.ndarray, scale: np.ndarray, zp: np.ndarray, qmax: int):
    """(clamped codes as float64, unclamped rounded codes as float64); params already broadcast."""
    raw = np.rint(w.astype(np.float64) / scale.astype(np.float64)) + zp
    return np.clip(raw, 0, qmax), raw


def _truncate_codes(rows: np.ndarray, scale: np.ndarray, zp: np.ndarray, qmax: int):
    with np.errstate(over="ignore"):
        v = zp.astype(np.float32)[:, None] + rows / scale[:, None]  # float32, as torch
    return np.rint(np.clip(v, 0, qmax)), np.rint(v)

# ---------------------------------------------------------------- chunked fast path (float32)


def _fast_rows(w: np.ndarray, per_channel: bool):
    """float32 C-contiguous rows (R, n) for the fast path, or None when the reference formulas
    must run (another dtype, an empty or a 0-d per-channel tensor: they raise or are trivial)."""
    if w.dtype != np.float32 or w.size == 0 or (per_channel and w.ndim == 0):
        return None
    rows = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    return np.ascontiguousarray(rows)


def _minmax(rows: np.ndarray, grid: chunks.Grid, message: str = "tensor has non-finite values"):
    """Per-row float32 (min, max); ValueError(message) if any element is NaN or infinite."""
    def kernel(b):
        x = rows[b[0]:b[1], b[2]:b[3]]
        return np.minimum.reduce(x, axis=1), np.maximum.reduce(x, axis=1)

    parts = grid.map(kernel)
    wmin = grid.row_reduce([p[0] for p in parts], np.minimum, np.float32)
    wmax = grid.row_reduce([p[1] for p in parts], np.maximum, np.float32)
    if not (np.isfinite(wmin).all() and np.isfinite(wmax).all()):
        raise ValueError(message)
    return wmin, wmax


def _fast_codes(rows, grid, wmin, wmax, scale, zp, const, qmax: int, mode: str, code_dtype):
    """(codes (R, n), saturated) for float32 rows: the module's formulas, block by block."""
    trunc = mode == "truncate"
    s64, z64 = scale.astype(np.float64)[:, None], zp.astype(np.float64)[:, None]
    s32, z32 = scale[:, None], zp.astype(np.float32)[:, None]

    def raw(x, r0, r1, new=False):
        """Unclamped rounded codes of block x (rows r0:r1), in a per-thread scratch buffer (or a
        new array: the (R, 2) ends would otherwise leave a large scratch buffer behind)."""
        buffer = np.empty if new else chunks.scratch
        if not trunc:  # rint(w / scale) + zero_point in float64
            buf = buffer(x.shape, np.float64)
            np.copyto(buf, x)  # exact; converting first is faster than a mixed-type divide
            np.divide(buf, s64[r0:r1], out=buf)
            np.rint(buf, out=buf)
            np.add(buf, z64[r0:r1], out=buf)
            return buf
        buf = buffer(x.shape, np.float32)  # rint(zero_point + w / scale) in float32
        with np.errstate(over="ignore"):
            np.divide(x, s32[r0:r1], out=buf)
            np.add(z32[r0:r1], buf, out=buf)
        np.rint(buf, out=buf)
        c = const[r0:r1]
        if c.any():  # constant rows use the "round" formula (exact small integers)
            buf[c] = np.rint(x[c].astype(np.float64) / s64[r0:r1][c]) + z64[r0:r1][c]
        return buf

    ends = raw(np.stack([wmin, wmax], axis=1), 0, rows.shape[0], new=True)
    clamp = (ends[:, 0] < 0) | (ends[:, 1] > qmax)  # rows where some code leaves 0..qmax
    out = np.empty(rows.shape, code_dtype)

    def kernel(b):
        r0, r1, c0, c1 = b
        buf = raw(rows[r0:r1, c0:c1], r0, r1)
        saturated = 0
        if clamp[r0:r1].any():
            saturated = np.count_nonzero(buf < 0) + np.count_nonzero(buf > qmax)
            np.clip(buf, 0, qmax, out=buf)
        out[r0:r1, c0:c1] = buf
        return int(saturated)

    return out, sum(grid.map(kernel))


def affine_params(w, bits: int = 8, per_channel: bool = False, zero_point: str = "round"):
    """(scale float32, zero_point int32): 0-d arrays per tensor, (C,) per channel."""
    qmax = _qmax(bits)
    rows = _fast_rows(np.asarray(w), per_channel)
    if rows is None:
        scale, zp, _ = _params(_rows(w, per_channel), qmax, zero_point)
    else:
        scale, zp, _ = _params_of(*_minmax(rows, chunks.Grid(*rows.shape)), qmax, zero_point)
    return (scale, zp) if per_channel else (scale.reshape(()), zp.reshape(()))


def quantize_with(w, scale, zero_point, bits: int) -> np.ndarray:
    """Codes q = clamp(rint(w / scale) + zero_point, 0, qmax) ("round" formula, float64).

    scale/zero_point: scalars/0-d, or (C,) applied per channel on axis 0 of `w`.
    """
    qmax = _qmax(bits)
    w = np.asarray(w)
    if w.dtype.kind != "f":
        raise ValueError("expected a finite floating-point tensor")
    rows = None
    if w.dtype == np.float32 and w.size and w.ndim:  # fast path: rows = output channels
        rows = np.ascontiguousarray(w.reshape(w.shape[0], -1))
        grid = chunks.Grid(*rows.shape)
        wmin, wmax = _minmax(rows, grid, "expected a finite floating-point tensor")
    elif not np.isfinite(w).all():
        raise ValueError("expected a finite floating-point tensor")
    scale = np.asarray(scale, dtype=np.float32)
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        raise ValueError("scale must be finite and > 0")
    zp = np.asarray(zero_point, dtype=np.int64)
    if rows is not None and scale.shape == zp.shape and scale.shape in ((), w.shape[:1]):
        s, z = np.broadcast_to(scale, wmin.shape), np.broadcast_to(zp, wmin.shape)
        const = np.zeros(wmin.shape, bool)
        codes, _ = _fast_codes(rows, grid, wmin, wmax, s, z, const, qmax, "round", _code_dtype(bits))
        return codes.reshape(w.shape)
    q, _ = _round_codes(w.astype(np.float32, copy=False), axis0(scale, w.ndim), axis0(zp, w.ndim), qmax)
    return q.astype(_code_dtype(bits))


def affine_quantize(w, bits: int = 8, per_channel: bool = False, zero_point: str = "round") -> AffineResult:
    """Quantize `w`; see the module docstring for both zero-point modes."""
    qmax = _qmax(bits)
    fast = _fast_rows(np.asarray(w), per_channel)
    if fast is not None:
        grid = chunks.Grid(*fast.shape)
        wmin, wmax = _minmax(fast, grid)
        scale, zp, const = _params_of(wmin, wmax, qmax, zero_point)
        codes, saturated = _fast_codes(fast, grid, wmin, wmax, scale, zp, const, qmax, zero_point,
                                       _code_dtype(bits))  # fmt: skip
        codes = codes.reshape(np.shape(w))
        if not per_channel:
            scale, zp = scale.reshape(()), zp.reshape(())
        return AffineResult(codes=codes, scale=scale, zero_point=zp, saturated=saturated)
    rows = _rows(w, per_channel)
    scale, zp, const = _params(rows, qmax, zero_point)
    q, raw = _round_codes(rows, scale[:, None], zp[:, None], qmax)
    if zero_point == "truncate":
        tq, traw = _truncate_codes(rows, scale, zp, qmax)
        q, raw = np.where(const[:, None], q, tq), np.where(const[:, None], raw, traw)
    saturated = int(np.count_nonzero((raw < 0) | (raw > qmax)))
    codes = q.astype(_code_dtype(bits)).reshape(np.shape(w))
    if not per_channel:
        scale, zp = scale.reshape(()), zp.reshape(())
    return AffineResult(codes=codes, scale=scale, zero_point=zp, saturated=saturated)
