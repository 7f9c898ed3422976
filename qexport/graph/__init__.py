"""The network graph (README "The network graph"): one `Graph` for every model, traced with
torch.fx from the module that defines it, whether the user's own (`--model-def FILE.py:NAME`,
`qexport.graph.modeldef`) or qexport's module of a documented architecture
(`qexport.graph.documented`).

    from qexport.graph import trace_module, graph_text
    graph = trace_module(module, (1, 28, 28))

`ir` (Graph, Node, ops; no torch) - `trace` (fx Tracer, shapes) - `convert` (fx nodes -> Nodes)
- `functional` (functional calls, attrs) - `probe` (opaque modules identified by behaviour) -
`modeldef` (loading FILE.py:NAME and a state_dict) - `documented` (the five architectures).

Importing this package does not import torch; `trace_module` and the loaders do.
"""

from __future__ import annotations

from .ir import DROPPED_OPS, OPS, SUPPORTED_OPS, Graph, Node, graph_text


def trace_module(module, input_shape, origin: str = "", assumption: str = "", where: str = ""):
    from .trace import trace_module as _trace

    return _trace(module, input_shape, origin=origin, assumption=assumption, where=where)


__all__ = ["DROPPED_OPS", "OPS", "SUPPORTED_OPS", "Graph", "Node", "graph_text", "trace_module"]
