"""Lowering a conv/linear and what it absorbs (contract: qexport.integer.ir):

    conv/linear [-> max pool -> batch_norm] | [-> batch_norm] [-> relu | relu6 | hardtanh | sign]

Weights of every scheme are integers with a real per-channel scale: affine (q - Z_w) * S_w,
binary +-1 (times alpha, or 1), ternary {-1, 0, 1} * alpha.  A batch_norm after the layer (one the
plan did not fold) is absorbed into the per-channel scale and bias; a negative scale negates the
channel's weights.  When the value is binarized next (a sign, or a hardtanh / flatten / max pool
whose every consumer binarizes its input) the output is sign codes {0, 2} (value -1 / +1,
S = 1, Z = 1) from BN + sign thresholds on the accumulator (qexport.quantize.bn.bnn_thresholds:
+1 where BN >= 0); a max pool between the layer and that BN pools the sign codes (max, or min
where the BN's scale is negative).
"""

from __future__ import annotations

import numpy as np

from ..errors import PlanError
from ..graph.ir import Node
from ..quantize.bn import bnn_thresholds
from .ir import IntNode, QTensor, accumulator_bound

SIGN = QTensor(1.0, 1)  # codes 0, 1, 2 for -1, 0, +1
PASS_THROUGH = ("reshape", "flatten", "max_pool2d")


