"""`--model-def FILE.py:NAME` and `FILE.py:NAME(k=v, ...)`: the user's own module (README "The
network graph", "Your own module").

    module, spec = load_model_def("net.py:LeNet(num_classes=10)")
    load_state(module, model.tensors, spec)
    graph, module = graph_for_model_def("net.py:LeNet", model.tensors, arch=model.arch)

The keyword arguments are parsed with ast.literal_eval (never eval).  The file is imported with
importlib (it is the user's code and runs); the checkpoint is still read with weights_only=True.
Every problem is one ModelDefError line naming the file, the name and the problem.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ModelDefError

_SPEC_RE = re.compile(r"^(?P<file>.+?\.py):(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\((?P<args>.*)\))?\s*$", re.S)
# The warning that --model-def runs your code is printed by the CLI when it parses the option
# (qexport.options.MODEL_DEF_WARNING).


@dataclass(frozen=True)
class ModelDefSpec:
    file: str
    name: str
    kwargs: Mapping[str, Any]
    text: str  # as given

    @property
    def label(self) -> str:
        """`net.py:LeNet(k=1)`: the base name of the file, for messages and the graph's origin."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{os.path.basename(self.file)}:{self.name}" + (f"({args})" if self.kwargs else "")


def parse_spec(text: str) -> ModelDefSpec:
    match = _SPEC_RE.match(text.strip())
    if not match:
        raise ModelDefError(f"--model-def {text}: expected FILE.py:NAME or FILE.py:NAME(k=v, ...)")
    kwargs: dict[str, Any] = {}
    if match["args"] and match["args"].strip():
        try:
            call = ast.parse(f"f({match['args']})", mode="eval").body
        except SyntaxError:
            raise ModelDefError(f"--model-def {text}: the arguments are not k=v, ... ({match['args']})") from None
        if not isinstance(call, ast.Call) or call.args or any(k.arg is None for k in call.keywords):
            raise ModelDefError(f"--model-def {text}: give keyword arguments only (k=v, ...)")
        for kw in call.keywords:
            try:
                kwargs[kw.arg] = ast.literal_eval(kw.value)
            except (ValueError, SyntaxError, TypeError):
                raise ModelDefError(f"--model-def {text}: argument {kw.arg} is not a literal (numbers, strings, "
                                    f"tuples, lists, dicts, True/False/None)") from None  # fmt: skip
    return ModelDefSpec(match["file"], match["name"], kwargs, text)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def import_file(spec: ModelDefSpec):
    path = os.path.abspath(spec.file)
    where = f"{spec.file} (--model-def {spec.name})"
    if not os.path.isfile(path):
        raise ModelDefError(f"{where}: no such file")
    unique = "qexport_model_def_" + hashlib.sha256(path.encode()).hexdigest()[:12]
    loader_spec = importlib.util.spec_from_file_location(unique, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ModelDefError(f"{where}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[unique] = module
    try:
        loader_spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SyntaxError, ImportError, SystemExit...: the user's code failed
        sys.modules.pop(unique, None)
        raise ModelDefError(f"{where}: importing it failed: {_first_line(exc)}") from None
    return module


def load_model_def(text: str):
    """(the nn.Module instance in eval mode, its ModelDefSpec, the imported file module)."""
    from torch import nn

    spec = parse_spec(text)
    file_module = import_file(spec)
    where = f"{spec.file}:{spec.name}"
    if not hasattr(file_module, spec.name):
        defined = sorted(k for k, v in vars(file_module).items() if not k.startswith("_") and (inspect.isfunction(v) or (
            inspect.isclass(v) and issubclass(v, nn.Module))) and getattr(v, "__module__", "") == file_module.__name__)
        raise ModelDefError(f"{where}: no {spec.name} in {spec.file}" + (f" (it defines {', '.join(defined)})" if defined else ""))
    obj = getattr(file_module, spec.name)
    if not callable(obj):
        raise ModelDefError(f"{where}: {spec.name} is a {type(obj).__name__}, not a class or a function returning an nn.Module")
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        params = signature.parameters.values()
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
        unknown = [k for k in spec.kwargs if k not in signature.parameters and not takes_any]
        if unknown:
            raise ModelDefError(f"{where}: {spec.name} takes no argument {', '.join(unknown)} (it takes "
                                f"{', '.join(signature.parameters) or 'none'})")  # fmt: skip
        missing = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                   and p.name not in spec.kwargs]  # fmt: skip
        if missing:
            example = ", ".join(f"{m}=..." for m in missing)
            raise ModelDefError(f"{where}: {spec.name} needs the argument(s) {', '.join(missing)}; give them as "
                                f"{spec.file}:{spec.name}({example})")  # fmt: skip
    try:
        instance = obj(**spec.kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise ModelDefError(f"{where}: calling {spec.name}({', '.join(spec.kwargs)}) failed: {_first_line(exc)}") from None
    if not isinstance(instance, nn.Module):
        raise ModelDefError(f"{where}: {spec.name} gave a {type(instance).__name__}, not a torch.nn.Module")
    return instance.eval(), spec, file_module


def _listed(names, limit: int = 5) -> str:
    names = list(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_state(module, state: Mapping[str, Any], where: str) -> None:
    """Load `state` (name -> numpy array or tensor) into `module`, strictly: every key of the module
    given, no other key, the same shapes.  num_batches_tracked may be absent (checkpoints saved
    without it exist); the module's own value is kept then."""
    import numpy as np
    import torch

    expected = module.state_dict()
    given = {}
    for key, value in state.items():
        given[key] = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value))
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} {tuple(given[k].shape)} in the checkpoint, {tuple(expected[k].shape)} in the module"
              for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]  # fmt: skip
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_listed(shapes, 3)}")
    if problems:
        raise ModelDefError(f"{where}: the checkpoint does not fit the module: {'; '.join(problems)}")
    module.load_state_dict({k: v for k, v in given.items()}, strict=False)


def input_shape_for(module, file_module, arch: str | None, where: str) -> tuple[tuple[int, ...], str]:
    """(input shape without batch, where it came from): the module's `input_shape` attribute, the
    file's INPUT_SHAPE, or the documented architecture's input shape."""
    from ..models import INPUT_SHAPES

    for owner, attr, label in ((module, "input_shape", "the module's input_shape"),
                               (file_module, "INPUT_SHAPE", "INPUT_SHAPE of the file")):  # fmt: skip
        value = getattr(owner, attr, None)
        if value is not None:
            try:
                return tuple(int(d) for d in value), label
            except (TypeError, ValueError):
                raise ModelDefError(f"{where}: {attr} = {value!r} is not a shape like (1, 28, 28)") from None
    if arch in INPUT_SHAPES:
        return tuple(INPUT_SHAPES[arch]), f"the input shape of {arch}"
    raise ModelDefError(f"{where}: the input shape is unknown; set input_shape = (C, H, W) on the module or "
                        f"INPUT_SHAPE = (C, H, W) in the file")  # fmt: skip


def graph_for_model_def(text: str, state: Mapping[str, Any] | None = None, arch: str | None = None):
    """(the Graph of the user's module, the module) - the state loaded strictly when given."""
    from .trace import trace_module

    module, spec, file_module = load_model_def(text)
    where = f"{spec.file}:{spec.name}"
    if state is not None:
        load_state(module, state, where)
    shape, shape_from = input_shape_for(module, file_module, arch, where)
    graph = trace_module(module, shape, origin=f"model-def {spec.label}", where=where)
    from dataclasses import replace

    return replace(graph, notes=(f"input shape {shape} from {shape_from}",) + graph.notes), module
