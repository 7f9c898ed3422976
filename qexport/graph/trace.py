"""Tracing a torch module into a `Graph` (README "The network graph").

    graph = trace_module(module, input_shape=(1, 28, 28), origin="model-def net.py:LeNet")

torch.fx.symbolic_trace with a custom Tracer: torch.nn modules are leaves; nn.Conv2d / nn.Linear
subclasses, user modules fx cannot trace through and autograd Functions become opaque leaves,
identified by behaviour (`qexport.graph.probe`).  Shapes come from running the traced module (a
copy of it: some forwards rewrite their own weights) on a zero input of batch 2 (`run_shapes`).
Translation of each fx node into a `Node` is `qexport.graph.convert`.
"""

from __future__ import annotations

import copy
import os
import re

import torch
import torch.fx as fx
from torch import nn

from ..errors import GraphError
from .ir import Graph

PROBE_BATCH = 2  # a batch of 2 makes a reshape that mixes the batch dimension visible
_TORCH_DIR = os.path.dirname(torch.__file__)
_FRAME_RE = re.compile(r'File "([^"]+)", line (\d+)')
_REAL_APPLY = torch.autograd.function.Function.__dict__["apply"]  # classmethod, before any patching


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def module_source(obj) -> str:
    """file:line of the class that defines `obj` (a module, or a class itself; basename of the file)."""
    import inspect

    cls = obj if isinstance(obj, type) else type(obj)
    try:
        path = inspect.getsourcefile(cls) or "?"
        line = inspect.getsourcelines(cls)[1]
    except (TypeError, OSError):
        return "source unknown"
    return f"{os.path.basename(path)}:{line}"


def call_site(node: fx.Node) -> str:
    """file:line of the innermost frame outside torch that made the call (from the stack trace)."""
    frames = [(f, int(n)) for f, n in _FRAME_RE.findall(node.stack_trace or "") if not f.startswith(_TORCH_DIR)]
    return f"{os.path.basename(frames[-1][0])}:{frames[-1][1]}" if frames else ""


def torch_base(m: nn.Module):
    """The torch.nn class whose forward `m` runs (its own class, or the torch.nn class a user
    subclass inherits forward from unchanged), or None when the forward is the user's own."""
    forward = type(m).forward
    for klass in type(m).__mro__:
        if klass.__module__.startswith("torch.nn.") and getattr(klass, "forward", None) is forward:
            return klass
    return None


class AutogradApply:
    """fx target standing for `Fn.apply` of a custom torch.autograd.Function (kept opaque)."""

    def __init__(self, fn_cls, apply):
        self.fn_cls = fn_cls
        self._apply = apply
        self.__name__ = f"{fn_cls.__name__}_apply"
        self.__qualname__ = self.__name__
        self.__module__ = getattr(fn_cls, "__module__", "")

    def __call__(self, *args, **kwargs):
        return self._apply(*args, **kwargs)


class GraphTracer(fx.Tracer):
    """Leaves: torch.nn modules (not containers), every nn.Conv2d / nn.Linear (subclasses
    included: their forward may binarize), and user modules fx cannot trace through."""

    def __init__(self):
        super().__init__()
        self.record_stack_traces = True
        self._opaque: dict[int, bool] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return True
        if torch_base(m) is not None and not isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return True
        if id(m) not in self._opaque:
            try:
                GraphTracer().trace(m)
                self._opaque[id(m)] = False
            except Exception:  # data-dependent control flow and the like: identify it by behaviour
                self._opaque[id(m)] = True
        return self._opaque[id(m)]

    def trace(self, root, concrete_args=None):
        base = torch.autograd.function.Function
        previous = base.__dict__["apply"]  # the real one, or an outer trace's patch (nested traces)
        tracer = self

        def apply(cls, *args, **kwargs):
            if any(isinstance(a, fx.Proxy) and a.tracer is tracer for a in (*args, *kwargs.values())):
                target = AutogradApply(cls, _REAL_APPLY.__get__(None, cls))
                return tracer.create_proxy("call_function", target, args, kwargs)
            return previous.__get__(None, cls)(*args, **kwargs)

        base.apply = classmethod(apply)
        try:
            return super().trace(root, concrete_args)
        finally:
            base.apply = previous


class _Recorder(fx.Interpreter):
    """Runs the traced module and keeps, per fx node, the shape (with batch) of a tensor result,
    or the Python value of a non-tensor one (sizes, getitem on sizes)."""

    def __init__(self, gm):
        super().__init__(gm)
        self.values: dict[str, object] = {}

    def run_node(self, n):
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            self.values[n.name] = ("tensor", tuple(result.shape))
        else:
            self.values[n.name] = ("value", result)
        return result


def run_shapes(gm: fx.GraphModule, input_shape, dtype) -> dict[str, object]:
    rec = _Recorder(gm)
    with torch.no_grad():
        rec.run(torch.zeros((PROBE_BATCH, *input_shape), dtype=dtype))
    return rec.values


def trace_module(module: nn.Module, input_shape, origin: str = "", assumption: str = "", where: str = "") -> Graph:
    """The Graph of `module` (eval mode) for inputs of `input_shape` (batch excluded).

    where: what error messages name first (the model-def FILE.py:NAME, or the architecture)."""
    from .convert import convert

    where = where or origin or type(module).__name__
    module = module.eval()
    tracer = GraphTracer()
    try:
        fx_graph = tracer.trace(module)
    except Exception as exc:
        raise GraphError(f"{where}: cannot trace forward of {type(module).__name__} ({module_source(module)}): "
                         f"{first_line(exc)}") from None  # fmt: skip
    inputs = [n.name for n in fx_graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise GraphError(f"{where}: forward of {type(module).__name__} takes {len(inputs)} inputs ({', '.join(inputs)}); "
                         f"a graph has exactly one input")  # fmt: skip
    gm = fx.GraphModule(tracer.root, fx_graph)
    try:
        shadow = copy.deepcopy(gm)
    except Exception:
        shadow = gm
    params = list(module.parameters())
    dtype = params[0].dtype if params and params[0].is_floating_point() else torch.float32
    try:
        values = run_shapes(shadow, tuple(input_shape), dtype)
    except Exception as exc:
        raise GraphError(f"{where}: running {type(module).__name__} on a zero input of shape {tuple(input_shape)} "
                         f"(batch excluded) failed: {first_line(exc)}") from None  # fmt: skip
    nodes, output, notes = convert(gm, values, where)
    graph = Graph(nodes=nodes, input_shape=tuple(input_shape), output=output, origin=origin,
                  assumption=assumption, notes=notes)  # fmt: skip
    graph.check()
    return graph
