"""The network graph IR (README "The network graph"): a frozen `Graph` of `Node`s in execution
order, traced from the torch module that defines the network (`qexport.graph.trace`).

Nothing here imports torch or numpy: a Graph holds plain Python values and the *names* of
state_dict tensors, never tensors.

Conventions
-----------
* `Node.inputs` are names of earlier nodes, or `"input"` (the network's input tensor).
* `Node.output_shape` EXCLUDES the batch dimension: a conv output of 6 channels, 28x28 is
  `(6, 28, 28)`, a linear output of 10 features is `(10,)`.
* `Node.params` maps a role to a state_dict key: `{"weight": "c1.weight", "bias": "c1.bias"}`;
  batch_norm has roles weight, bias (when affine), running_mean, running_var.
* `Node.source` is "module path (Class) at file:line" for module calls, "file:line" (the line of
  the model's `forward` that makes the call) for function calls, or "" when not known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

# op -> its attrs (documentation, checked by `Graph.check`)
OPS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "conv2d": ("stride", "padding", "dilation", "groups", "binarize_input"),
    "binary_conv2d": ("stride", "padding", "dilation", "groups", "binarize_input"),
    "linear": ("binarize_input",),
    "binary_linear": ("binarize_input",),
    "batch_norm": ("eps", "affine"),
    "relu": (),
    "relu6": (),
    "leaky_relu": ("negative_slope",),
    "prelu": (),
    "sigmoid": (),
    "tanh": (),
    "hardtanh": ("min_val", "max_val"),
    "sign": (),
    "max_pool2d": ("kernel", "stride", "padding", "dilation", "ceil_mode"),
    "avg_pool2d": ("kernel", "stride", "padding", "ceil_mode", "count_include_pad"),
    "adaptive_avg_pool2d": ("output_size",),
    "flatten": ("start_dim", "end_dim"),
    "reshape": ("shape",),
    "add": (),
    "cat": ("dim",),
    "channel_shuffle": ("groups",),
    "softmax": ("dim",),
    "log_softmax": ("dim",),
})  # fmt: skip
SUPPORTED_OPS: tuple[str, ...] = tuple(OPS)
# Recognised but removed from the graph (no-ops in eval mode); a note records each removal.
DROPPED_OPS: tuple[str, ...] = ("dropout", "identity", "contiguous")


def supported_text() -> str:
    return "supported: " + ", ".join(SUPPORTED_OPS) + " (dropped as no-ops: " + ", ".join(DROPPED_OPS) + ")"


def _frozen(d: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class Node:
    """One operation.  attrs hold plain Python values (ints, floats, bools, tuples)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    output_shape: tuple[int, ...]  # batch dimension excluded
    attrs: Mapping[str, Any] = field(default_factory=_frozen)
    params: Mapping[str, str] = field(default_factory=_frozen)
    source: str = ""

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "output_shape", tuple(int(d) for d in self.output_shape))
        object.__setattr__(self, "attrs", _frozen(self.attrs))
        object.__setattr__(self, "params", _frozen(self.params))


@dataclass(frozen=True)
class Graph:
    """Nodes in execution order; `output` names the node whose value the network returns.

    origin: where the graph came from ("model-def net.py:LeNet", "documented lenet");
    assumption: for a documented architecture, what qexport assumed about the module;
    notes: what tracing removed or decided (dropped no-ops, binarized inputs...)."""

    nodes: tuple[Node, ...]
    input_shape: tuple[int, ...]  # batch dimension excluded, e.g. (1, 28, 28)
    output: str
    origin: str = ""
    assumption: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "notes", tuple(self.notes))

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(n.op for n in self.nodes)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p for n in self.nodes for p in n.params.values())

    def check(self) -> None:
        """Structural invariants: known ops, inputs defined before use, unique names."""
        seen = {"input"}
        for n in self.nodes:
            if n.op not in OPS:
                raise ValueError(f"node {n.name}: unknown op {n.op}")
            missing = [i for i in n.inputs if i not in seen]
            if missing:
                raise ValueError(f"node {n.name}: inputs {missing} not defined before it")
            if n.name in seen:
                raise ValueError(f"node name {n.name} used twice")
            seen.add(n.name)
        if self.output not in seen:
            raise ValueError(f"output {self.output} is not a node")


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def graph_text(graph: Graph) -> str:
    """`qexport inspect --graph`: where the graph came from, then one line per node."""
    lines = [f"graph from:    {graph.origin}"]
    if graph.assumption:
        lines.append(f"assumption:    {graph.assumption}")
    lines.append(f"input shape:   {graph.input_shape} (batch dimension excluded)")
    for note in graph.notes:
        lines.append(f"note:          {note}")
    lines.append("")
    lines.append("node  op[attrs]  <- inputs  output shape  parameters  @ source")
    for n in graph.nodes:
        attrs = ", ".join(f"{k}={_value(v)}" for k, v in n.attrs.items() if not (k == "binarize_input" and not v))
        params = " ".join(f"{k}={v}" for k, v in n.params.items()) or "-"
        lines.append(f"{n.name:<24} {n.op + (f'[{attrs}]' if attrs else '')}  <- {','.join(n.inputs)}  "
                     f"{n.output_shape}  {params}  @ {n.source or '?'}")
    lines.append(f"output:        {graph.output}")
    return "\n".join(lines)
