"""One preparation path for every command (README "Design"): find the checkpoint, check the
outputs, load it, plan and quantize, with the option text every output records.

    prepared = prepare(path, command="cheader", outputs=(out,), plan_kw=kw)
    prepared.model, prepared.quantized
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .encode.options import EncodeOptions
from .errors import CannotHandle, UsageError
from .model import Model, PlanOptions, QuantizedModel, frozen_map

CHECKPOINT_SUFFIXES = (".pth", ".pth.tar", ".pt")
# Defaults of the options that shape an output but are not plan options.
ENCODE_DEFAULTS = {k: f.default for k, f in EncodeOptions.__dataclass_fields__.items()}


def find_default_model(folder: str | os.PathLike = ".") -> Path:
    """The one checkpoint in `folder` (README "What it does"), or a UsageError saying what was found."""
    found = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(CHECKPOINT_SUFFIXES))
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError("no MODEL given and no *.pth, *.pth.tar or *.pt file in the current folder")
    names = ", ".join(p.name for p in found[:5])
    raise UsageError(f"no MODEL given and several checkpoints in the current folder ({names}); name one")


def checkpoint_stem(path: Path) -> str:
    """`model.pth.tar` -> `model`: the base of every default output name."""
    name = path.name
    for suffix in (".pth.tar", ".pth", ".pt"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def plan_options_from(**kw) -> PlanOptions:
    """PlanOptions from CLI-style keyword arguments (unknown keys are ignored)."""
    fields = PlanOptions.__dataclass_fields__
    values = {k: v for k, v in kw.items() if k in fields and v is not None}
    for key in ("only", "keep_float"):
        if key in values:
            values[key] = tuple(values[key])
    for key in ("scale_shift", "layer_bits"):
        if key in values:
            values[key] = frozen_map(values[key])
    return PlanOptions(**values)


def options_text(kw: dict, defaults: dict | None = None) -> str:
    """The options that shaped the output, normalised (recorded in every output's provenance).

    Values equal to their default are left out, so the CLI (which passes every option) and a
    library call with the same effective options record the same text, byte for byte."""
    plan_defaults = {k: f.default for k, f in PlanOptions.__dataclass_fields__.items()}
    defaults = {**plan_defaults, **ENCODE_DEFAULTS, **(defaults or {})}
    parts = []
    for key in sorted(kw):
        value = kw[key]
        if key in ("output", "model", "report", "verbose") or value is None or value is False or value in ((), {}):
            continue  # (not `value in (..., False)`: 0 == False would drop a real --max-scale-error 0)
        if key in defaults and str(value) == str(defaults[key]):  # click Choices arrive as str
            continue
        flag = "--" + key.replace("_", "-")
        if key == "model_def" and not isinstance(value, str):  # a library caller's module instance
            value = f"<module {type(value).__name__}>"
        if key == "model_def":  # the file's base name only: outputs never embed a path
            head, sep, tail = str(value).partition(".py:")
            value = Path(head + ".py").name + ":" + tail if sep else Path(str(value)).name
        if value is True:
            parts.append(flag)
        elif isinstance(value, dict):
            parts.extend(f"{flag} {k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
                         for k, v in sorted(value.items()))
        elif isinstance(value, (tuple, list)):
            parts.extend(f"{flag} {v}" for v in value)
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def require_graph(model: Model, command: str, path=None) -> None:
    """The one refusal of the graph-less generic reader by a command that needs the layer graph."""
    if not model.has_graph:
        raise CannotHandle(
            f"{path or model.source.name}: `qexport {command}` needs the network's graph, and this checkpoint is not "
            f"a documented architecture; give --model-def FILE.py:NAME (the module that defines it), or use "
            f"`qexport npy` or `qexport h5` for its tensors"
        )


def load_model(model_path, arch: str | None = None, needs_graph: bool = False, command: str = "",
               model_def=None) -> Model:
    """Read a checkpoint (the reader that claims it, or --arch), find its graph (your module with
    model_def, README "The network graph"); refuse a graph-less one if needed."""
    from .graph.stage import with_graph
    from .readers import read_model

    model = with_graph(read_model(model_path, arch), model_def)
    if needs_graph:
        require_graph(model, command, model_path)
    return model


def quantize(model: Model, options: PlanOptions, text: str = "") -> QuantizedModel:
    from .quantize.pipeline import quantize_model
    from .quantize.plan import make_plan

    return replace(quantize_model(model, make_plan(model, options)), options_text=text)


@dataclass(frozen=True)
class Prepared:
    path: Path  # the checkpoint
    model: Model
    quantized: QuantizedModel | None  # None when prepare(quantize=False)


def prepare(model_path, *, command: str, plan_kw: dict, outputs=(), needs_graph: bool = False,
            text_kw: dict | None = None, text_defaults: dict | None = None, quantize_model: bool = True) -> Prepared:
    """Find the model (the one checkpoint here when none is given), check every output target's
    folder before the slow part, load, refuse a graph-less model where the graph is needed, plan
    and quantize.  text_kw: the options recorded in provenance (default plan_kw)."""
    from .atomic import check_output_folder

    path = Path(model_path) if model_path else find_default_model()
    options = plan_options_from(**plan_kw)
    if path.is_file():  # a bad input is reported first (by the reader); a bad output before the slow part
        for target in (*outputs, plan_kw.get("report")):
            if target:
                check_output_folder(target)
    model = load_model(path, plan_kw.get("arch"), needs_graph, command, plan_kw.get("model_def"))
    if not quantize_model:
        return Prepared(path, model, None)
    text = options_text(plan_kw if text_kw is None else text_kw, text_defaults)
    return Prepared(path, model, quantize(model, options, text))
