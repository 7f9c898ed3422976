"""XNOR/popcount golden data of one binary layer, from its captured (pre-binarization) input.

Stages per layer: `<layer>.input` (int8 +-1: +1 where the captured value > 0, else -1, the weights'
rule), `<layer>.input_packed` (the im2col patches of that input, packed exactly like the layer's
weights: one row of words per output position (N, HO, WO, W), same --word-bits and --layout,
positions in the zero padding encoded as -1 = bit 0), `<layer>.popcount` (int64 N x O x HO x WO:
n - 2 * popcount((a ^ w) & mask(n)), i.e. the +-1 dot with the padding taken as -1, what a plain
XNOR/popcount array computes), `<layer>.acc` (int64: the exact +-1 dot with zero padding, what the
float model's convolution computes before alpha and bias; = popcount + sum of the weights under the
padded positions) and, with BN folded to thresholds, `<layer>.output`.
"""

from __future__ import annotations

import numpy as np

from ..encode.options import EncodeOptions
from ..errors import CannotHandle
from ..model import QuantizedModel
from ..quantize.intops import pair
from .stages import Stage


def _patches(x_pm1: np.ndarray, kernel, stride, padding, layout: str) -> np.ndarray:
    """im2col of +-1 activations (N, C, H, W), padding positions = -1: (N, HO, WO, C*kh*kw) in the
    weights' flattening order (oihw: c, i, j; ohwi: i, j, c)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(x_pm1, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-1)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    # win: (N, C, HO, WO, kh, kw)
    order = (0, 2, 3, 1, 4, 5) if layout == "oihw" else (0, 2, 3, 4, 5, 1)
    n, c, ho, wo = win.shape[:4]
    return np.ascontiguousarray(win.transpose(order)).reshape(n, ho, wo, c * kh * kw)


def popcount_layer(qmodel: QuantizedModel, name: str, x: np.ndarray, encoding: EncodeOptions) -> list[Stage]:
    """Stages of one binary layer for captured (pre-binarization) input activations x, packed with
    the word size and layout of `encoding` (as `cheader`/`mem` would pack the weights)."""
    from ..encode import pack
    from ..quantize import intops

    opts = encoding
    q = qmodel.quant_layer(name)
    layer = qmodel.model.layer(name)
    codes = np.asarray(qmodel.tensor(q.weight).data)  # canonical: PyTorch (OIHW) order
    word_bits = opts.word_bits
    packed, _ = pack.pack_binary(codes, word_bits, opts.layout)
    n = int(np.prod(codes.shape[1:]))
    x_pm1 = np.where(x > 0, 1, -1).astype(np.int8)
    zeros = int(np.count_nonzero(x == 0))
    attrs = {"n": n, "word_bits": word_bits, "layout": opts.layout if codes.ndim == 4 else "oi",
             "exact_zero_inputs": zeros}  # fmt: skip
    if codes.ndim == 4:
        if int(layer.attrs.get("groups", 1)) != 1:
            raise CannotHandle(f"layer {name}: golden popcount vectors support groups=1 convolutions only")
        kernel, stride, padding = codes.shape[2:], pair(layer.attrs["stride"]), pair(layer.attrs["padding"])
        patches = _patches(x_pm1, kernel, stride, padding, opts.layout)
        nn_, ho, wo, _ = patches.shape
        a_words, _ = pack.pack_binary(patches.reshape(-1, n), word_bits, "oihw")
        a_words = a_words.reshape(nn_, ho, wo, -1)
        pop = np.concatenate([pack.popcount_dot(a_words[i:i + 1], packed, n) for i in range(nn_)])
        pop = pop.transpose(0, 3, 1, 2)
        acc = intops.int_conv2d(x_pm1, codes, None, stride=stride, padding=padding)
        act_layout, word_layout, out_layout = "NCHW", "N,HO,WO,words", "NCHW (N,O,HO,WO)"
    else:
        x_pm1 = x_pm1.reshape(x_pm1.shape[0], -1)
        a_words, _ = pack.pack_binary(x_pm1, word_bits, "oihw")
        pop = pack.popcount_dot(a_words, packed, n)
        acc = intops.int_linear(x_pm1, codes)
        act_layout, word_layout, out_layout = "NC", "N,words", "NC (N,O)"
    stages = [
        Stage(f"{name}.input", x_pm1, "binarized input activations (+1 where the float value > 0, else -1)",
              act_layout, name, "pm1", attrs),
        Stage(f"{name}.input_packed", a_words, f"input patches packed like the weights ({word_bits}-bit words, "
              f"LSB-first, 1=+1, padding positions -1 = bit 0)", word_layout, name, "packed", attrs),
        Stage(f"{name}.popcount", pop, "n - 2*popcount((a ^ w) & mask(n)): +-1 dot, padding taken as -1",
              out_layout, name, None, attrs),
        Stage(f"{name}.acc", acc, "exact +-1 dot with zero padding (before alpha and bias)", out_layout, name,
              None, attrs),
    ]  # fmt: skip
    if "threshold" in q.params and "flip" in q.params:
        stages.append(threshold_stage(name, layer, q, acc, attrs))
    return stages


def threshold_stage(name: str, layer, q, acc: np.ndarray, attrs: dict) -> Stage:
    """BN + sign folded to integer thresholds: +1 iff (flip ? a <= threshold : a >= threshold), where a
    is acc, or its 2x2 max-pool when the graph pools between the conv and the BN."""
    a, what = acc, "acc"
    if "maxpool2" in layer.follows and acc.ndim == 4:
        h, w = acc.shape[2] // 2 * 2, acc.shape[3] // 2 * 2
        a = acc[:, :, :h:2, :w:2]
        for di, dj in ((0, 1), (1, 0), (1, 1)):
            a = np.maximum(a, acc[:, :, di:h:2, dj:w:2])
        what = "2x2 max-pool of acc"
    shape = (1, -1) + (1,) * (a.ndim - 2)
    tau = np.asarray(q.params["threshold"], np.int64).reshape(shape)
    flip = np.asarray(q.params["flip"]).astype(bool).reshape(shape)
    out = np.where(np.where(flip, a <= tau, a >= tau), 1, -1).astype(np.int8)
    return Stage(f"{name}.output", out, f"sign(BN(.)) as thresholds: +1 iff (flip ? a <= threshold : a >= threshold), "
                 f"a = {what}", "NCHW" if out.ndim == 4 else "NC", name, "pm1", attrs)  # fmt: skip