def weights(q, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(integer weights w - Z_w as int64, real per-output-channel scale float64)."""
    codes = np.asarray(codes, np.int64)
    channels = codes.shape[0]
    col = (-1,) + (1,) * (codes.ndim - 1)
    if q.scheme == "affine":
        zw = np.asarray(q.params["zero_point"], np.int64)
        w = codes - (zw.reshape(col) if zw.ndim else zw)
        return w, np.broadcast_to(np.asarray(q.params["scale"], np.float64), (channels,)).copy()
    if q.scheme in ("binary", "ternary"):
        alpha = q.params.get("alpha")
        scale = np.ones(channels) if alpha is None else np.broadcast_to(np.asarray(alpha, np.float64), (channels,)).copy()
        return codes, scale
    raise PlanError(f"layer {q.name}: scheme {q.scheme} has no integer form")


def binarized_next(lw, name: str) -> bool:
    """True when every consumer of node `name` binarizes it (through reshapes and max pools)."""
    users = lw.users.get(name, [])
    if not users:
        return False
    for u in users:
        if u.op in ("conv2d", "binary_conv2d", "linear", "binary_linear") and u.attrs.get("binarize_input"):
            continue
        if u.op == "sign" or (u.op in PASS_THROUGH and binarized_next(lw, u.name)):
            continue
        return False
    return True


def _single(lw, node: Node, ops) -> Node | None:
    users = lw.users[node.name]
    return users[0] if len(users) == 1 and users[0].op in ops else None


def bn_params(lw, bn: Node, channels: int):
    p = {role: np.asarray(lw.state[key], np.float64) for role, key in bn.params.items()}
    gamma = p.get("weight", np.ones(channels))
    beta = p.get("bias", np.zeros(channels))
    return gamma, beta, p["running_mean"], p["running_var"], float(bn.attrs["eps"])


def lower_weighted(lw, node: Node):
    q = lw.plans.get(node.params["weight"])
    if q is None or q.scheme not in ("affine", "binary", "ternary"):
        lw.refuse(node, f"the plan keeps it {q.scheme if q else 'float'}; the integer graph needs every conv/linear "
                        f"quantized (e.g. --bits N --only '*')")
    x_name, x = lw.source(node)
    if node.attrs.get("binarize_input") and x is not SIGN:
        lw.refuse(node, "it binarizes an input that is not a sign tensor")
    w, s_w = weights(q, lw.qmodel.tensor(q.weight).data)
    channels = w.shape[0]
    bias = np.asarray(lw.state[node.params["bias"]], np.float64) if "bias" in node.params else np.zeros(channels)
    # what the layer absorbs
    pool = _single(lw, node, ("max_pool2d",))
    bn = _single(lw, pool or node, ("batch_norm",))
    if pool is not None and bn is None:
        pool = None
    last = bn or node
    act = _single(lw, last, ("relu", "relu6", "hardtanh", "sign"))
    covers = [n.name for n in (node, pool, bn, act) if n is not None]
    to_sign = (act is not None and act.op == "sign") or binarized_next(lw, (act or last).name)
    if act is not None and act.op == "hardtanh" and not to_sign:
        lw.refuse(act, "a hardtanh whose output is not binarized next")
    scale = x.scale * s_w  # real value of one accumulator step, per channel
    bound = accumulator_bound(w)
    attrs = {"zero_in": x.zero_point, "acc_bits": 32 if bound < (1 << 30) else 64}
    if node.op.endswith("conv2d"):
        attrs.update(stride=node.attrs["stride"], padding=node.attrs["padding"], dilation=node.attrs["dilation"],
                     groups=node.attrs["groups"])  # fmt: skip
    arrays = {"w_minus_z": w.astype(np.int32)}
    if to_sign:
        if bn is None:
            lw.refuse(node, "a sign right after the layer without a BatchNorm (no threshold form yet)")
        g, b, mu, var, eps = bn_params(lw, bn, channels)
        # BN(scale * acc + bias) == BN'(acc) with mean (mu - bias) / scale, var + eps -> (var + eps) / scale^2
        tau, flip = bnn_thresholds(g, b, (mu - bias) / scale, (var + eps) / scale ** 2, 0.0, layer=node.name)
        arrays.update(tau=tau.astype(np.int64), flip=flip.astype(np.uint8))
        attrs.update(mode="sign")
        if pool is not None:
            attrs.update(pool_kernel=pool.attrs["kernel"], pool_stride=pool.attrs["stride"])
        out, shape = SIGN, (act or last).output_shape
    else:
        if bn is not None:
            g, b, mu, var, eps = bn_params(lw, bn, channels)
            kbn = g / np.sqrt(var + eps)
            scale, bias = scale * kbn, (bias - mu) * kbn + b
        negative = scale < 0
        arrays["w_minus_z"] = np.where(negative.reshape((-1,) + (1,) * (w.ndim - 1)), -w, w).astype(np.int32)
        scale = np.abs(scale)
        out = lw.range_of((act or last).name)
        b_q = np.round(bias / np.where(scale > 0, scale, 1.0)).astype(np.int64)
        m, s = lw.scale_pair(scale / out.scale, node.name)
        if (bound + int(np.abs(b_q).max(initial=0))) * int(m.max(initial=1)) >= 1 << 62:
            raise PlanError(f"node {node.name}: the accumulator times m could exceed int64")
        lo, hi = (out.zero_point if act is not None and act.op in ("relu", "relu6") else 0), 255
        if act is not None and act.op == "relu6":
            hi = min(255, out.zero_point + int(round(6.0 / out.scale)))
        arrays.update(b_q=b_q, m=m, s=s)
        attrs.update(mode="requantize", zero_out=out.zero_point, lo=lo, hi=hi)
        shape = (act or last).output_shape
    op = "conv2d" if node.op.endswith("conv2d") else "linear"
    lw.emit(IntNode(node.name, op, (x_name,), shape, out, attrs, arrays, tuple(covers)), *covers)
    return covers[1:]


def lower_bn_sign(lw, bn: Node):
    """batch_norm of a uint8 tensor followed by sign: per-channel thresholds on its codes."""
    sign = _single(lw, bn, ("sign",))
    if sign is None:
        lw.refuse(bn, "a BatchNorm the plan did not fold, not followed by a layer or a sign")
    x_name, x = lw.source(bn)
    channels = bn.output_shape[0]
    g, b, mu, var, eps = bn_params(lw, bn, channels)
    # BN(S (q - Z)) == BN'(q) with mean mu / S + Z, var + eps -> (var + eps) / S^2
    tau, flip = bnn_thresholds(g, b, mu / x.scale + x.zero_point, (var + eps) / x.scale ** 2, 0.0, layer=bn.name)
    arrays = {"tau": tau.astype(np.int64), "flip": flip.astype(np.uint8)}
    lw.emit(IntNode(bn.name, "threshold", (x_name,), sign.output_shape, SIGN, {}, arrays, (bn.name, sign.name)),
            bn.name, sign.name)  # fmt: skip
    return [sign.name]


def lower_prelu(lw, node: Node):
    """y = x (x >= 0) or slope_c * x, both branches requantized to the output's scale; a leaky
    ReLU is a PReLU with one slope."""
    x_name, x = lw.source(node)
    out = lw.range_of(node.name)
    if node.op == "leaky_relu":
        slope = np.asarray([float(node.attrs["negative_slope"])])
    else:
        slope = np.asarray(lw.state[node.params["weight"]], np.float64).ravel()
    slope = np.broadcast_to(slope, (node.output_shape[0],)).copy()
    m_pos, s_pos = lw.scale_pair(np.asarray([x.scale / out.scale]), node.name)
    m_neg, s_neg = lw.scale_pair(np.abs(slope) * x.scale / out.scale, node.name)
    arrays = {"m_pos": m_pos, "s_pos": s_pos, "m_neg": np.where(slope < 0, -m_neg, m_neg), "s_neg": s_neg}
    attrs = {"zero_in": x.zero_point, "zero_out": out.zero_point}
    lw.emit(IntNode(node.name, "prelu", (x_name,), node.output_shape, out, attrs, arrays), node.name)


def lower_cat(lw, node: Node):
    """Concatenation: every input requantized to the output's scale (m_i >> s_i), then joined."""
    if node.attrs["dim"] != 1:
        lw.refuse(node, "cat along another axis than the channels")
    names = [lw.where[i] for i in node.inputs]
    ins = [lw.tensors[n] for n in names]
    out = lw.range_of(node.name)
    arrays, zeros = {}, []
    for k, t in enumerate(ins):
        m, s = lw.scale_pair(np.asarray([t.scale / out.scale]), node.name)
        arrays[f"m{k}"], arrays[f"s{k}"] = m, s
        zeros.append(t.zero_point)
    attrs = {"zeros_in": tuple(zeros), "zero_out": out.zero_point}
    lw.emit(IntNode(node.name, "cat", tuple(names), node.output_shape, out, attrs, arrays), node.name)
