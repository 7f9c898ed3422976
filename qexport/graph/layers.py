"""The layer list of a network found as patterns in its graph (README "The network graph"):
every conv/linear is a quantizable layer; a batch_norm directly after it (or after its max pool)
is its BN, foldable when direct; its input is binarized when the op binarizes it or a `sign` node
feeds it; `follows` names what comes after it up to the next weighted layer.

    layers = layers_from_graph(graph, state)        # what plan, quantize and golden read
    problems = compare_layers(reader_layers, layers)  # a documented reader checked against its graph

Nothing here imports torch: the Graph holds names, `state` gives the weight shapes.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..model import Layer, frozen_map
from .ir import Graph, Node

WEIGHTED = ("conv2d", "binary_conv2d", "linear", "binary_linear")
# ops after a layer, in the words of `Layer.follows` (a max/avg pool adds its kernel: "maxpool2")
_FOLLOW_WORDS = {"relu": "relu", "relu6": "relu6", "hardtanh": "hardtanh", "sign": "sign", "flatten": "flatten",
                 "reshape": "flatten", "sigmoid": "sigmoid", "tanh": "tanh", "leaky_relu": "leaky_relu",
                 "softmax": "softmax", "log_softmax": "logsoftmax", "adaptive_avg_pool2d": "global_avgpool"}  # fmt: skip


def _layer_name(node: Node) -> str:
    """The module path: the prefix of the node's state_dict keys (its parameter names)."""
    key = node.params.get("weight") or node.params.get("running_mean") or next(iter(node.params.values()))
    return key.rsplit(".", 1)[0]


def _consumers(graph: Graph) -> dict[str, list[Node]]:
    users: dict[str, list[Node]] = {n.name: [] for n in graph.nodes}
    for n in graph.nodes:
        for i in n.inputs:
            if i in users:
                users[i].append(n)
    return users


def _word(node: Node) -> str:
    if node.op in ("max_pool2d", "avg_pool2d"):
        k = node.attrs["kernel"]
        return ("maxpool" if node.op == "max_pool2d" else "avgpool") + str(k[0] if isinstance(k, tuple) else k)
    if node.op == "batch_norm":
        return f"bn:{_layer_name(node)}"
    if node.op == "prelu":
        return f"prelu:{_layer_name(node)}"
    if node.op == "add":
        return "add_residual"
    return _FOLLOW_WORDS.get(node.op, node.op)


def _chain(graph: Graph, users, start: Node) -> tuple[list[Node], Node | None]:
    """The nodes after `start` while each has one consumer, and the weighted node that ends the
    chain (None at a branch, the output or a cat).  An add continues the chain of its first input
    (the main path of a residual block), not of the shortcut."""
    chain, current = [], start
    while True:
        nxt = users.get(current.name, [])
        if len(nxt) != 1:
            return chain, None
        node = nxt[0]
        if node.op in WEIGHTED:
            return chain, node
        if node.op == "channel_shuffle" or len(node.inputs) > 1 and not (node.op == "add" and node.inputs[0] == current.name):
            return chain, None
        chain.append(node)
        current = node


def _binary_input(graph: Graph, node: Node) -> bool:
    if node.attrs.get("binarize_input"):
        return True
    return bool(node.inputs) and node.inputs[0] != "input" and graph.node(node.inputs[0]).op == "sign"


