"""`qexport inspect --graph [--model-def FILE.py:NAME]` (README "The network graph")."""

from __future__ import annotations

from ..errors import GraphError
from ..model import Model
from .ir import graph_text


def graph_for_model(model: Model, model_def: str | None = None):
    """The Graph of a read checkpoint: from the user's module (its state loaded strictly), or from
    qexport's module of the documented architecture the reader detected."""
    if model_def:
        from .modeldef import graph_for_model_def

        return graph_for_model_def(model_def, model.tensors, arch=model.arch)[0]
    if not model.has_graph:
        raise GraphError(f"{model.source.name}: read by the generic reader (not a documented architecture), so no "
                         f"module defines its graph; give --model-def FILE.py:NAME")  # fmt: skip
    from .documented import graph_for_documented

    return graph_for_documented(model.arch, model.config)


def graph_report(model: Model, model_def: str | None = None) -> str:
    graph = graph_for_model(model, model_def)
    return f"file:          {model.source.name}\narchitecture:  {model.arch}\n" + graph_text(graph)
