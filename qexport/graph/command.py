"""`qexport inspect` and `inspect --graph`: the network graph as text (README "The network graph")."""

from __future__ import annotations

from ..model import Model
from .ir import graph_text
from .stage import model_graph


def graph_report(model: Model, header: bool = True) -> str:
    text = graph_text(model_graph(model))
    if not header:
        return text
    return f"file:          {model.source.name}\narchitecture:  {model.arch}\n" + text
