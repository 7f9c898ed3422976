"""int64 building blocks of seed 002's integer forward pass (README "Numerics": integer forward pass), in numpy.

A layer computes acc = sum x * (w_q - Z) + b_q (int_conv2d / int_linear), then
y = requantize(acc, m, s) = (acc * m) >> s with a 64-bit product and an arithmetic (floor) shift,
so y stays in the input's 1/G units.  Tensors are NCHW (or (N, C) after flattening); per-channel
m, s apply to axis 1.  Every function takes integer arrays and returns int64; nothing here rounds
through floats, so a C or Verilog implementation can match it bit for bit.

avgpool2_int rounds half up: (sum + 2) >> 2.  Seed 002 used torch's round (half to even) on the
float average; the two differ only when sum = 2 (mod 4), where qexport rounds up.  Use this rule
everywhere (C and Verilog do it with an add and a shift).
"""

from __future__ import annotations

import numpy as np

_I64 = np.iinfo(np.int64)


def _int64(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iub":
        raise TypeError(f"{name} must be an integer array, got {x.dtype}")
    if x.dtype == np.uint64 and x.size and x.max() > _I64.max:
        raise OverflowError(f"{name} does not fit int64")
    return x.astype(np.int64)


def _channel(p: np.ndarray, ndim: int) -> np.ndarray:
    """Per-channel (C,) parameters placed on axis 1 (axis 0 for a 1-D tensor)."""
    if p.ndim != 1 or ndim <= 1:
        return p
    return p.reshape((1, -1) + (1,) * (ndim - 2))


def requantize(acc, m, s) -> np.ndarray:
    """(acc * m) >> s in int64 (floor shift).  m, s: scalars or (C,) per channel on axis 1.

    OverflowError if any |acc| > (2**63 - 1) // |m| (the product might not fit int64).
    """
    acc = _int64(acc, "acc")
    m = _channel(_int64(m, "m"), acc.ndim)
    s = _channel(_int64(s, "s"), acc.ndim)
    if (s < 0).any() or (s > 63).any():
        raise ValueError("shift must be in 0..63")
    limit = _I64.max // np.maximum(np.abs(m), 1)  # m is int32-sized in practice: abs cannot overflow
    if ((acc > limit) | (acc < -limit)).any():
        raise OverflowError("acc * m overflows int64")
    return (acc * m) >> s


def pair(v) -> tuple[int, int]:
    """(h, w) of a stride / padding given as one int or two."""
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def _check_range(x: np.ndarray, w: np.ndarray, k: int) -> None:
    bound = int(np.abs(x).max(initial=0)) * int(np.abs(w).max(initial=0)) * k
    if bound > _I64.max // 2:
        raise OverflowError("the accumulator could overflow int64")


def int_conv2d(x, w_minus_z, b_q=None, stride=1, padding=0, groups: int = 1) -> np.ndarray:
    """acc[n, o] = sum_{c, i, j} x_pad[n, g*Cg + c, oh*sh + i, ow*sw + j] * w[o, c, i, j] + b_q[o].

    x: NCHW integers; w_minus_z: (O, C/groups, kh, kw) integers (w_q - Z); b_q: (O,) or None;
    stride/padding: int or (h, w) pair; zero padding (0 stands for 0 in the input's units).
    """
    x, w = _int64(x, "x"), _int64(w_minus_z, "w_minus_z")
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    if groups < 1 or c != cg * groups or o % groups:
        raise ValueError(f"channels do not fit groups={groups}: input {c}, weight {w.shape}")
    _check_range(x, w, cg * kh * kw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    ho, wo = win.shape[2], win.shape[3]
    og = o // groups
    out = np.empty((n, o, ho, wo), dtype=np.int64)
    for g in range(groups):  # a loop over groups; each group is one integer matmul
        cols = win[:, g * cg:(g + 1) * cg].transpose(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, cg * kh * kw)
        wg = w[g * og:(g + 1) * og].reshape(og, -1)
        out[:, g * og:(g + 1) * og] = (cols @ wg.T).transpose(0, 3, 1, 2)
    if b_q is not None:
        out += _int64(b_q, "b_q").reshape(1, o, 1, 1)
    return out


def int_linear(x, w_minus_z, b_q=None) -> np.ndarray:
    """acc = x @ (w_q - Z).T + b_q; x (N, I), w (O, I), b_q (O,) or None."""
    x, w = _int64(x, "x"), _int64(w_minus_z, "w_minus_z")
    _check_range(x, w, w.shape[1])
    out = x @ w.T
    return out + _int64(b_q, "b_q") if b_q is not None else out


def avgpool2_int(x) -> np.ndarray:
    """2x2 stride-2 average of NCHW integers, rounded half up: (sum + 2) >> 2.  An odd last
    row/column is dropped (like torch's AvgPool2d(2, 2) with ceil_mode=False)."""
    x = _int64(x, "x")
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    q = x[..., :h, :w]
    total = q[..., 0::2, 0::2] + q[..., 0::2, 1::2] + q[..., 1::2, 0::2] + q[..., 1::2, 1::2]
    return (total + 2) >> 2


def relu_int(x) -> np.ndarray:
    """max(x, 0) as int64."""
    return np.maximum(_int64(x, "x"), 0)
