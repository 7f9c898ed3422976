"""Packed binary layers of the generated C (qexport.csource, README "C source"): a conv or linear
whose weights w - Z_w are all +1/-1 and whose input holds sign codes (0 = -1, 2 = +1: a
threshold or a sign-mode layer, possibly max-pooled, reshaped or shuffled) stores one bit per
weight and accumulates by XNOR-popcount instead of multiply-adds.

Layout.  Weights: per output channel o and kernel position (ky, kx), W = ceil(cin / 32) uint32
words; bit i of word j is input channel 32 j + i, set for +1; unused high bits 0.  Input: packed
at run time into a static scratch `qx_bits`, the same W words per input position (iy, ix).
A linear is a conv on a 1 x 1 plane whose channels are the flattened input.

Arithmetic (the contract's sum, exactly): over the positions inside the plane (padding holds
Z_x = 1, so contributes 0), sum (x - 1) w = n - 2 popcount(x ^ w) for n = cin matching bits, the
zero high bits never differing.  Then the requantize or sign epilogue of the byte kernels.
"""

from __future__ import annotations

import numpy as np

from ..integer.ir import IntGraph, IntNode

# ops that keep sign codes {0, 2} as they are (index maps or a max over them)
_KEEPS_CODES = ("max_pool2d", "reshape", "channel_shuffle")

POPCOUNT = r"""
/* popcount of a 32-bit word: the compiler's builtin where it has one (define QX_PORTABLE_POPCOUNT
   to force the portable version), else the classic SWAR bit count */
#if defined(__GNUC__) && !defined(QX_PORTABLE_POPCOUNT)
#define qx_popcount(v) ((int32_t)__builtin_popcountl((unsigned long)(v)))
#else
static int32_t qx_popcount(uint32_t v)
{
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (int32_t)((uint32_t)(v * 0x01010101u) >> 24);
}
#endif

/* sign codes of c channels x hw positions (channel-major) -> words per position (see layout) */
static void qx_pack_bits(int32_t c, int32_t hw, const uint8_t *x, uint32_t *bits)
{
    const int32_t words = (c + 31) / 32;
    int32_t i, p;
    for (i = 0; i < hw * words; i++)
        bits[i] = 0u;
    for (i = 0; i < c; i++)
        for (p = 0; p < hw; p++)
            if (x[i * hw + p] == 2u)
                bits[p * words + i / 32] |= (uint32_t)1u << (i % 32);
}

/* sum (x - 1) w over output channel o's window at conv position (oy, ox): n - 2 popcount(x ^ w) */
static int32_t qx_bin_acc(const qx_conv_geom *g, const uint32_t *wb, const uint32_t *xb, int32_t o, int32_t oy,
                          int32_t ox)
{
    const int32_t words = (g->cin + 31) / 32;
    const qx_window v = qx_window_at(g, oy, ox);
    int32_t ky, kx, j, differ = 0;
    for (ky = v.ky0; ky < v.ky1; ky++)
        for (kx = v.kx0; kx < v.kx1; kx++) {
            const uint32_t *xp = xb + ((v.iy + ky * g->dh) * g->w + v.ix + kx * g->dw) * words;
            const uint32_t *wp = wb + ((o * g->kh + ky) * g->kw + kx) * words;
            for (j = 0; j < words; j++)
                differ += qx_popcount(xp[j] ^ wp[j]);
        }
    return (v.ky1 - v.ky0) * (v.kx1 - v.kx0) * g->cin - 2 * differ;
}
"""

CONV_BIN = r"""
/* packed binary conv / linear, requantized: y = clamp(Z_y + rshift((acc + b_q) m, s), lo, hi) */
static void qx_conv_bin_{bt}(const qx_conv_geom *g, const uint32_t *wb, const {bt} *bq, const int32_t *m,
                            const uint8_t *s, const uint32_t *xb, uint8_t *y)
{
    int32_t o, oy, ox;
    for (o = 0; o < g->cout; o++)
        for (oy = 0; oy < g->ho; oy++)
            for (ox = 0; ox < g->wo; ox++) {
                const int64_t acc = (int64_t)qx_bin_acc(g, wb, xb, o, oy, ox) + (int64_t)bq[o];
                y[(o * g->ho + oy) * g->wo + ox] = qx_clamp(g->zout + qx_rshift(acc * (int64_t)m[o], s[o]), g->lo, g->hi);
            }
}
"""

