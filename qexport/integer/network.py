"""The float network a quantization plan stands for: the model's graph, with every quantized
weight replaced by its dequantized value, affine int32 biases by b_q * (m / 2^s) / G, and a BN the
plan folded into an affine layer removed from the graph (its effect is in that layer's weights
and bias).  BN folded into binary thresholds stays: BN + sign is what the thresholds compute.

    graph, state = planned_network(qmodel)
    values = run_graph(graph, state, x)        # qexport.graph.execute

Calibration runs this network; so does every float reference of a quantized export.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..graph.ir import Graph, Node
from ..graph.stage import model_graph
from ..model import QuantizedModel
from ..quantize.dequantize import bias_step, dequantize_layer


def node_of_weight(graph: Graph, weight: str) -> Node:
    for node in graph.nodes:
        if node.params.get("weight") == weight:
            return node
    raise KeyError(weight)


def without_node(graph: Graph, name: str) -> Graph:
    """The graph with single-input node `name` removed: its consumers read its input instead."""
    node = graph.node(name)
    source = node.inputs[0]
    nodes = [replace(n, inputs=tuple(source if i == name else i for i in n.inputs)) for n in graph.nodes if n.name != name]
    return replace(graph, nodes=tuple(nodes), output=source if graph.output == name else graph.output)


def planned_network(qmodel: QuantizedModel) -> tuple[Graph, dict[str, np.ndarray]]:
    """(graph, state): the float network the plan's integers stand for (float64 arrays)."""
    graph = model_graph(qmodel.model)
    state = {k: np.asarray(v, np.float64) for k, v in qmodel.model.tensors.items() if np.asarray(v).dtype.kind == "f"}
    for q in qmodel.layers:
        if not q.weight or q.scheme in ("float", "passthrough"):
            continue
        node = node_of_weight(graph, q.weight)
        state[q.weight] = dequantize_layer(q, qmodel.tensor(q.weight).data).astype(np.float64)
        names = {t.name for t in qmodel.tensors}
        bias = qmodel.tensor(q.bias) if q.bias in names else None  # thresholds absorb a binary layer's bias
        if bias is not None and bias.scheme == "int32":
            # float32 like every dequantized value (DequantizeLinear: float32(b_q) * float32 step)
            state[q.bias] = (np.asarray(bias.data).astype(np.float32) * bias_step(q)).astype(np.float64)
        elif bias is not None:
            state[q.bias] = np.asarray(bias.data, np.float64)
        folded = q.attrs.get("folded_bn")
        if folded and q.scheme == "affine":
            if bias is not None and "bias" not in node.params:  # the fold gave the layer a bias
                graph = replace(graph, nodes=tuple(replace(n, params={**n.params, "bias": q.bias}) if n.name == node.name
                                                   else n for n in graph.nodes))  # fmt: skip
            bn = next(n for n in graph.nodes if n.op == "batch_norm" and n.params.get("running_mean") == f"{folded}.running_mean")
            graph = without_node(graph, bn.name)
    return graph, state
