"""The library side of an export command: find the model, plan, quantize, hand to a writer.

The CLI only parses options and turns QexportError into click errors; everything else is here so
it can be used from Python too:

    from qexport.export import export
    export("cheader", "model.pth", "model.h", bits=8)
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from .errors import CannotHandle, UsageError
from .model import PlanOptions, QuantizedModel, frozen_map

CHECKPOINT_SUFFIXES = (".pth", ".pth.tar", ".pt")


def find_default_model(folder: str | os.PathLike = ".") -> Path:
    """The one checkpoint in `folder` (SPEC §6), or a UsageError saying what was found."""
    found = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(CHECKPOINT_SUFFIXES))
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError("no MODEL given and no *.pth, *.pth.tar or *.pt file in the current folder")
    names = ", ".join(p.name for p in found[:5])
    raise UsageError(f"no MODEL given and several checkpoints in the current folder ({names}); name one")


def plan_options_from(**kw) -> PlanOptions:
    """PlanOptions from CLI-style keyword arguments (unknown keys are ignored)."""
    fields = PlanOptions.__dataclass_fields__
    values = {k: v for k, v in kw.items() if k in fields and v is not None}
    for key in ("only", "keep_float"):
        if key in values:
            values[key] = tuple(values[key])
    if "word_bits" in values:
        values["word_bits"] = int(values["word_bits"])
    if "scale_shift" in values:
        values["scale_shift"] = frozen_map(values["scale_shift"])
    return PlanOptions(**values)


def options_text(kw: dict, defaults: dict | None = None) -> str:
    """The options that shaped the output, normalised (recorded in every output's provenance).

    Values equal to their default are left out, so the CLI (which passes every option) and a
    library call with the same effective options record the same text, byte for byte."""
    defaults = {**{k: f.default for k, f in PlanOptions.__dataclass_fields__.items()}, **(defaults or {})}
    parts = []
    for key in sorted(kw):
        value = kw[key]
        if key in ("output", "model", "report", "verbose") or value is None or value is False or value in ((), {}):
            continue  # (not `value in (..., False)`: 0 == False would drop a real --max-scale-error 0)
        if key in defaults and str(value) == str(defaults[key]):  # click Choices arrive as str
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, dict):
            parts.extend(f"{flag} {k}={m},{s}" for k, (m, s) in sorted(value.items()))
        elif isinstance(value, (tuple, list)):
            parts.extend(f"{flag} {v}" for v in value)
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def load_model(model_path, arch: str | None = None, needs_graph: bool = False, command: str = ""):
    from .readers import read_model

    model = read_model(model_path, arch)
    if needs_graph and not model.has_graph:
        raise CannotHandle(
            f"{model_path}: `qexport {command}` needs the layer graph of a documented architecture, and this "
            f"checkpoint was read by the generic reader; use `qexport npy` or `qexport h5` for its tensors, "
            f"or --arch to force an architecture"
        )
    return model


def quantize(model, options: PlanOptions, text: str = "") -> QuantizedModel:
    from .quantize.pipeline import quantize_model
    from .quantize.plan import make_plan

    return replace(quantize_model(model, make_plan(model, options)), options_text=text)


def default_output(writer, model_path: Path) -> Path:
    name = model_path.name
    for suffix in CHECKPOINT_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(name + writer.suffix)


def write_report(qmodel: QuantizedModel, path: str) -> None:
    from .atomic import atomic_file

    data = {
        "provenance": qmodel.provenance(),
        "layers": [r.as_dict() for r in qmodel.report],
        "notes": list(qmodel.model.notes + qmodel.notes),
    }
    with atomic_file(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, allow_nan=False)
        fh.write("\n")


def export(writer_name: str, model_path=None, output=None, *, writer_options: dict | None = None, **plan_kw):
    """Run one export end to end; returns (the paths written, main one first; QuantizedModel)."""
    from . import registry
    from .atomic import check_output_folder

    writer = registry.load_writer(writer_name)
    model_path = Path(model_path) if model_path else find_default_model()
    options = plan_options_from(**plan_kw)
    if plan_kw.get("pack") is None:
        options = replace(options, pack=writer.pack)
    out = Path(output) if output else default_output(writer, model_path)
    if model_path.is_file():  # a bad input is reported first; a bad output before the slow part
        for target in (out, plan_kw.get("report")):
            if target:
                check_output_folder(target)
    model = load_model(model_path, plan_kw.get("arch"), writer.needs_graph, writer.name)
    writer_defaults = {p.name: p.default for p in writer.options}
    qmodel = quantize(model, options, options_text({**plan_kw, **(writer_options or {})}, writer_defaults))
    written = writer.write(qmodel, out, **(writer_options or {}))
    # A writer may adjust the name (npz adds a suffix) or write several files (cheader's .h + .c).
    outs = tuple(Path(p) for p in (written if isinstance(written, tuple) else (written or out,)))
    if plan_kw.get("report"):
        write_report(qmodel, plan_kw["report"])
    return outs, qmodel


def print_notes(notes, stream=None) -> None:
    stream = stream or sys.stderr
    for note in notes:
        print(f"qexport: note: {note}", file=stream)
