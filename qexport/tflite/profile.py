"""Lowering graph + plan + calibration to the tflite int8 profile (README "TFLite").

    tgraph = lower_tflite(qmodel, calibration, input_type="int8")

Weights come from the float network the plan stands for (qexport.integer.network: dequantized
where the plan quantized, BNs the plan folded already folded) and are re-quantized per TFLite's
quantization spec: int8 symmetric (zero point 0, -127..127) per output channel for conv and
depthwise, per tensor for fully connected; int32 bias at scale S_in * S_w.  Activations are int8
from the same calibrated ranges as the default profile (qexport.integer.lower.tensor_for: the
range includes 0), zero point shifted by -128.  Anything without a form here is one line naming
the node.
"""

from __future__ import annotations

import numpy as np

from ..errors import PlanError
from ..graph.ir import Node
from ..integer.calibrate import Calibration
from ..integer.lower import tensor_for
from ..integer.network import planned_network
from ..model import QuantizedModel
from .arith import INT32_MAX, INT32_MIN, f32, quantize_multiplier, round_away
from .fixedpoint import LOGISTIC_OUT, TANH_OUT
from .ir import TflGraph, TflOp, TflTensor
from .ternary import TernaryOps, fold_ternary_bn, sign_is_exact
from .weights import bias_floor, symmetric_int8

ACTIVATIONS = {"relu": "RELU", "relu6": "RELU6"}


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite's SAME padding (before, after) of one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def refuse_binarized(graph) -> None:
    """Binarized activations have no int8 TFLite form: refuse naming the first node whose output
    is a sign (a sign node, or the input of a layer that binarizes its input)."""
    for node in graph.nodes:
        if node.op == "sign" and not sign_is_exact(graph, node):
            raise PlanError(f"node {node.name} (sign): binarized activations have no int8 TFLite form "
                            f"(README \"TFLite\")")  # fmt: skip
        if node.attrs.get("binarize_input"):
            src = node.inputs[0]
            op = "input" if src == "input" else graph.node(src).op
            raise PlanError(f"node {src} ({op}): binarized activations (sign: {node.name} binarizes its input) "
                            f"have no int8 TFLite form (README \"TFLite\")")  # fmt: skip


