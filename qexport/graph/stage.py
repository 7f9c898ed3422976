"""The graph stage of the pipeline (README "The network graph"): after a reader, decide where the
network's graph comes from and hand a Model that knows it to the plan stage.

    model = with_graph(read_model(path), model_def="net.py:LeNet")   # your module: traced now
    graph = model_graph(model)                                        # documented: traced on demand

Sources, in this order: `model_def` (your module: a "FILE.py:NAME[(k=v)]" text or an nn.Module;
its layer list replaces the reader's), a documented architecture the reader recognised (qexport's
module, traced when a consumer needs it; the assumption is recorded), otherwise none (the generic
reader: tensors only).
"""

from __future__ import annotations

import functools
import sys
from types import SimpleNamespace
from dataclasses import replace

from ..errors import GraphError
from ..model import Model, frozen_map
from .documented import ASSUMPTIONS, graph_for_documented
from .ir import Graph


def with_graph(model: Model, model_def=None) -> Model:
    if model_def is not None:
        return _from_module(model, model_def)
    if model.has_graph and model.arch in ASSUMPTIONS:
        return replace(model, graph_origin=f"documented {model.arch}", assumption=ASSUMPTIONS[model.arch])
    return model


def _from_module(model: Model, model_def) -> Model:
    from .layers import layers_from_graph

    if isinstance(model_def, str):
        from .modeldef import graph_for_model_def

        graph, module = graph_for_model_def(model_def, model.tensors, arch=model.arch)
    else:
        graph, module = _graph_of_instance(model, model_def)
    layers = layers_from_graph(graph, model.tensors)
    names = {layer.name for layer in layers}
    # A documented reader's seed plan still applies to the layers your module has under those names.
    plan = {k: v for k, v in model.default_plan.items() if k in names}
    return replace(model, layers=layers, has_graph=True, graph=graph, module=module, graph_origin=graph.origin,
                   assumption="", default_plan=frozen_map(plan))  # fmt: skip


def _graph_of_instance(model: Model, module):
    """A library caller's own nn.Module instance (export(..., model_def=module))."""
    import copy

    from torch import nn

    from .modeldef import input_shape_for, load_state
    from .trace import trace_module

    if not isinstance(module, nn.Module):
        raise GraphError(f"model_def: expected 'FILE.py:NAME' or a torch.nn.Module, got {type(module).__name__}")
    module = copy.deepcopy(module).eval()  # the caller's module is never changed
    where = f"model_def {type(module).__name__}"
    load_state(module, model.tensors, where)
    # the file's INPUT_SHAPE: the globals of the class's forward are that file's namespace
    file_globals = getattr(type(module).forward, "__globals__", None)
    owner = SimpleNamespace(**file_globals) if file_globals else sys.modules.get(type(module).__module__)
    shape, _ = input_shape_for(module, owner, model.arch, where)
    graph = trace_module(module, tuple(int(d) for d in shape), origin=f"module {type(module).__name__}", where=where)
    return graph, module


def model_graph(model: Model) -> Graph:
    """The Graph of a model: its own (your module), or its documented architecture's."""
    if model.graph is not None:
        return model.graph
    if not model.has_graph or model.arch not in ASSUMPTIONS:
        raise GraphError(f"{model.source.name}: read by the generic reader (not a documented architecture), so no "
                         f"module defines its graph; give --model-def FILE.py:NAME")  # fmt: skip
    return documented_graph(model.arch, tuple(sorted(model.config.items())))


@functools.lru_cache(maxsize=8)
def documented_graph(arch: str, config: tuple = ()) -> Graph:
    """The traced graph of qexport's module for `arch` with `config` (sorted items); cached."""
    return graph_for_documented(arch, dict(config))


def network_module(model: Model):
    """A fresh torch module computing the model's network (with its own initial weights: callers
    load the tensors they want): a copy of your module, or qexport's module of the architecture."""
    import copy

    if model.module is not None:
        return copy.deepcopy(model.module)
    from ..models import build

    model_graph(model)  # the same refusal for a graph-less model
    return build(model.arch, dict(model.config))


def network_input_shape(model: Model) -> tuple[int, ...]:
    if model.graph is not None:
        return tuple(model.graph.input_shape)
    from ..models import INPUT_SHAPES

    c, h, w = INPUT_SHAPES[model.arch]
    return (int(model.config.get("input_channel", c)), h, w)
