"""Functional calls and tensor methods -> ops, and the attrs of module ops (README "The network
graph", "Ops").  `translate` returns (op, data inputs, attrs), "drop" for eval no-ops, or None
(not supported: the caller raises a GraphError).  Dims in attrs (flatten, cat, softmax) count the
batch dimension, as torch does, and are made non-negative.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F

from .trace import PROBE_BATCH

UNARY = {torch.relu: "relu", F.relu: "relu", torch.relu_: "relu", F.relu6: "relu6", torch.sigmoid: "sigmoid",
         F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh", torch.sign: "sign",
         "relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh",
         "tanh_": "tanh", "sign": "sign", "sign_": "sign"}  # fmt: skip
ADD = (operator.add, operator.iadd, torch.add, "add", "add_")
CAT = (torch.cat, torch.concat, torch.concatenate)
DROPOUT = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, "contiguous")
RESHAPE = ("view", "reshape", torch.reshape)
AVG_POOL = tuple(f for f in (F.avg_pool2d, getattr(torch, "avg_pool2d", None)) if f is not None)
TRANSPOSE = (torch.transpose, "transpose", "permute", torch.permute)


def bind(n: fx.Node, names: tuple, defaults: dict) -> dict:
    out = dict(defaults)
    out.update(zip(names, n.args))
    out.update(n.kwargs)
    return out


def weight_roles(m) -> tuple[str, ...]:
    return ("weight",) + (("bias",) if m.bias is not None else ())


def conv_attrs(m, conv, n, source) -> dict:
    if m.padding_mode != "zeros":
        raise conv.fail(n, f"Conv2d(padding_mode={m.padding_mode!r})", source)
    padding = m.padding
    if isinstance(padding, str):  # "valid" / "same" (stride 1, symmetric only)
        total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
        if padding == "same" and any(t % 2 for t in total):
            raise conv.fail(n, "Conv2d(padding='same') with asymmetric padding", source)
        padding = (0, 0) if padding == "valid" else tuple(t // 2 for t in total)
    return {"stride": tuple(m.stride), "padding": tuple(padding), "dilation": tuple(m.dilation),
            "groups": int(m.groups), "binarize_input": False}  # fmt: skip


def _pair(v):
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def max_pool_attrs(kernel, stride, padding, dilation, ceil_mode, return_indices):
    if return_indices:
        return "max_pool2d(return_indices=True)"
    stride = kernel if stride is None or stride == [] or stride == () else stride
    return {"kernel": _pair(kernel), "stride": _pair(stride), "padding": _pair(padding),
            "dilation": _pair(dilation), "ceil_mode": bool(ceil_mode)}  # fmt: skip


def avg_pool_attrs(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    if divisor_override:
        return "avg_pool2d(divisor_override)"
    stride = kernel if stride is None or stride == [] or stride == () else stride
    return {"kernel": _pair(kernel), "stride": _pair(stride), "padding": _pair(padding),
            "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad)}  # fmt: skip


def _dim(ndim: int, d: int) -> int:
    return d + ndim if d < 0 else d


def flatten_attrs(in_shape, start_dim, end_dim) -> dict:
    return {"start_dim": _dim(len(in_shape), int(start_dim)), "end_dim": _dim(len(in_shape), int(end_dim))}


def dim_attr(in_shape, dim) -> int:
    if dim is None:  # torch's legacy implicit dim: 0 for 0-, 1- and 3-d inputs, else 1
        dim = 0 if len(in_shape) in (0, 1, 3) else 1
    return _dim(len(in_shape), int(dim))


def _tensor_users(conv, n):
    return [u for u in n.users if conv.is_tensor(u)]


def _transpose_dims(n) -> tuple:
    if n.target in ("permute", torch.permute):
        dims = n.args[1:] if n.target == "permute" and len(n.args) > 2 else n.args[1]
        return tuple(dims) if tuple(dims) == (0, 2, 1, 3, 4) else ()
    return tuple(sorted(int(d) % 5 for d in n.args[1:3])) if len(n.args) >= 3 else ()


def is_shuffle_start(conv, n) -> bool:
    """view/reshape (B, C, H, W) -> (B, g, C/g, H, W), then transpose(1, 2), then back to (B, C, H, W)."""
    return _shuffle(conv, n) is not None


def _shuffle(conv, n):
    if n.target not in RESHAPE or not n.args or not conv.is_tensor(n.args[0]):
        return None
    src, mid = conv.shape(n.args[0]), conv.shape(n)
    if len(src) != 4 or len(mid) != 5 or mid[0] != src[0] or mid[1] * mid[2] != src[1] or mid[3:] != src[2:]:
        return None
    users = _tensor_users(conv, n)
    if len(users) != 1 or users[0].target not in TRANSPOSE or _transpose_dims(users[0]) not in ((1, 2), (0, 2, 1, 3, 4)):
        return None
    chain = [users[0]]
    nxt = _tensor_users(conv, users[0])
    if len(nxt) == 1 and nxt[0].target == "contiguous":
        chain.append(nxt[0])
        nxt = _tensor_users(conv, nxt[0])
    if len(nxt) != 1 or nxt[0].target not in RESHAPE or conv.shape(nxt[0]) != src:
        return None
    chain.append(nxt[0])
    return chain, int(mid[1])


def shuffle_chain(conv, n):
    chain, groups = _shuffle(conv, n)
    conv.skip.update(c.name for c in chain)
    return chain[-1], groups


def global_mean(conv, n, target):
    """keepdim (bool) when `n` is a mean of a 4-d tensor over dims (2, 3), else None."""
    if target not in ("mean", torch.mean) or not n.args or not conv.is_tensor(n.args[0]):
        return None
    a = bind(n, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False, "dtype": None})
    shape = conv.shape(n.args[0])
    if len(shape) != 4 or a["dim"] is None or a["dtype"] is not None:
        return None
    dims = a["dim"] if isinstance(a["dim"], (tuple, list)) else (a["dim"],)
    return bool(a["keepdim"]) if sorted(_dim(4, int(d)) for d in dims) == [2, 3] else None


def translate(conv, n, target, name):
    args = [a for a in n.args if conv.is_tensor(a)]
    x = n.args[0] if n.args else None
    if not conv.is_tensor(x) and target not in CAT:
        return None
    shape_in = conv.shape(x) if conv.is_tensor(x) else None
    if target in DROPOUT:
        return "drop"
    if target in UNARY:
        return UNARY[target], [x], {}
    if target is F.leaky_relu:
        return "leaky_relu", [x], {"negative_slope": float(bind(n, ("input", "negative_slope"), {"negative_slope": 0.01})["negative_slope"])}
    if target is F.hardtanh:
        a = bind(n, ("input", "min_val", "max_val"), {"min_val": -1.0, "max_val": 1.0})
        return "hardtanh", [x], {"min_val": float(a["min_val"]), "max_val": float(a["max_val"])}
    if target in ADD:
        a = bind(n, ("input", "other", "alpha"), {"alpha": 1})
        if len(args) != 2 or not conv.is_tensor(a["other"]) or a["alpha"] != 1:
            return "!(other than the sum of two tensors) is not supported", [], {}
        return "add", [x, a["other"]], {}
    if target in CAT:
        a = bind(n, ("tensors", "dim"), {"dim": 0})
        tensors = list(a["tensors"])
        if not all(conv.is_tensor(t) for t in tensors):
            return None
        d = _dim(len(conv.shape(tensors[0])), int(a["dim"]))
        if d == 0:
            return "!along the batch dimension is not supported", [], {}
        return "cat", tensors, {"dim": d}
    if target in ("flatten", torch.flatten):
        a = bind(n, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
        attrs = flatten_attrs(shape_in, a["start_dim"], a["end_dim"])
        if attrs["start_dim"] == 0:
            return "!(flattening the batch dimension) is not supported", [], {}
        return "flatten", [x], attrs
    if target in RESHAPE:
        out = conv.shape(n)
        if out[0] != PROBE_BATCH:
            return "!(a reshape that mixes the batch dimension) is not supported", [], {}
        return "reshape", [x], {"shape": tuple(out[1:])}
    if target in (F.max_pool2d, torch.max_pool2d):
        a = bind(n, ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                 {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False})
        attrs = max_pool_attrs(a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"], a["return_indices"])
        return ("!" + attrs + " is not supported", [], {}) if isinstance(attrs, str) else ("max_pool2d", [x], attrs)
    if target in AVG_POOL:
        a = bind(n, ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
                 {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True, "divisor_override": None})
        attrs = avg_pool_attrs(a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"],
                               a["divisor_override"])  # fmt: skip
        return ("!" + attrs + " is not supported", [], {}) if isinstance(attrs, str) else ("avg_pool2d", [x], attrs)
    if target is F.adaptive_avg_pool2d:
        return "adaptive_avg_pool2d", [x], {"output_size": tuple(conv.shape(n)[2:])}
    if target in (F.softmax, torch.softmax, "softmax", F.log_softmax, torch.log_softmax, "log_softmax"):
        a = bind(n, ("input", "dim"), {"dim": None})
        op = "log_softmax" if getattr(target, "__name__", target) == "log_softmax" else "softmax"
        return op, [x], {"dim": dim_attr(shape_in, a["dim"])}
    return None
