"""Run a Graph in floating point with numpy (README "The network graph"): the float reference of
a network, its node outputs for calibration, without torch.

    outputs = run_graph(graph, state, x)               # {node name: array}, "input" included
    logits = outputs[graph.output]

`state` maps the graph's parameter names to arrays (the checkpoint's tensors, or dequantized
weights).  float64 by default: a Sign or threshold after a float32 sum flips with the machine's
kernels, float64 keeps the reference the same everywhere.  Vectorised (sliding windows + einsum).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .ir import Graph, Node


def _col(v: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast over (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def windows(x: np.ndarray, kernel, stride, padding, dilation=(1, 1), pad_value=0) -> np.ndarray:
    """(N, C, Ho, Wo, kh, kw) views of the padded input (also the integer reference's windows)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = sliding_window_view(x, (span_h, span_w), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    return win


def conv2d(x, w, b, stride, padding, dilation, groups):
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    win = windows(x, (kh, kw), stride, padding, dilation)
    ho, wo = win.shape[2:4]
    win = win.reshape(n, groups, cg, ho, wo, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", win, w.reshape(groups, o // groups, cg, kh, kw), optimize=True)
    out = out.reshape(n, o, ho, wo)
    return out if b is None else out + _col(b, 4)


def _adaptive_avg(x, out_hw):
    (n, c, h, w), (oh, ow) = x.shape, out_hw
    if h % oh == 0 and w % ow == 0:  # the usual case (global pooling): equal windows
        return x.reshape(n, c, oh, h // oh, ow, w // ow).mean(axis=(3, 5))
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):  # torch's window bounds: floor(i*h/oh) .. ceil((i+1)*h/oh)
        for j in range(ow):
            h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


def _softmax(t, dim, log):
    z = t - t.max(axis=dim, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=dim, keepdims=True))
    return z - lse if log else np.exp(z - lse)


def _weighted(node: Node, t, p):
    a, op = node.attrs, node.op
    w = np.sign(p["weight"]) if op.startswith("binary_") else p["weight"]
    t = np.sign(t) if a.get("binarize_input") else t
    if op.endswith("conv2d"):
        return conv2d(t, w, p.get("bias"), a["stride"], a["padding"], a["dilation"], a["groups"])
    return t @ w.T + (p["bias"] if "bias" in p else 0)


def _batch_norm(node: Node, t, p):
    y = (t - _col(p["running_mean"], t.ndim)) / np.sqrt(_col(p["running_var"], t.ndim) + node.attrs["eps"])
    return y * _col(p["weight"], t.ndim) + _col(p["bias"], t.ndim) if node.attrs["affine"] else y


def _prelu(node: Node, t, p):
    slope = p["weight"] if p["weight"].size == 1 else _col(p["weight"], t.ndim)
    return np.where(t > 0, t, slope * t)


def _max_pool(node: Node, t, p):
    a = node.attrs
    if a["ceil_mode"]:
        raise NotImplementedError(f"node {node.name}: max_pool2d with ceil_mode")
    return windows(t, a["kernel"], a["stride"], a["padding"], a["dilation"], -np.inf).max(axis=(4, 5))


def _avg_pool(node: Node, t, p):
    a = node.attrs
    if a["ceil_mode"] or not (a["count_include_pad"] or tuple(a["padding"]) == (0, 0)):
        raise NotImplementedError(f"node {node.name}: avg_pool2d with ceil_mode or count_include_pad=False")
    return windows(t, a["kernel"], a["stride"], a["padding"]).mean(axis=(4, 5))


def _flatten(node: Node, t, p):
    s, e = node.attrs["start_dim"], node.attrs["end_dim"] % t.ndim
    return t.reshape(t.shape[:s] + (-1,) + t.shape[e + 1:])


def _shuffle(node: Node, t, p):
    n, c, h, w = t.shape
    g = node.attrs["groups"]
    return t.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


# op -> f(node, first input, parameters by role); add and cat take every input (below)
OPS: Mapping[str, Callable] = {
    "conv2d": _weighted, "binary_conv2d": _weighted, "linear": _weighted, "binary_linear": _weighted,
    "batch_norm": _batch_norm, "prelu": _prelu, "max_pool2d": _max_pool, "avg_pool2d": _avg_pool,
    "relu": lambda n, t, p: np.maximum(t, 0), "relu6": lambda n, t, p: np.clip(t, 0, 6),
    "hardtanh": lambda n, t, p: np.clip(t, n.attrs["min_val"], n.attrs["max_val"]),
    "leaky_relu": lambda n, t, p: np.where(t > 0, t, n.attrs["negative_slope"] * t),
    "sigmoid": lambda n, t, p: 1 / (1 + np.exp(-t)), "tanh": lambda n, t, p: np.tanh(t),
    "sign": lambda n, t, p: np.sign(t),
    "adaptive_avg_pool2d": lambda n, t, p: _adaptive_avg(t, n.attrs["output_size"]),
    "flatten": _flatten, "reshape": lambda n, t, p: t.reshape((t.shape[0],) + tuple(n.attrs["shape"])),
    "channel_shuffle": _shuffle,
    "softmax": lambda n, t, p: _softmax(t, n.attrs["dim"], False),
    "log_softmax": lambda n, t, p: _softmax(t, n.attrs["dim"], True),
}  # fmt: skip


def run_graph(graph: Graph, state: Mapping[str, np.ndarray], x: np.ndarray, dtype=np.float64) -> dict[str, np.ndarray]:
    """Every node's output for input batch `x` (N, *graph.input_shape), computed in `dtype`."""
    values = {"input": np.asarray(x, dtype=dtype)}
    for node in graph.nodes:
        ins = [values[i] for i in node.inputs]
        if node.op == "add":
            y = ins[0] + ins[1]
        elif node.op == "cat":
            y = np.concatenate(ins, axis=node.attrs["dim"])
        else:
            params = {role: np.asarray(state[key], dtype=dtype) for role, key in node.params.items()}
            y = OPS[node.op](node, ins[0], params)
        values[node.name] = np.asarray(y, dtype=dtype)
    return values