def _layer(graph: Graph, users, node: Node, state: Mapping[str, Any]) -> Layer:
    name = _layer_name(node)
    chain, ends = _chain(graph, users, node)
    attrs: dict[str, Any] = {}
    if node.op in ("conv2d", "binary_conv2d"):
        o, i_per_group, *kernel = state[node.params["weight"]].shape
        groups = int(node.attrs["groups"])
        kind = "dwconv" if groups > 1 and i_per_group == 1 else "conv"
        attrs = dict(in_channels=int(i_per_group) * groups, out_channels=int(o), kernel=tuple(int(k) for k in kernel),
                     stride=tuple(node.attrs["stride"]), padding=tuple(node.attrs["padding"]), groups=groups)  # fmt: skip
    elif node.op in ("linear", "binary_linear"):
        o, i = state[node.params["weight"]].shape
        kind, attrs = "linear", dict(in_features=int(i), out_features=int(o))
    elif node.op == "batch_norm":
        n = state[node.params["running_mean"]].shape[0]
        kind, attrs = "bn", dict(num_features=int(n), eps=float(node.attrs["eps"]), affine=bool(node.attrs["affine"]))
    else:  # prelu
        kind, attrs = "prelu", dict(num_parameters=int(state[node.params["weight"]].size))
    follows = [_word(n) for n in chain]
    if kind in ("conv", "dwconv", "linear"):
        attrs["binary_input"] = _binary_input(graph, node)
        pooled = [n for n in chain if n.op != "max_pool2d"]
        if pooled and pooled[0].op == "batch_norm":
            attrs["bn"] = _layer_name(pooled[0])
            attrs["bn_direct"] = chain[0] is pooled[0]
        if ends is not None and ends.attrs.get("binarize_input") and "sign" not in follows:
            follows.append("sign")  # the next layer binarizes its input inside its own forward
        if node.inputs and node.inputs[0] != "input" and graph.node(node.inputs[0]).op == "channel_shuffle":
            attrs["channel_shuffle_before"] = int(graph.node(node.inputs[0]).attrs["groups"])
    elif ends is not None:  # a BN (or PReLU) whose chain leads into a layer names it
        follows.append(("linear:" if ends.op.endswith("linear") else "conv:") + _layer_name(ends))
    attrs["follows"] = tuple(follows)
    params = tuple(node.params.values()) + tuple(k for k in (f"{name}.num_batches_tracked",) if k in state)
    weight = node.params.get("weight")
    bias = node.params.get("bias")
    return Layer(name=name, kind=kind, weight=weight, bias=bias, params=params, attrs=frozen_map(attrs))


def layers_from_graph(graph: Graph, state: Mapping[str, Any]) -> tuple[Layer, ...]:
    """One Layer per conv, linear, batch_norm and prelu node, in graph order."""
    users = _consumers(graph)
    return tuple(_layer(graph, users, n, state) for n in graph.nodes
                 if n.op in WEIGHTED + ("batch_norm", "prelu") and n.params)  # fmt: skip


# The facts plan, quantize and golden read from a layer: what a reader and the graph must agree on.
CHECKED = ("in_channels", "out_channels", "kernel", "stride", "padding", "groups", "in_features", "out_features",
           "eps", "affine", "bn", "channel_shuffle_before")  # fmt: skip


def compare_layers(reader: tuple[Layer, ...], graph: tuple[Layer, ...]) -> list[str]:
    """Where a reader's layer list disagrees with the one found in the graph (empty: they agree)."""
    problems = []
    found = {layer.name: layer for layer in graph}
    names = [layer.name for layer in reader]
    if sorted(names) != sorted(found):
        problems.append(f"layers {sorted(set(names) ^ set(found))} are in one list only")
    for r in reader:
        g = found.get(r.name)
        if g is None:
            continue
        for what, a, b in (("kind", r.kind, g.kind), ("weight", r.weight, g.weight), ("bias", r.bias, g.bias),
                           ("params", sorted(r.params), sorted(g.params))):  # fmt: skip
            if a != b:
                problems.append(f"{r.name}: {what} {a} (reader) vs {b} (graph)")
        keys = CHECKED + (("bn_direct", "binary_input") if r.kind != "bn" else ())
        for key in keys:
            a, b = r.attrs.get(key), g.attrs.get(key)
            if key in ("bn_direct", "binary_input", "channel_shuffle_before"):
                a, b = bool(a), bool(b)
            if a != b:
                problems.append(f"{r.name}: {key} {a} (reader) vs {b} (graph)")
        if r.kind != "bn" or r.follows:
            for word in ("sign", "maxpool2", "relu", "relu6", "hardtanh"):
                if (word in r.follows) != (word in g.follows):
                    problems.append(f"{r.name}: follows {r.follows} (reader) vs {g.follows} (graph)")
                    break
    return problems
