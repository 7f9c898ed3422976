"""numpy writer (`qexport npy`): a folder of .npy files plus manifest.json, or one .npz (`--npz`).

Every array iter_arrays yields (the tensors, then each layer's per-channel parameters as
`<layer>.<key>`) is one .npy file with its exact dtype and shape (C order, never pickled), named by
`file_stem` (unique, case-insensitively).  `manifest.json` (sorted keys, 2-space indent, ASCII)
maps every file to its original name and records shape, dtype, scheme, role, layout, attributes,
each quantized layer's scheme and parameters (scalars inline with their dtype, per-channel ones as
a reference to their file) and the provenance.

`--npz` writes the same members (`<stem>.npy` and `manifest.json`) into one zip archive.  numpy's
savez stamps every member with the current time; qexport writes the archive itself with a fixed
date (1980-01-01), so the bytes depend only on the input and options.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import click
import numpy as np

from ..atomic import atomic_dir, atomic_file
from ..errors import OutputError, UsageError
from ..encode.arrange import EncodedModel
from ..encode.files import file_stems, json_bytes, write_npy
from ..encode.jsonvalue import json_value
from ..encode.records import iter_arrays, layer_facts, param_items
from .base import WriterPlugin

MANIFEST = "manifest.json"
FORMAT = "qexport-npy"
FORMAT_VERSION = 1
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip member can carry
ZIP_LEVEL = 6  # --compress: deflate level, fixed so that the bytes are reproducible


def array_stems(qmodel: EncodedModel) -> list[str]:
    return file_stems([name for name, _, _ in iter_arrays(qmodel)])


def manifest(qmodel: EncodedModel, stems: list[str]) -> dict:
    arrays = list(iter_arrays(qmodel))
    file_of = {(kind, name): f"{stem}.npy" for (name, _, kind), stem in zip(arrays, stems)}
    entries = []
    for (name, a, kind), stem in zip(arrays, stems):
        entry = {"name": name, "file": f"{stem}.npy", "kind": kind, "shape": list(a.shape), "dtype": str(a.dtype)}
        if kind == "tensor":
            t = qmodel.tensor(name)
            entry.update(scheme=t.scheme, role=t.role, layout=t.layout, layer=t.layer,
                         attrs={str(k): json_value(v) for k, v in t.attrs.items()})  # fmt: skip
        entries.append(entry)
    layers = []
    for q in qmodel.layers:
        params = {}
        for key, value in param_items(q):
            if value.ndim == 0:
                params[key] = {"value": value.item(), "dtype": str(value.dtype)}
            else:
                params[key] = {"file": file_of[("param", f"{q.name}.{key}")], "shape": list(value.shape),
                               "dtype": str(value.dtype)}  # fmt: skip
        layer = {"name": q.name, "kind": q.kind, "scheme": q.scheme, "bits": q.bits, "per_channel": q.per_channel,
                 "weight": q.weight, "weight_file": file_of.get(("tensor", q.weight)),
                 "bias": q.bias, "bias_file": file_of.get(("tensor", q.bias)), "params": params}  # fmt: skip
        layer.update(layer_facts(q))
        layers.append(layer)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "provenance": qmodel.provenance(),
        "arrays": entries,
        "layers": layers,
    }


def manifest_bytes(qmodel: EncodedModel, stems: list[str]) -> bytes:
    return json_bytes(manifest(qmodel, stems))


def _write_array(fh, name: str, a: np.ndarray, path: Path) -> None:
    a = np.asarray(a, order="C")
    if a.dtype.hasobject:
        raise OutputError(f"{path}: tensor {name!r} holds Python objects; only numeric arrays are exported")
    write_npy(fh, a)


def write_folder(qmodel: EncodedModel, path: Path) -> None:
    stems = array_stems(qmodel)
    with atomic_dir(path) as tmp:
        for (name, a, _), stem in zip(iter_arrays(qmodel), stems):
            with open(tmp / f"{stem}.npy", "wb") as fh:  # inside the folder atomic_dir swaps in
                _write_array(fh, name, a, path)
        with open(tmp / MANIFEST, "wb") as fh:
            fh.write(manifest_bytes(qmodel, stems))


def _member(name: str, compress: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    if compress:
        # ZipFile.open(info, "w") uses the member's own level; public name since CPython 3.13.
        attr = "compress_level" if "compress_level" in zipfile.ZipInfo.__slots__ else "_compresslevel"
        setattr(info, attr, ZIP_LEVEL)
    info.create_system = 3  # Unix, whatever the host: the bytes must not depend on the platform
    info.external_attr = 0o644 << 16
    return info


def write_npz(qmodel: EncodedModel, path: Path, compress: bool) -> None:
    stems = array_stems(qmodel)
    with atomic_file(path, "wb") as fh:
        mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(fh, "w", compression=mode, allowZip64=True) as zf:
            for (name, a, _), stem in zip(iter_arrays(qmodel), stems):
                with zf.open(_member(f"{stem}.npy", compress), "w", force_zip64=True) as member:
                    _write_array(member, name, a, path)
            with zf.open(_member(MANIFEST, compress), "w") as member:
                member.write(manifest_bytes(qmodel, stems))


def npz_path(path: Path) -> Path:
    """`--npz` writes a file: the default `<stem>_npy` becomes `<stem>.npz`, and like numpy.savez a
    name without the .npz suffix gets it."""
    if path.suffix.lower() == ".npz":
        return path
    if path.name.endswith("_npy"):
        return path.with_name(path.name[: -len("_npy")] + ".npz")
    return path.with_name(path.name + ".npz")


def write(qmodel: EncodedModel, path, npz: bool = False, compress: bool = False) -> Path:
    """Write the folder (or the .npz with `npz`); returns the path actually written."""
    path = Path(path)
    if compress and not npz:
        raise UsageError("--compress applies to --npz archives; .npy files are never compressed")
    if npz:
        path = npz_path(path)
        write_npz(qmodel, path, compress)
    else:
        write_folder(qmodel, path)
    return path


OPTIONS = (
    click.Option(["--npz"], is_flag=True, default=False,
                 help="One .npz archive (default name <checkpoint>.npz) instead of a folder of .npy files."),
    click.Option(["--compress"], is_flag=True, default=False,
                 help="With --npz: deflate the members (like numpy.savez_compressed)."),
)  # fmt: skip

WRITER = WriterPlugin(
    name="npy",
    help="Folder of .npy files (exact dtypes) + manifest.json, or one .npz with --npz.",
    write=write,
    suffix="_npy",
    options=OPTIONS,
    output_is_dir=True,
)
