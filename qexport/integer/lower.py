"""Lowering graph + plan + calibration to the integer graph (contract: qexport.integer.ir).

    igraph = lower(qmodel, calibration)

One small handler per op returns the IntNode; a node the default profile cannot compute exactly
(a layer the plan keeps float, a binary or ternary layer, an unfolded BN, a sign...) stops the
lowering with one line naming the node and why.
"""

from __future__ import annotations

import numpy as np

from ..errors import PlanError
from ..graph.ir import Node
from ..model import QuantizedModel
from ..quantize.intscale import integer_scale
from .calibrate import Calibration
from .fold_input import per_channel, reads_channels, refuse_reader
from .ir import IntGraph, IntNode, QTensor
from .network import planned_network
from .weighted import SIGN, binarized_next, lower_bn_sign, lower_cat, lower_prelu, lower_weighted



def tensor_for(lo: float, hi: float) -> QTensor:
    """uint8 affine parameters covering [lo, hi] and 0 (0 must be exact: padding, ReLU)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    return QTensor(scale, int(np.clip(round(-lo / scale), 0, 255)))


def _scale_pair(ratio, mult_bits: int, where: str):
    ratio = np.asarray(ratio, np.float64)
    m, s, err = integer_scale(ratio, mult_bits=mult_bits, max_shift=62)
    bad = (err > 0.01) & (ratio > 0)
    if bad.any():
        raise PlanError(f"node {where}: scale ratio {float(ratio[bad].ravel()[0]):.3g} has no m >> s within 1% "
                        f"(m < 2^{mult_bits}); calibrate on more representative data")  # fmt: skip
    return m.astype(np.int64), s.astype(np.int64)


def input_tensor(mean, std) -> tuple[QTensor, tuple[str, ...]]:
    """The raw pixel as a tensor: S = 1 / (255 std) (one std: a per-channel one is folded into the
    readers first, qexport.integer.fold_input), Z = round(255 mean), one per channel where the
    means differ; and a note for each channel whose 255 mean is not a whole code."""
    std, mean = np.asarray(std, np.float64), np.asarray(mean, np.float64)
    if per_channel(std):
        raise PlanError("fold a per-channel --std into the input's readers first (qexport.integer.fold_input)")
    exact = 255.0 * mean
    zero = np.round(exact).astype(np.int64)
    shifted = np.flatnonzero(zero != exact)
    notes = ()
    if shifted.size:
        several = per_channel(mean)
        where = " channel " + ", ".join(str(int(c)) for c in shifted) if several else ""
        values = ", ".join(f"{exact[c]:g}" for c in (shifted if several else shifted[:1]))
        notes = (f"input{where}: 255 x mean ({values}) is not a whole code, so Z = round(255 x mean) shifts the "
                 f"input by up to half a code (README \"Integer inference\")",)  # fmt: skip
    z = int(zero[0]) if not per_channel(mean) else tuple(int(v) for v in zero)
    return QTensor(1.0 / (255.0 * float(std.ravel()[0])), z), notes


class Lowering:
    def __init__(self, qmodel: QuantizedModel, cal: Calibration):
        self.qmodel, self.cal = qmodel, cal
        self.graph, self.state = planned_network(qmodel)
        self.plans = {q.weight: q for q in qmodel.layers if q.weight}
        self.users: dict[str, list[Node]] = {n.name: [] for n in self.graph.nodes} | {"input": []}
        for n in self.graph.nodes:
            for i in n.inputs:
                if i in self.users:
                    self.users[i].append(n)
        self.mult_bits = int(qmodel.plan.options.mult_bits)
        self.where: dict[str, str] = {}  # float node -> the int node whose output it is
        self.tensors: dict[str, QTensor] = {}
        self.nodes: list[IntNode] = []

    def range_of(self, name: str) -> QTensor:
        lo, hi = self.cal.ranges[name]
        return tensor_for(lo, hi)

    def source(self, node: Node) -> tuple[str, QTensor]:
        name = self.where[node.inputs[0]]
        return name, self.tensors[name]

    def emit(self, node: IntNode, *covers: str) -> None:
        self.nodes.append(node)
        self.tensors[node.name] = node.out
        for name in covers:
            self.where[name] = node.name

    def refuse(self, node: Node, why: str):
        raise PlanError(f"node {node.name} ({node.op}): {why} (README \"Integer inference\")")

    def run(self) -> IntGraph:
        self.where["input"] = "input"
        self.tensors["input"], notes = input_tensor(self.cal.mean, self.cal.std)
        if not isinstance(self.tensors["input"].zero_point, int):
            for reader in self.users["input"]:
                if not reads_channels(reader, self.graph.input_shape):
                    refuse_reader(reader, "--mean")
        skipped = set()
        for node in self.graph.nodes:
            if node.name in skipped:
                continue
            handler = getattr(self, "op_" + node.op, None)
            if handler is None:
                self.refuse(node, "not in the integer graph yet")
            fused = handler(node)
            skipped |= set(fused or ())
        out = self.where[self.graph.output]
        return IntGraph(tuple(self.nodes), tuple(self.graph.input_shape), self.tensors["input"], out, notes)

    # ---- handlers: each emits one IntNode (and names the float nodes it also computes)

    def scale_pair(self, ratio, where: str):
        return _scale_pair(ratio, self.mult_bits, where)

    def op_conv2d(self, node: Node):
        return lower_weighted(self, node)

    op_linear = op_binary_conv2d = op_binary_linear = op_conv2d

    def op_batch_norm(self, node: Node):
        return lower_bn_sign(self, node)

    def op_prelu(self, node: Node):
        lower_prelu(self, node)

    op_leaky_relu = op_prelu

    def op_cat(self, node: Node):
        lower_cat(self, node)

    def op_sign(self, node: Node):
        x_name, x = self.source(node)
        if x is SIGN:  # already a sign tensor
            self.where[node.name] = x_name
            return
        q = np.arange(256)
        table = (1 + np.sign(q - x.zero_point)).astype(np.uint8)
        self.emit(IntNode(node.name, "table", (x_name,), node.output_shape, SIGN, {}, {"table": table}), node.name)

    def _same_scale(self, node: Node, op: str, **attrs):
        x_name, x = self.source(node)
        self.emit(IntNode(node.name, op, (x_name,), node.output_shape, x, attrs), node.name)

    def op_hardtanh(self, node: Node):
        if not binarized_next(self, node.name):
            self.refuse(node, "a hardtanh whose output is not binarized next")
        self.op_sign(node)

    def op_relu(self, node: Node):
        x = self.source(node)[1]
        self._same_scale(node, "clamp", lo=x.zero_point, hi=255)

    def op_relu6(self, node: Node):
        x = self.source(node)[1]
        self._same_scale(node, "clamp", lo=x.zero_point, hi=min(255, x.zero_point + int(round(6.0 / x.scale))))

    def op_max_pool2d(self, node: Node):
        a = node.attrs
        if a["ceil_mode"]:
            self.refuse(node, "ceil_mode")
        self._same_scale(node, "max_pool2d", kernel=a["kernel"], stride=a["stride"], padding=a["padding"],
                         dilation=a["dilation"])  # fmt: skip

    def op_avg_pool2d(self, node: Node):
        a = node.attrs
        if a["ceil_mode"] or not (a["count_include_pad"] or tuple(a["padding"]) == (0, 0)):
            self.refuse(node, "ceil_mode or count_include_pad=False")
        self._same_scale(node, "avg_pool2d", kernel=a["kernel"], stride=a["stride"], padding=a["padding"])

    def op_adaptive_avg_pool2d(self, node: Node):
        if tuple(node.attrs["output_size"]) != (1, 1):
            self.refuse(node, "only the global average (output 1 x 1)")
        self._same_scale(node, "global_avg_pool2d")

    def op_flatten(self, node: Node):
        self._same_scale(node, "reshape")

    op_reshape = op_flatten

    def op_channel_shuffle(self, node: Node):
        self._same_scale(node, "channel_shuffle", groups=node.attrs["groups"])

    def op_add(self, node: Node):
        names = [self.where[i] for i in node.inputs]
        ins = [self.tensors[n] for n in names]
        out = self.range_of(node.name)
        pairs = [_scale_pair(t.scale / out.scale, self.mult_bits, node.name) for t in ins]
        arrays = {"m_a": pairs[0][0], "s_a": pairs[0][1], "m_b": pairs[1][0], "s_b": pairs[1][1]}
        attrs = {"zero_a": ins[0].zero_point, "zero_b": ins[1].zero_point, "zero_out": out.zero_point}
        self.emit(IntNode(node.name, "add", tuple(names), node.output_shape, out, attrs, arrays), node.name)

    def _table(self, node: Node, f):
        x_name, x = self.source(node)
        out = self.range_of(node.name)
        q = np.arange(256)
        table = np.clip(out.zero_point + np.round(f(x.real(q)) / out.scale), 0, 255).astype(np.uint8)
        self.emit(IntNode(node.name, "table", (x_name,), node.output_shape, out, {}, {"table": table}), node.name)

    def op_sigmoid(self, node: Node):
        self._table(node, lambda v: 1.0 / (1.0 + np.exp(-v)))

    def op_tanh(self, node: Node):
        self._table(node, np.tanh)

    def op_softmax(self, node: Node):
        if node.name != self.graph.output:
            self.refuse(node, "only at the end of the network (left out: the output is the logits' codes)")
        self.where[node.name] = self.where[node.inputs[0]]

    op_log_softmax = op_softmax


def lower(qmodel: QuantizedModel, calibration: Calibration) -> IntGraph:
    return Lowering(qmodel, calibration).run()