CONV_BIN_SIGN = r"""
/* packed binary conv / linear + BN + sign, pooled as qx_conv_sign_* (pw: kernel h, w, stride h, w,
   pooled h, w): code 2 where (flip[o] ? acc <= tau[o] : acc >= tau[o]), max (min where flip) */
static void qx_conv_sign_bin_{tt}(const qx_conv_geom *g, const int32_t *pw, const uint32_t *wb, const {tt} *tau,
                                 const uint8_t *flip, const uint32_t *xb, uint8_t *y)
{
    int32_t o, py, px, i, j;
    for (o = 0; o < g->cout; o++) {
        const int64_t t = (int64_t)tau[o];
        for (py = 0; py < pw[4]; py++)
            for (px = 0; px < pw[5]; px++) {
                uint8_t code = (uint8_t)(flip[o] ? 2 : 0); /* the identity of min / max on {0, 2} */
                for (i = 0; i < pw[0]; i++)
                    for (j = 0; j < pw[1]; j++) {
                        const int64_t acc = (int64_t)qx_bin_acc(g, wb, xb, o, py * pw[2] + i, px * pw[3] + j);
                        const uint8_t bit = (uint8_t)((flip[o] ? acc <= t : acc >= t) ? 2 : 0);
                        if (flip[o] ? bit < code : bit > code)
                            code = bit;
                    }
                y[(o * pw[4] + py) * pw[5] + px] = code;
            }
    }
}
"""


def conv_bin_kernel(bt: str) -> tuple[str, str]:
    """(function name, C text) of the requantizing packed kernel for bias type `bt`."""
    tag = bt[:-2].replace("int", "b")
    return f"qx_conv_bin_{tag}", CONV_BIN.replace("qx_conv_bin_{bt}", f"qx_conv_bin_{tag}").replace("{bt}", bt)


def sign_bin_kernel(tt: str) -> tuple[str, str]:
    """(function name, C text) of the sign-mode packed kernel for threshold type `tt`."""
    tag = tt[:-2].replace("int", "t")
    return f"qx_conv_sign_bin_{tag}", CONV_BIN_SIGN.replace("qx_conv_sign_bin_{tt}", f"qx_conv_sign_bin_{tag}").replace("{tt}", tt)


def holds_sign_codes(igraph: IntGraph, name: str) -> bool:
    """Whether tensor `name` can only hold the codes 0 and 2: a threshold's or sign-mode layer's
    output, through ops that keep codes."""
    while name != "input":
        node = igraph.node(name)
        if node.op == "threshold" or (node.op in ("conv2d", "linear") and node.attrs.get("mode") == "sign"):
            return True
        if node.op not in _KEEPS_CODES:
            return False
        name = node.inputs[0]
    return False


def packable(igraph: IntGraph, node: IntNode) -> bool:
    """A conv / linear the packed kernels implement exactly: +1/-1 weights, one group, input zero
    point 1 on sign codes."""
    w = np.asarray(node.arrays.get("w_minus_z", np.zeros(0)))
    return (node.op in ("conv2d", "linear") and w.size > 0 and bool(np.all(np.abs(w) == 1))
            and node.attrs.get("groups", 1) == 1 and np.ndim(node.attrs["zero_in"]) == 0
            and int(node.attrs["zero_in"]) == 1 and holds_sign_codes(igraph, node.inputs[0]))  # fmt: skip


def pack_weights(w_minus_z: np.ndarray) -> np.ndarray:
    """uint32 words [cout][kh][kw][ceil(cin / 32)] of +1/-1 weights [cout, cin(, kh, kw)]."""
    w = np.asarray(w_minus_z)
    w = w.reshape(w.shape + (1, 1)) if w.ndim == 2 else w
    cout, cin, kh, kw = w.shape
    words = -(-cin // 32)
    bits = np.zeros((cout, kh, kw, words * 32), np.uint64)
    bits[..., :cin] = np.moveaxis(w > 0, 1, -1)
    weights = np.uint64(1) << np.arange(32, dtype=np.uint64)
    return (bits.reshape(cout, kh, kw, words, 32) * weights).sum(axis=-1).astype(np.uint32)


def hex_array(ident: str, words: np.ndarray, comment: str) -> str:
    """`static const uint32_t IDENT[N] = {0x...u, ...};`, 8 words a line."""
    flat = [f"0x{int(v):08X}u" for v in np.asarray(words, np.uint32).ravel()] or ["0x00000000u"]
    lines = [", ".join(flat[i:i + 8]) for i in range(0, len(flat), 8)]
    return f"/* {comment} */\nstatic const uint32_t {ident}[{len(flat)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"
