"""The library side of an export command: prepare (find, check, load, plan, quantize), encode,
hand to a writer.  The CLI only parses options and turns QexportError into one-line errors:

    from qexport.export import export
    export("cheader", "model.pth", "model.h", bits=8)
    export("onnx", "model.pth", "model.onnx", model_def="net.py:LeNet")   # or model_def=my_module

`model_def` (README "The network graph") runs your code: a "FILE.py:NAME[(k=v)]" text or an
nn.Module instance (copied, never changed) whose traced graph is the network.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .model import QuantizedModel
from .prepare import checkpoint_stem, find_default_model, load_model, plan_options_from, prepare, quantize

__all__ = ["export", "load_model", "plan_options_from", "quantize", "write_report"]


def default_output(writer, model_path: Path) -> Path:
    return Path(checkpoint_stem(model_path) + writer.suffix)


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


def _no_paths(options: dict) -> dict:
    """A calibration file by its name only in the provenance (no absolute paths in outputs)."""
    data = options.get("calibration_data")
    return {**options, "calibration_data": Path(data).name} if data else options


def export(writer_name: str, model_path=None, output=None, *, writer_options: dict | None = None, **plan_kw):
    """Run one export end to end; returns (the paths written, main one first; the EncodedModel
    written: the QuantizedModel's arrays as arranged for this writer)."""
    from . import registry
    from .encode.arrange import arrange
    from .encode.options import encode_options_from

    writer = registry.load_writer(writer_name)
    model_path = Path(model_path) if model_path else find_default_model()
    encoding = encode_options_from(writer.pack, **plan_kw)  # usage errors before anything is loaded
    out = Path(output) if output else default_output(writer, model_path)
    writer_defaults = {p.name: p.default for p in writer.options}
    prepared = prepare(model_path, command=writer.name, plan_kw=plan_kw, outputs=(out,),
                       needs_graph=writer.needs_graph, text_kw={**plan_kw, **_no_paths(writer_options or {})},
                       text_defaults=writer_defaults)  # fmt: skip
    encoded = arrange(prepared.quantized, encoding)
    written = writer.write(encoded, out, **(writer_options or {}))
    # A writer may adjust the name (npz adds a suffix) or write several files (cheader's .h + .c).
    outs = tuple(Path(p) for p in (written if isinstance(written, tuple) else (written or out,)))
    if plan_kw.get("report"):
        write_report(prepared.quantized, plan_kw["report"])
    return outs, encoded


def print_notes(notes, stream=None) -> None:
    stream = stream or sys.stderr
    for note in notes:
        print(f"qexport: note: {note}", file=stream)
