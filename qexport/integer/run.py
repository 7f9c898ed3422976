"""The integer reference: runs an IntGraph on uint8 pixels exactly as the contract in
qexport.integer.ir states, in int64 numpy (vectorised); the sums of products of a conv/linear go
through a float32 / float64 BLAS gemm where its accumulator bound makes that exact (see below).

    codes = run_integer(igraph, pixels)      # {node name: uint8 codes}, "input" included
"""

from __future__ import annotations

import numpy as np

from ..graph.execute import windows
from .ir import IntGraph, IntNode, accumulator_bound


def rshift(v: np.ndarray, s) -> np.ndarray:
    """(v + 2^(s-1)) >> s on int64, per element or per channel s; s = 0 leaves v."""
    v = np.asarray(v, np.int64)
    s = np.asarray(s, np.int64)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return (v + half) >> s


def _col(a: np.ndarray, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    return a.reshape((1, -1) + (1,) * (ndim - 2)) if a.ndim == 1 else a


# Exact sums of integer products in floating point.  Every |partial sum| of a node's accumulator
# is at most accumulator_bound(w) (each product |x - Z_x||w - Z_w| <= 255 max|w - Z_w|, at most K of
# them), whatever order a BLAS gemm adds them in, blocked or with FMA.  Where that bound is below
# 2^p (p = 24 for float32, 53 for float64), every factor, product and partial sum is an integer
# the format holds exactly, so every addition and multiplication is exact (its exact result is
# representable, so rounding leaves it) and the gemm returns exactly the integer sum, which casts
# back to int64 exactly.  This needs a gemm that sums the products (OpenBLAS, MKL; not a Strassen
# variant); tests/test_integer_executor.py checks it against a plain int64 transcription.  int64
# (numpy's own loops, no BLAS: slow) stays where the bound reaches 2^53.
EXACT_FLOAT = ((np.float32, 1 << 24), (np.float64, 1 << 53))
CHUNK = 1 << 22  # patch-matrix elements per gemm (bounds the im2col copy: 32 MB of float64)


def exact_dtype(bound: int):
    """The narrowest float type whose gemm is exact for accumulators within `bound`, or int64."""
    return next((t for t, limit in EXACT_FLOAT if bound < limit), np.int64)


def _conv_sum(xz: np.ndarray, w: np.ndarray, a) -> np.ndarray:
    """sum (x - Z_x)(w - Z_w) over each window: im2col per chunk of images, then one gemm per group."""
    n, c = xz.shape[:2]
    o, cg, kh, kw = w.shape
    g = a["groups"]
    win = windows(xz, (kh, kw), a["stride"], a["padding"], a["dilation"], 0)
    ho, wo = win.shape[2:4]
    wg = w.reshape(g, o // g, cg * kh * kw).transpose(0, 2, 1)  # (g, K, o/g)
    acc = np.empty((n, o, ho, wo), np.int64)
    step = max(1, CHUNK // (c * kh * kw * ho * wo))
    for i in range(0, n, step):  # chunks of images, not elements: the gemm stays large
        b = win[i:i + step].shape[0]
        cols = win[i:i + step].reshape(b, g, cg, ho, wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
        part = np.matmul(cols.reshape(g, b * ho * wo, cg * kh * kw), wg)  # (g, b*ho*wo, o/g)
        acc[i:i + step] = part.reshape(g, b, ho, wo, o // g).transpose(1, 0, 4, 2, 3).reshape(b, o, ho, wo)
    return acc


def _accumulate(node: IntNode, x: np.ndarray) -> np.ndarray:
    a, w = node.attrs, np.asarray(node.arrays["w_minus_z"])
    dtype = exact_dtype(accumulator_bound(w))
    # padding then holds 0 = Z_x - Z_x; Z_x is one per channel for an input with per-channel --mean
    xz = x.astype(dtype) - _col(np.asarray(a["zero_in"], dtype), x.ndim)
    w = w.astype(dtype)
    return (xz @ w.T).astype(np.int64) if node.op == "linear" else _conv_sum(xz, w, node.attrs)


def sign_codes(v: np.ndarray, tau, flip) -> np.ndarray:
    """BN + sign as thresholds: code 2 (+1) where (flip ? v <= tau : v >= tau), else 0 (-1)."""
    tau, flip = _col(np.asarray(tau, np.int64), v.ndim), _col(np.asarray(flip).astype(bool), v.ndim)
    return np.where(np.where(flip, v <= tau, v >= tau), 2, 0)


def _weighted(node: IntNode, x):
    a, r = node.attrs, node.arrays
    acc = _accumulate(node, x)
    if a["mode"] == "sign":
        codes = sign_codes(acc, r["tau"], r["flip"])
        if "pool_kernel" in a:  # max pool before the BN: max of the signs, min where the BN flips
            win = windows(codes, a["pool_kernel"], a["pool_stride"], (0, 0), (1, 1), 0)
            flip = _col(np.asarray(r["flip"]).astype(bool), codes.ndim)
            codes = np.where(flip, win.min(axis=(4, 5)), win.max(axis=(4, 5)))
        return codes
    acc = acc + _col(r["b_q"], acc.ndim)
    y = a["zero_out"] + rshift(acc * _col(r["m"], acc.ndim), _col(r["s"], acc.ndim))
    return np.clip(y, a["lo"], a["hi"])


def _prelu(node: IntNode, x):
    a, r = node.attrs, node.arrays
    v = x.astype(np.int64) - a["zero_in"]
    pos = rshift(v * r["m_pos"], r["s_pos"])
    neg = rshift(v * _col(r["m_neg"], v.ndim), _col(r["s_neg"], v.ndim))
    return np.clip(a["zero_out"] + np.where(v >= 0, pos, neg), 0, 255)


def _average(total: np.ndarray, k: int) -> np.ndarray:
    return (total + k // 2) // k  # round half up (floor division of a non-negative sum)


def _avg_pool(node: IntNode, x):
    a = node.attrs
    win = windows(x.astype(np.int64), a["kernel"], a["stride"], a["padding"], (1, 1), node.out.zero_point)
    return _average(win.sum(axis=(4, 5)), int(np.prod(a["kernel"])))


def _add(node: IntNode, a, b):
    p, r = node.attrs, node.arrays
    y = p["zero_out"] + rshift((a.astype(np.int64) - p["zero_a"]) * r["m_a"], r["s_a"]) \
        + rshift((b.astype(np.int64) - p["zero_b"]) * r["m_b"], r["s_b"])
    return np.clip(y, 0, 255)


def _shuffle(node: IntNode, x):
    n, c, h, w = x.shape
    g = node.attrs["groups"]
    return x.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


OPS = {
    "conv2d": _weighted, "linear": _weighted,
    "clamp": lambda n, x: np.clip(x, n.attrs["lo"], n.attrs["hi"]),
    "max_pool2d": lambda n, x: windows(x, n.attrs["kernel"], n.attrs["stride"], n.attrs["padding"],
                                        n.attrs["dilation"], 0).max(axis=(4, 5)),
    "avg_pool2d": _avg_pool,
    "global_avg_pool2d": lambda n, x: _average(x.astype(np.int64).sum(axis=(2, 3)), x.shape[2] * x.shape[3])[:, :, None, None],
    "reshape": lambda n, x: x.reshape((x.shape[0],) + tuple(n.output_shape)),
    "channel_shuffle": _shuffle,
    "table": lambda n, x: np.asarray(n.arrays["table"])[x],
    "threshold": lambda n, x: sign_codes(x.astype(np.int64), n.arrays["tau"], n.arrays["flip"]),
    "prelu": _prelu,
}  # fmt: skip


def _cat(node: IntNode, *ins):
    a, r = node.attrs, node.arrays
    parts = [np.clip(a["zero_out"] + rshift((x.astype(np.int64) - z) * r[f"m{k}"], r[f"s{k}"]), 0, 255)
             for k, (x, z) in enumerate(zip(ins, a["zeros_in"]))]  # fmt: skip
    return np.concatenate(parts, axis=1)


def run_integer(igraph: IntGraph, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Every node's uint8 codes for uint8 input `pixels` (N, *input_shape)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(f"the integer graph takes uint8 pixels, got {pixels.dtype}")
    values = {"input": pixels}
    for node in igraph.nodes:
        ins = [values[i] for i in node.inputs]
        if node.op in ("add", "cat"):
            y = (_add if node.op == "add" else _cat)(node, *ins)
        else:
            y = OPS[node.op](node, ins[0])
        values[node.name] = np.ascontiguousarray(y, dtype=np.uint8)
    return values
