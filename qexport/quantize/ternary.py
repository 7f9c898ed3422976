"""Ternary quantization, README "Numerics": ternary (seed 001, Ternary Weight Networks).

Per output channel c (axis 0; the mean runs over axes 1.., i.e. rows of a linear layer):

    delta_c = ratio * mean(|W_c|)                         (ratio = 0.7)
    t       = sign(w) where |w| > delta_c, else 0         (strict)
    alpha_c = mean(|w|) over the elements with |w| > delta_c, and 0 when there are none

With per_channel=False one delta and one alpha cover the whole tensor (the paper's per-layer form).

Means are accumulated in float64; delta is rounded to float32 *before* the comparison, so the
codes can be recomputed from the exported float32 delta.  alpha is never NaN: an empty channel
(all zeros, or nothing above delta) gets alpha 0 and is counted in `empty_channels`.  An all-zero
channel has delta 0, nothing is > 0, so all its codes are 0.

Difference from the original seed-001 code: it maps |w| == delta to +-1 while leaving that element
out of alpha (and yields NaN alpha for an empty channel); qexport uses the TWN paper's strict rule
for both the codes and alpha.

Speed: float32 input is processed in cache-sized blocks on a few threads (qexport.quantize.chunks):
one pass for the sums of |w|, one for the codes, counts and kept sums.  The float64 sums follow
numpy's own pairwise order, so every result is bit-identical to the whole-array formulas (which
other dtypes use); |w| > delta is evaluated as w > delta or w < -delta (the same test, exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import chunks
from .binary import _abs_sums


@dataclass(frozen=True)
class TernaryResult:
    codes: np.ndarray  # int8 in {-1, 0, +1}, same shape as the input
    delta: np.ndarray  # float32, (C,) per channel or 0-d per tensor
    alpha: np.ndarray  # float32, same shape as delta
    empty_channels: int  # channels (or the tensor) with no element kept: alpha == 0


def ternarize(w, per_channel: bool = True, ratio: float = 0.7) -> TernaryResult:
    """Ternarize `w` (float32; float64 is converted).  See the module docstring for the rule."""
    w = np.asarray(w)
    if w.dtype.kind != "f":
        raise TypeError(f"expected a floating-point tensor, got {w.dtype}")
    if w.dtype == np.float32 and w.size and not (per_channel and w.ndim == 0) and _valid_ratio(ratio):
        return _fast_ternarize(w, per_channel, ratio)
    if not np.isfinite(w).all():
        raise ValueError("tensor has non-finite values")
    if not (np.isfinite(ratio) and ratio >= 0):
        raise ValueError(f"ratio must be finite and >= 0, got {ratio}")
    w = w.astype(np.float32, copy=False)
    if w.size == 0 or (per_channel and w.ndim == 0):
        raise ValueError(f"need a tensor with at least one channel and element, got shape {w.shape}")

    rows = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    mag = np.abs(rows)  # float32, exact
    mag64 = mag.astype(np.float64)
    delta = (ratio * mag64.mean(axis=1)).astype(np.float32)  # (R,)
    kept = mag > delta[:, None]
    count = kept.sum(axis=1)
    total = np.where(kept, mag64, 0.0).sum(axis=1)
    alpha = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
    codes = np.where(kept, np.sign(rows), 0).astype(np.int8).reshape(w.shape)
    if not per_channel:
        delta, alpha = delta.reshape(()), alpha.reshape(())
    return TernaryResult(codes=codes, delta=delta, alpha=alpha, empty_channels=int((count == 0).sum()))


def _valid_ratio(ratio) -> bool:
    return isinstance(ratio, (int, float, np.integer, np.floating)) and bool(np.isfinite(ratio) and ratio >= 0)


def _fast_ternarize(w: np.ndarray, per_channel: bool, ratio) -> TernaryResult:
    rows = np.ascontiguousarray(w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1))
    n = rows.shape[1]
    delta = (ratio * (_abs_sums(rows) / np.intp(n))).astype(np.float32)  # = ratio * mean(|W_c|), as numpy
    upper, lower = delta[:, None], -delta[:, None]
    codes = np.empty(rows.shape, np.int8)
    grid = chunks.Grid(*rows.shape)

    def kernel(b):
        r0, r1, c0, c1 = b
        x, c = rows[r0:r1, c0:c1], codes[r0:r1, c0:c1]
        neg = chunks.scratch(x.shape, np.bool_, slot=1)
        np.greater(x, upper[r0:r1], out=c.view(np.bool_))  # 1 where w > delta
        np.less(x, lower[r0:r1], out=neg)
        np.subtract(c, neg.view(np.int8), out=c)  # +1 / -1 / 0: sign(w) where |w| > delta
        # w * t = |w| where kept; elsewhere +-0, which changes no sum with a kept element, and a
        # channel without one has alpha 0 whatever its sum: the sums equal where(kept, |w|, 0)'s.
        kept32 = chunks.scratch(x.shape, np.float32, slot=3)
        np.multiply(x, c, out=kept32)  # exact in float32
        mag = chunks.scratch(x.shape, np.float64)
        np.copyto(mag, kept32)
        return chunks.count_nonzero_rows(c), np.add.reduce(mag, axis=1)

    parts = grid.map(kernel)
    count = grid.row_reduce([p[0] for p in parts], np.add, np.int64)
    total = grid.row_sums([p[1] for p in parts])
    alpha = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
    codes = codes.reshape(w.shape)
    if not per_channel:
        delta, alpha = delta.reshape(()), alpha.reshape(())
    return TernaryResult(codes=codes, delta=delta, alpha=alpha, empty_channels=int((count == 0).sum()))
