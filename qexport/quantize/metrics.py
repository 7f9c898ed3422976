"""Error metrics of the report (README "Plans"): SQNR and max abs error of dequantized vs float."""

from __future__ import annotations

import numpy as np

from . import chunks


def error_stats(w: np.ndarray, deq: np.ndarray) -> tuple[float | None, float]:
    """SQNR in dB (None when the error is exactly zero) and the max abs error, in float64.

    C-contiguous float arrays of one shape are processed block by block (no float64 copy of the
    tensor), with numpy's pairwise summation order kept, so the values are those of the
    whole-array formulas below, bit for bit."""
    w, deq = np.asarray(w), np.asarray(deq)
    if (w.shape == deq.shape and w.size and w.dtype.kind == "f" and deq.dtype.kind == "f"
            and w.flags.c_contiguous and deq.flags.c_contiguous):  # fmt: skip
        noise, signal, max_err = _error_sums(w.reshape(1, -1), deq.reshape(1, -1))
    else:
        w64, e64 = w.astype(np.float64), w.astype(np.float64) - deq.astype(np.float64)
        noise = float(np.sum(e64 * e64))
        signal = float(np.sum(w64 * w64))
        max_err = float(np.max(np.abs(e64))) if e64.size else 0.0
    if noise == 0.0:
        return None, max_err
    if signal == 0.0:
        return float("-inf"), max_err
    return float(10.0 * np.log10(signal / noise)), max_err


def _error_sums(w: np.ndarray, deq: np.ndarray) -> tuple[float, float, float]:
    """(sum e^2, sum w^2, max |e|) over rows (1, N), e = w - deq in float64, in blocks."""
    grid = chunks.Grid(*w.shape)

    def kernel(b):
        x, d = w[:, b[2]:b[3]], deq[:, b[2]:b[3]]
        e = chunks.scratch(x.shape, np.float64)
        sq = chunks.scratch(x.shape, np.float64, slot=1)
        np.subtract(x, d, out=e, dtype=np.float64)
        max_err = max(float(e.max()), -float(e.min()))
        np.multiply(e, e, out=sq)
        noise = np.add.reduce(sq, axis=1)
        np.multiply(x, x, out=sq, dtype=np.float64)
        return noise, np.add.reduce(sq, axis=1), max_err

    parts = grid.map(kernel)
    noise = grid.row_sums([p[0] for p in parts])[0]
    signal = grid.row_sums([p[1] for p in parts])[0]
    return float(noise), float(signal), max(p[2] for p in parts)
