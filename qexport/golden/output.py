"""Writing golden vectors to a folder (always through atomic_dir): `npy` one .npy per stage, `mem`
one $readmemh .mem per stage (the conventions of `qexport mem`), `cheader` one golden.h; each with
manifest.json.  Deterministic: no timestamps, input files named by base name only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..encode.files import file_stems, json_bytes, write_npy
from ..encode.memory import memory_words, write_memory
from ..encode.records import provenance_lines
from ..errors import UsageError
from ..model import QuantizedModel
from .header import HEADER, c_array, header_names, header_text
from .stages import Golden, Stage, stage_encoding

FORMAT = "qexport-golden"
FORMAT_VERSION = 1
FORMATS = ("npy", "mem", "cheader")
MANIFEST = "manifest.json"


def stage_stems(stages: list[Stage]) -> list[str]:
    return file_stems([s.name for s in stages], plain=True)  # as `qexport mem` names its files


def manifest(qmodel: QuantizedModel, g: Golden, files: list[str], fmt: str, extra: list[dict] | None) -> dict:
    entries = []
    for i, (s, f) in enumerate(zip(g.stages, files)):
        e = {"name": s.name, "file": f, "shape": list(s.data.shape), "dtype": str(s.data.dtype),
             "layout": s.layout, "description": s.description}  # fmt: skip
        if s.layer:
            e["layer"] = s.layer
        if s.attrs:
            e["attrs"] = dict(s.attrs)
        if extra:
            e.update(extra[i])
        entries.append(e)
    out = {"format": FORMAT, "format_version": FORMAT_VERSION, "output_format": fmt, "kind": g.kind,
           "provenance": qmodel.provenance(), "inputs": g.inputs.sources, "count": int(g.inputs.images.shape[0]),
           "input_gain": int(qmodel.plan.options.input_gain), "stages": entries, "notes": g.notes}  # fmt: skip
    if g.accuracy is not None:
        out["accuracy"] = g.accuracy
    return out


def _dump(path: Path, data: dict) -> None:
    with open(path, "wb") as fh:
        fh.write(json_bytes(data))


def write_golden(qmodel: QuantizedModel, g: Golden, path, fmt: str = "npy") -> Path:
    from ..atomic import atomic_dir

    path = Path(path)
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    stems = stage_stems(g.stages)
    with atomic_dir(path) as tmp:
        if fmt == "npy":
            files = [f"{stem}.npy" for stem in stems]
            for s, f in zip(g.stages, files):
                with open(tmp / f, "wb") as fh:
                    write_npy(fh, np.ascontiguousarray(s.data))
            _dump(tmp / MANIFEST, manifest(qmodel, g, files, fmt, None))
        elif fmt == "mem":
            files, extra = [f"{stem}.mem" for stem in stems], []
            for s, f in zip(g.stages, files):
                enc = stage_encoding(s)
                words, geometry = memory_words(s.name, s.data, enc, None)
                info = {**geometry, "signed": enc["signed"], "encoding": enc["encoding"],
                        "word_order": f"C order (row-major) of shape {list(s.data.shape)} ({s.layout}); one "
                                      f"{'word' if enc['packed'] else 'element'} per address"}  # fmt: skip
                extra.append(info)
                comments = [f"qexport golden: {s.name} {'x'.join(map(str, s.data.shape))} {s.layout}",
                            f"{s.description}",
                            f"depth {geometry['depth']} width {geometry['width']} encoding: {enc['encoding']}"]
                comments += provenance_lines(qmodel)
                with open(tmp / f, "wb") as fh:
                    write_memory(fh, "mem", words, geometry, comments)
            _dump(tmp / MANIFEST, manifest(qmodel, g, files, fmt, extra))
        else:
            names = header_names(g.stages)
            with open(tmp / HEADER, "wb") as fh:
                fh.write(header_text(qmodel, g, names))
            extra = [{"c_array": n, "c_type": c_array(s).dtype.name} for s, n in zip(g.stages, names)]
            _dump(tmp / MANIFEST, manifest(qmodel, g, [HEADER] * len(g.stages), fmt, extra))
    return path
