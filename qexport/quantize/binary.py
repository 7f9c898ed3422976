"""Binary (sign) quantization, README "Numerics": binary (seeds 000, 001, 003).

    b = +1 where w > 0, -1 otherwise          (seed 000's deterministic rule)
    alpha_c = mean(|W_c|)                     (seed 001; optional per output channel)

Exact zeros map to -1 (torch.sign would leave them at 0, which no 1-bit code can hold); the
quantize stage reports how many there were (`count_exact_zeros`).  The output channel is axis 0
and alpha_c averages over all other axes; a 1-D tensor is C channels of one element each, so its
alpha is |w|.  Means are accumulated in float64 and rounded once to float32, so they are finite
even when the weights are close to the float32 maximum.

Speed: C-contiguous float32 input is processed in cache-sized blocks on a few threads
(qexport.quantize.chunks) with the same arithmetic; the float64 sums follow numpy's own pairwise
order, so the results are bit-identical to the whole-array formulas (which other inputs use).
"""

from __future__ import annotations

import numpy as np

from . import chunks


def _float32(w) -> np.ndarray:
    w = np.asarray(w)
    if w.dtype.kind != "f":
        raise TypeError(f"expected a floating-point tensor, got {w.dtype}")
    if not np.isfinite(w).all():
        raise ValueError("tensor has non-finite values")
    return w.astype(np.float32, copy=False)


def _fast(w) -> bool:
    """True for the chunked path: a non-empty C-contiguous float32 array."""
    return isinstance(w, np.ndarray) and w.dtype == np.float32 and w.size > 0 and w.flags.c_contiguous


def binarize(w) -> np.ndarray:
    """int8 codes, same shape as `w`: +1 where w > 0, -1 elsewhere (zeros and -0.0 included)."""
    if not _fast(w):
        w = _float32(w)
        return np.where(w > 0, np.int8(1), np.int8(-1)).astype(np.int8)
    flat = w.reshape(1, -1)
    out = np.empty(w.shape, np.int8)
    codes = out.reshape(1, -1)

    def kernel(b):
        x, c = flat[:, b[2]:b[3]], codes[:, b[2]:b[3]]
        finite = np.isfinite(np.minimum.reduce(x, axis=None)) and np.isfinite(np.maximum.reduce(x, axis=None))
        np.greater(x, 0, out=c.view(np.bool_))  # 1 where w > 0, else 0
        np.multiply(c, 2, out=c)
        np.subtract(c, 1, out=c)  # 2b - 1: +1 / -1
        return finite

    if not all(chunks.Grid(1, w.size).map(kernel)):
        raise ValueError("tensor has non-finite values")
    return out


def _abs_sums(rows: np.ndarray) -> np.ndarray:
    """float64 (R,): sum of |w| per row of float32 rows, bit-identical to
    np.abs(rows.astype(np.float64)).sum(axis=1); ValueError if any element is not finite."""
    grid = chunks.Grid(*rows.shape)

    def kernel(b):
        r0, r1, c0, c1 = b
        mag32 = chunks.scratch((r1 - r0, c1 - c0), np.float32, slot=3)
        np.abs(rows[r0:r1, c0:c1], out=mag32)  # exact; faster than converting first
        buf = chunks.scratch(mag32.shape, np.float64)
        np.copyto(buf, mag32)
        return np.add.reduce(buf, axis=1)

    sums = grid.row_sums(grid.map(kernel))
    if not np.isfinite(sums).all():  # inf and NaN propagate; finite float32 sums cannot overflow
        raise ValueError("tensor has non-finite values")
    return sums


def binary_alpha(w, per_channel: bool = True) -> np.ndarray:
    """float32 (C,): alpha_c = mean(|W_c|) over axes 1.. (for 1-D `w`, alpha = |w|).

    A channel of zeros has alpha 0 (the report counts it); alpha is never NaN or inf.
    per_channel=False: one 0-d alpha = mean(|W|) over the whole tensor (float64 mean).
    """
    if not per_channel:
        if _fast(w):
            return np.asarray(_abs_sums(w.reshape(1, -1))[0] / w.size, np.float32)
        w = _float32(w)
        return np.asarray(np.mean(np.abs(w, dtype=np.float64)), np.float32)
    if _fast(w) and w.ndim > 0:
        rows = w.reshape(w.shape[0], -1)
        return (_abs_sums(rows) / rows.shape[1]).astype(np.float32)
    w = _float32(w)
    if w.ndim == 0 or w.shape[0] == 0 or w.size == 0:
        raise ValueError(f"need a tensor with at least one channel and element, got shape {w.shape}")
    rows = np.abs(w.reshape(w.shape[0], -1).astype(np.float64))
    return rows.mean(axis=1).astype(np.float32)


def count_exact_zeros(w) -> int:
    """How many elements are exactly 0 (or -0.0): these binarize to -1."""
    w = np.asarray(w)
    if not (w.size and w.flags.c_contiguous):
        return int(np.count_nonzero(w == 0))
    flat = w.reshape(1, -1)
    return int(sum(chunks.Grid(1, w.size).map(lambda b: np.count_nonzero(flat[:, b[2]:b[3]] == 0))))
