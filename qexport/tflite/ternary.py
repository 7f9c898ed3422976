"""The ternary TWN's pieces in the tflite profile (README "TFLite"): ternary weights as int8 codes in
{-1, 0, 1} with scale alpha_c, the BN after a ternary conv folded into it, channel shuffle as
RESHAPE -> TRANSPOSE -> RESHAPE, and a sign between a conv and a linear layer.

A sign has no int8 builtin, but sign(z) of a conv's output z is exact in int8 when
  * z's tensor A has scale S_in * min_c S_w_c: every multiplier is >= 1, so a code of A is zero
    exactly when the int32 accumulator is (sign(code) = sign(accumulator); saturation is harmless);
  * a QUANTIZE by 256 saturates the codes to {-128, 0, 127} and a QUANTIZE by 1/2 (rounding half
    away from zero) makes them {-64, 0, 64}: the tensor holds eps * sign(z), eps = 64 * its scale;
  * the only consumers are linear layers, which take weights W / eps: W (eps sign) / eps = W sign.
Binarized activations anywhere else (the binary VGG and ResNet18) stay refused.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..graph.ir import Graph, Node
from ..integer.network import without_node
from .arith import f32
from .ir import TflTensor

LINEAR_OPS = ("conv2d", "linear")


def sign_is_exact(graph: Graph, node: Node) -> bool:
    """A sign of a conv's output (through at most one BN) feeding only non-binarizing linear layers."""
    src = graph.node(node.inputs[0]) if node.inputs[0] != "input" else None
    if src is not None and src.op == "batch_norm":
        src = graph.node(src.inputs[0]) if src.inputs[0] != "input" else None
    users = [n for n in graph.nodes if node.name in n.inputs]
    return (src is not None and src.op == "conv2d" and not src.attrs.get("binarize_input") and bool(users)
            and all(u.op in LINEAR_OPS and not u.attrs.get("binarize_input") for u in users))  # fmt: skip


def fold_ternary_bn(graph: Graph, state: dict, qmodel) -> tuple[Graph, dict, dict, dict]:
    """(graph, state, {weight name: (codes int8 {-1,0,1}, scale float32)}, {conv: the BN folded into it})
    with each BN that follows a
    ternary conv (its only user) folded into it: w k_c, (b - mu) k_c + beta, k_c = gamma / sqrt(var + eps).
    The codes are the plan's ternary codes times sign(k_c); the scale alpha_c |k_c| (alpha_c where k_c = 0, 1 where that is 0)."""
    ternary = {q.weight: q for q in qmodel.layers if q.weight and q.scheme == "ternary"}
    state, codes, folded = dict(state), {}, {}
    for node in list(graph.nodes):
        w_name = node.params.get("weight")
        if w_name not in ternary:
            continue
        users = [n for n in graph.nodes if node.name in n.inputs]
        k = np.ones(state[w_name].shape[0])
        bias = state[node.params["bias"]] if "bias" in node.params else np.zeros(k.size)
        if len(users) == 1 and users[0].op == "batch_norm" and node.name != graph.output:
            bn, p = users[0], users[0].params
            k = 1.0 / np.sqrt(state[p["running_var"]] + bn.attrs["eps"])
            shift = -state[p["running_mean"]] * k
            if bn.attrs["affine"]:
                k, shift = k * state[p["weight"]], shift * state[p["weight"]] + state[p["bias"]]
            bias = bias * k + shift
            graph = without_node(graph, bn.name)
            folded[node.name] = (bn.name,)
        q = ternary[w_name]
        t = np.asarray(qmodel.tensor(w_name).data, np.int8)
        col = (-1,) + (1,) * (t.ndim - 1)
        alpha = np.asarray(q.params["alpha"], np.float64)
        state[w_name] = state[w_name] * k.reshape(col)
        bias_name = node.params.get("bias") or f"{node.name}.bias"
        state[bias_name] = bias
        if "bias" not in node.params:
            graph = replace(graph, nodes=tuple(replace(n, params={**n.params, "bias": bias_name}) if n.name == node.name
                                               else n for n in graph.nodes))  # fmt: skip
        signs = np.where(k < 0, -1, 1).astype(np.int8)
        scale = np.where(k != 0, alpha * np.abs(k), alpha)
        scale = np.where(scale > 0, scale, 1.0)  # an all-zero channel (alpha 0): codes 0, any positive scale
        codes[w_name] = ((t * signs.reshape(col)).astype(np.int8), scale.astype(np.float32))
    return graph, state, codes, folded


class TernaryOps:
    """Handlers mixed into TfliteLowering (profile.py) for the TWN's channel shuffle and sign."""

    def output_for(self, node: Node, last: Node, x: TflTensor, w_scale: np.ndarray, shape) -> TflTensor:
        """The calibrated output tensor, or for a conv feeding an exact sign the scale S_in min S_w."""
        users = self.users[last.name]
        if len(users) == 1 and users[0].op == "sign" and sign_is_exact(self.graph, users[0]):
            return TflTensor(last.name, tuple(shape), f32(float(x.scale) * float(w_scale.min())), 0)
        return self.calibrated(last.name, shape)

    def op_sign(self, node: Node):
        a = self.x(node)
        producer = self.ops[-1] if self.ops else None
        if (not sign_is_exact(self.graph, node) or producer is None or producer.output != a.name
                or producer.op not in ("CONV_2D", "DEPTHWISE_CONV_2D") or a.zero_point != 0):  # fmt: skip
            self.refuse(node, "binarized activations (sign) have no int8 TFLite form here (only a conv's sign "
                              "feeding linear layers)")  # fmt: skip
        wide = TflTensor(f"{node.name}.saturated", a.shape, f32(a.scale / 256), 0)
        self.emit("QUANTIZE", (a.name,), wide, ())
        out = TflTensor(node.name, a.shape, f32(wide.scale * 2), 0)
        self.emit("QUANTIZE", (wide.name,), out, (node.name,))
        self.sign_gain[out.name] = 64.0 * float(out.scale)

    def op_channel_shuffle(self, node: Node):
        """torch's reshape (g, C/g) -> transpose -> reshape on NCHW is, on NHWC, the same on the
        channel axis: (HW, g, C/g) -> (HW, C/g, g) -> (H, W, C); a copy of codes."""
        x = self.x(node)
        if len(x.shape) != 3:
            self.refuse(node, "channel shuffle of a tensor that is not (C, H, W)")
        (h, w, c), g = x.shape, int(node.attrs["groups"])
        split = TflTensor(f"{node.name}.split", (h * w, g, c // g), x.scale, x.zero_point)
        self.emit("RESHAPE", (x.name,), split, (), {"shape": (1, *split.shape)})
        swapped = TflTensor(f"{node.name}.swapped", (h * w, c // g, g), x.scale, x.zero_point)
        self.emit("TRANSPOSE", (split.name,), swapped, (), {}, {"perm": np.array([0, 1, 3, 2], np.int32)})
        out = TflTensor(node.name, x.shape, x.scale, x.zero_point)
        self.emit("RESHAPE", (swapped.name,), out, (node.name,), {"shape": (1, *out.shape)})