class TfliteLowering(TernaryOps):
    def __init__(self, qmodel: QuantizedModel, cal: Calibration, input_type: str):
        self.cal, self.input_type = cal, input_type
        self.graph, self.state, self.ternary, self.folded_bn = fold_ternary_bn(*planned_network(qmodel), qmodel)
        refuse_binarized(self.graph)
        self.sign_gain: dict[str, float] = {}  # a tensor holding eps * sign(z) -> eps (ternary.py)
        self.users: dict[str, list[Node]] = {n.name: [] for n in self.graph.nodes}
        for n in self.graph.nodes:
            for i in n.inputs:
                if i in self.users:
                    self.users[i].append(n)
        self.where: dict[str, str] = {}  # float node -> the tensor holding its value
        self.tensors: dict[str, TflTensor] = {}
        self.ops: list[TflOp] = []
        self.hwc_from: dict[str, tuple[int, int, int]] = {}  # a flattened NHWC tensor -> its (C, H, W)

    def refuse(self, node: Node, why: str):
        raise PlanError(f"node {node.name} ({node.op}): {why} (README \"TFLite\")")

    def calibrated(self, name: str, shape) -> TflTensor:
        t = tensor_for(*self.cal.ranges[name])
        return TflTensor(name, tuple(shape), f32(t.scale), t.zero_point - 128)

    def x(self, node: Node, k: int = 0) -> TflTensor:
        return self.tensors[self.where[node.inputs[k]]]

    def emit(self, op: str, inputs, out: TflTensor, covers, attrs=None, arrays=None) -> None:
        self.tensors[out.name] = out
        self.ops.append(TflOp(op, tuple(inputs), out.name, attrs or {}, arrays or {}, tuple(covers)))
        for name in covers:
            self.where[name] = out.name

    def run(self) -> TflGraph:
        mean, std = np.unique(np.asarray(self.cal.mean, np.float64)), np.unique(np.asarray(self.cal.std, np.float64))
        if std.size != 1 or mean.size != 1:
            raise PlanError("the tflite profile takes one --mean and one --std for every input channel so far")
        scale, zero = f32(1.0 / (255.0 * float(std[0]))), int(round(255.0 * float(mean[0])))
        if not 0 <= zero <= 255:
            raise PlanError(f"--mean {float(mean[0])}: the input zero point round(255 mean) must lie in 0..255")
        c, *hw = self.graph.input_shape
        shape = (*hw, c)
        if self.input_type == "uint8":
            raw = TflTensor("input_uint8", shape, scale, zero, "uint8")
            self.tensors[raw.name] = raw
            self.emit("QUANTIZE", (raw.name,), TflTensor("input", shape, scale, zero - 128), ("input",))
            first = raw.name
        else:
            self.tensors["input"] = TflTensor("input", shape, scale, zero - 128)
            self.where["input"] = first = "input"
        skipped: set[str] = set()
        for node in self.graph.nodes:
            if node.name in skipped:
                continue
            handler = getattr(self, "op_" + node.op, None)
            if handler is None:
                self.refuse(node, "no int8 TFLite form in qexport yet")
            skipped |= set(handler(node) or ())
        return TflGraph(dict(self.tensors), tuple(self.ops), first, self.where[self.graph.output])

    def fused(self, node: Node):
        """The activation a single following ReLU/ReLU6 fuses into this op, and that node."""
        users = self.users[node.name]
        if len(users) == 1 and users[0].op in ACTIVATIONS and node.name != self.graph.output:
            return ACTIVATIONS[users[0].op], users[0]
        return "NONE", None

    # ---- handlers: each emits its operator(s) and returns the float nodes it also computed

    def op_conv2d(self, node: Node):
        if node.attrs.get("binarize_input"):
            self.refuse(node, "binarized activations (sign) have no int8 TFLite form")
        x = self.x(node)
        w = self.state[node.params["weight"]] / self.sign_gain.get(x.name, 1.0)  # W / eps after a sign
        bias = self.state[node.params["bias"]] if "bias" in node.params else np.zeros(w.shape[0])
        activation, act_node = self.fused(node)
        last = act_node or node
        if w.ndim == 2:
            return self._fully_connected(node, x, w, bias, activation, last)
        groups, cin = node.attrs["groups"], x.shape[-1]
        if groups == cin > 1 and w.shape[0] % cin == 0:
            op, layout = "DEPTHWISE_CONV_2D", (1, 2, 3, 0)  # (O, 1, H, W) -> 1HWO
        else:  # TFLM's CONV_2D takes grouped filters (O, H, W, I / groups): groups = I / filter depth
            op, layout = "CONV_2D", (0, 2, 3, 1)  # OIHW -> OHWI
        least = bias_floor(bias, x.scale, w[0].size)
        if node.params["weight"] in self.ternary:  # the plan's ternary codes, scale alpha_c (ternary.py)
            codes, w_scale = self.ternary[node.params["weight"]]
            if (least > w_scale).any():
                self.refuse(node, "its bias does not fit int32 beside ternary codes at scale alpha_c")
        else:
            codes, w_scale = symmetric_int8(w, per_channel=True, least=least)
        b_q = self._bias(node, bias, x.scale, w_scale)
        out = self.output_for(node, last, x, w_scale, (*node.output_shape[1:], node.output_shape[0]))
        self._check_accumulator(node, codes, b_q, float(x.scale) * w_scale.astype(np.float64) / out.scale)
        x_name, padding = self._padding(node, x, w.shape[2:])
        attrs = {"stride": tuple(node.attrs["stride"]), "dilation": tuple(node.attrs["dilation"]),
                 "padding": padding, "activation": activation, "torch_padding": (0, 0) if padding == "VALID"
                 else tuple(node.attrs["padding"])}  # fmt: skip
        if op == "DEPTHWISE_CONV_2D":
            attrs["depth_multiplier"] = w.shape[0] // cin
        arrays = {"weight": codes.transpose(layout), "weight_scale": w_scale, "bias": b_q}
        covers = tuple(dict.fromkeys((node.name, *self.folded_bn.get(node.name, ()), last.name)))  # the BN too
        self.emit(op, (x_name,), out, covers, attrs, arrays)
        return (last.name,)

    op_binary_conv2d = op_linear = op_binary_linear = op_conv2d

    def _fully_connected(self, node, x, w, bias, activation, last):
        if x.name in self.hwc_from:  # torch flattened C, H, W; the NHWC tensor is H, W, C
            c, h, wd = self.hwc_from[x.name]
            w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        codes, w_scale = symmetric_int8(w, per_channel=False, least=bias_floor(bias, x.scale, w.shape[1]).max())
        b_q = self._bias(node, bias, x.scale, np.repeat(w_scale, w.shape[0]))
        out = self.calibrated(last.name, node.output_shape)
        self._check_accumulator(node, codes, b_q, float(np.float32(x.scale) * w_scale[0]) / out.scale)
        arrays = {"weight": codes, "weight_scale": w_scale, "bias": b_q}
        self.emit("FULLY_CONNECTED", (x.name,), out, (node.name, last.name), {"activation": activation}, arrays)
        return (last.name,)

    def _bias(self, node: Node, bias, s_in: float, w_scale) -> np.ndarray:
        step = float(s_in) * w_scale.astype(np.float64)
        b_q = round_away(np.asarray(bias, np.float64) / step)
        if b_q.min() < INT32_MIN or b_q.max() > INT32_MAX:
            self.refuse(node, "its bias does not fit int32 at scale S_in * S_w; calibrate on representative data")
        return b_q.astype(np.int32)

    def _check_accumulator(self, node: Node, codes, b_q, real) -> None:
        """TFLM sums in int32 and shifts it left by a positive exponent in int32: the worst case
        (every |x - Z| = 255) must fit, or the interpreter would overflow."""
        worst = 255 * np.abs(codes.reshape(codes.shape[0], -1).astype(np.int64)).sum(axis=1) + np.abs(b_q.astype(np.int64))
        _, shift = quantize_multiplier(real)
        if (worst << np.maximum(shift, 0)).max() > INT32_MAX:
            self.refuse(node, "its worst-case int32 accumulator could overflow in TFLite's kernels")

    def _padding(self, node: Node, x: TflTensor, kernel) -> tuple[str, str]:
        """(input tensor, SAME/VALID): torch's symmetric padding as TFLite's SAME where they agree,
        else an explicit PAD (with the input's zero point, i.e. real 0) before a VALID op."""
        pad = tuple(node.attrs["padding"])
        if pad == (0, 0):
            return x.name, "VALID"
        same = [same_padding(n, k, s, d) for n, k, s, d in
                zip(x.shape[:2], kernel, node.attrs["stride"], node.attrs.get("dilation", (1, 1)))]  # fmt: skip
        if all(before == after == p for (before, after), p in zip(same, pad)):
            return x.name, "SAME"
        if node.op == "max_pool2d":
            self.refuse(node, f"padding {pad} differs from TFLite's SAME padding")
        (ph, pw), (h, w, c) = pad, x.shape
        padded = TflTensor(f"{node.name}.pad", (h + 2 * ph, w + 2 * pw, c), x.scale, x.zero_point)
        paddings = np.array([[0, 0], [ph, ph], [pw, pw], [0, 0]], np.int32)
        self.emit("PAD", (x.name,), padded, (), {}, {"paddings": paddings})
        return padded.name, "VALID"

    def _pool(self, node: Node, op: str, kernel, stride, padding: str):
        x = self.x(node)
        out = TflTensor(node.name, (*node.output_shape[1:], node.output_shape[0]), x.scale, x.zero_point)
        torch_padding = tuple(node.attrs.get("padding", (0, 0))) if padding == "SAME" else (0, 0)
        self.emit(op, (x.name,), out, (node.name,), {"filter": tuple(kernel), "stride": tuple(stride), "padding": padding,
                                                      "activation": "NONE", "torch_padding": torch_padding})  # fmt: skip

    def op_max_pool2d(self, node: Node):
        a = node.attrs
        if a["ceil_mode"] or tuple(a["dilation"]) != (1, 1):
            self.refuse(node, "ceil_mode or dilation has no TFLite form")
        _, padding = self._padding(node, self.x(node), a["kernel"])
        self._pool(node, "MAX_POOL_2D", a["kernel"], a["stride"], padding)

    def op_avg_pool2d(self, node: Node):
        a = node.attrs
        if a["ceil_mode"] or tuple(a["padding"]) != (0, 0):
            self.refuse(node, "a padded or ceil_mode average pool (TFLite leaves padding out of the count)")
        self._pool(node, "AVERAGE_POOL_2D", a["kernel"], a["stride"], "VALID")

    def op_adaptive_avg_pool2d(self, node: Node):
        if tuple(node.attrs["output_size"]) != (1, 1):
            self.refuse(node, "only the global average (output 1 x 1)")
        h, w, _ = self.x(node).shape
        self._pool(node, "AVERAGE_POOL_2D", (h, w), (1, 1), "VALID")

    def op_flatten(self, node: Node):
        x = self.x(node)
        if len(node.output_shape) != 1:
            self.refuse(node, "only a flatten to (batch, features) so far")
        out = TflTensor(node.name, tuple(node.output_shape), x.scale, x.zero_point)
        self.emit("RESHAPE", (x.name,), out, (node.name,), {"shape": (1, *node.output_shape)})
        if len(x.shape) == 3 and x.shape[:2] != (1, 1):
            h, w, c = x.shape
            self.hwc_from[out.name] = (c, h, w)

    op_reshape = op_flatten

    def op_add(self, node: Node):
        a, b = self.x(node, 0), self.x(node, 1)
        if a.shape != b.shape:
            self.refuse(node, f"inputs of shapes {a.shape} and {b.shape} (no broadcasting here)")
        activation, act_node = self.fused(node)
        last = act_node or node
        out = self.calibrated(last.name, a.shape)
        self.emit("ADD", (a.name, b.name), out, (node.name, last.name), {"activation": activation})
        return (last.name,)

    def op_cat(self, node: Node):
        """CONCATENATION copies codes (TFLM): inputs with other scales are first requantized to the
        output's by a QUANTIZE (int8 -> int8)."""
        ins = [self.x(node, k) for k in range(len(node.inputs))]
        rank, dim = len(ins[0].shape), node.attrs["dim"]
        axis = {3: {1: 3, 2: 1, 3: 2}, 1: {1: 1}}.get(rank, {}).get(dim)  # torch's NCHW dim -> NHWC axis
        if axis is None:
            self.refuse(node, f"cat of rank-{rank + 1} tensors along dim {dim}")
        shape = (*node.output_shape[1:], node.output_shape[0]) if rank == 3 else node.output_shape
        out = self.calibrated(node.name, shape)
        names = []
        for t in ins:
            if (t.scale, t.zero_point) != (out.scale, out.zero_point):
                r = TflTensor(f"{node.name}.{t.name}.requantized", t.shape, out.scale, out.zero_point)
                self.emit("QUANTIZE", (t.name,), r, ())
                t = r
            names.append(t.name)
        self.emit("CONCATENATION", names, out, (node.name,), {"axis": axis, "activation": "NONE"})

    def op_softmax(self, node: Node):
        if node.name != self.graph.output:
            self.refuse(node, "only at the end of the network (left out: the output is the logits' codes)")
        self.where[node.name] = self.where[node.inputs[0]]

    op_log_softmax = op_softmax

    def op_batch_norm(self, node: Node):
        self.refuse(node, "a BatchNorm the plan did not fold into its conv has no int8 form here; use --fold-bn "
                          "with an affine plan (--bits 8)")  # fmt: skip

    def op_hardtanh(self, node: Node):
        self.refuse(node, "hardtanh has no int8 TFLite form in qexport yet (ReLU6 has)")

    def _fixed_output(self, node: Node, op: str, scale: float, zero_point: int):
        x = self.x(node)
        shape = (*node.output_shape[1:], node.output_shape[0]) if len(node.output_shape) == 3 else node.output_shape
        self.emit(op, (x.name,), TflTensor(node.name, tuple(shape), f32(scale), zero_point), (node.name,))

    def op_sigmoid(self, node: Node):
        self._fixed_output(node, "LOGISTIC", *LOGISTIC_OUT)

    def op_tanh(self, node: Node):
        self._fixed_output(node, "TANH", *TANH_OUT)


def lower_tflite(qmodel: QuantizedModel, calibration: Calibration, input_type: str = "int8") -> TflGraph:
    return TfliteLowering(qmodel, calibration, input_type).run()
