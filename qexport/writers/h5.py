"""HDF5 writer (`qexport h5`): one file whose groups mirror the module names.

- `features.0.weight` is the dataset `/features/0/weight`, with its exact dtype and shape; arrays
  derived from a tensor sit beside it (`features.0.weight.packed` -> `/features/0/weight_packed`).
  Every dataset carries the attributes `name` (the original, unsanitised name), `scheme`, `role`,
  `layout`, `layer` and its own attributes (packing: word_bits, bit_order, n, encoding, ...).
- Each quantized layer's group (the group of its weight) carries `qexport_layer` (original name),
  `scheme`, `bits`, `per_channel`, `weight`/`bias` (dataset paths) and every per-tensor parameter
  as a scalar attribute of its exact dtype (scale float32, zero_point/multiplier/shift int32, ...);
  per-channel parameters (alpha, scale, delta, multiplier, shift, threshold, flip, scale_error)
  are datasets in that group, beside the codes.
- The root group carries generator, qexport_version, source, source_sha256, arch, options,
  conv_layout and qexport_names (JSON, ASCII-escaped: [dataset path, original name] per tensor).
  Text attributes are sanitised like the other writers' names (HDF5 strings cannot hold NUL:
  it is written as the four characters `\\x00`); the name map keeps the exact original.
- Path components are sanitised: characters other than letters, digits, `_`, `+`, `-` become `_`
  (so `/` and `.` can never make a component, nor `.`/`..`); a name that would clash with an
  existing group or dataset gets `_2`, `_3`, ...
- Deterministic bytes: object timestamps are off on every dataset and group, attributes are
  written in a fixed order, `--compress` uses gzip level 4 with shuffle and h5py's
  (deterministic) chunk shape, and the file format is the most compatible one (`libver`
  earliest), so h5dump 1.10 reads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import numpy as np

from .. import __version__
from ..atomic import atomic_file
from ..errors import DependencyMissing, OutputError
from ..encode.arrange import EncodedModel
from ..encode.records import layer_facts, param_items
from ..model import ExportTensor
from .base import WriterPlugin

GZIP_LEVEL = 4
_BAD = re.compile(r"[^A-Za-z0-9_+-]")


def component(text: str) -> str:
    """One safe HDF5 path component (never empty, never '.' or '..', no '/')."""
    return _BAD.sub("_", text)[:255] or "_"


class Layout:
    """Places names in a tree of groups and datasets without clashes."""

    def __init__(self) -> None:
        self.datasets: set[str] = set()
        self.groups: set[str] = {""}

    def _free(self, path: str) -> bool:
        return path not in self.datasets and path not in self.groups

    def place(self, parts: list[str]) -> tuple[str, str]:
        """(group path, dataset name) for a name split at its dots.  The group is the deepest prefix
        that is not already a dataset; the remaining parts are joined with '_'."""
        comps = [component(p) for p in parts] or ["_"]
        cut = len(comps) - 1
        for i in range(1, len(comps)):
            if "/".join(comps[:i]) in self.datasets:
                cut = i - 1
                break
        group = "/".join(comps[:cut])
        base = "_".join(comps[cut:])
        leaf, n = base, 1
        while not self._free(f"{group}/{leaf}".lstrip("/")):
            n += 1
            leaf = f"{base}_{n}"
        path = f"{group}/{leaf}".lstrip("/")
        self.datasets.add(path)
        for i in range(1, cut + 1):
            self.groups.add("/".join(comps[:i]))
        return group, leaf

    def free_group(self, base: str) -> str:
        """A new top-level group (for a layer whose weight landed in the root or in another layer's group)."""
        name, n = component(base), 1
        root = name
        while not self._free(name):
            n += 1
            name = f"{root}_{n}"
        self.groups.add(name)
        return name

    def free_name(self, group: str, base: str) -> str:
        leaf, n = component(base), 1
        root = leaf
        while not self._free(f"{group}/{leaf}".lstrip("/")):
            n += 1
            leaf = f"{root}_{n}"
        self.datasets.add(f"{group}/{leaf}".lstrip("/"))
        return leaf


def tensor_paths(qmodel: EncodedModel, layout: Layout | None = None) -> list[str]:
    """The dataset path of every tensor, in order (e.g. 'features/0/weight')."""
    layout = layout or Layout()
    paths = []
    for t in qmodel.tensors:
        group, leaf = layout.place(t.name.split("."))
        paths.append(f"{group}/{leaf}".lstrip("/"))
    return paths


def _attr(value):
    """An attribute value HDF5 stores with a fixed type: numpy scalars keep their dtype, bools
    become uint8 (not h5py's enum), Python ints int64, floats float64, text UTF-8 strings."""
    if isinstance(value, (bool, np.bool_)):
        return np.uint8(bool(value))
    if isinstance(value, np.ndarray):
        return value.astype(np.uint8) if value.dtype.kind == "b" else value
    if isinstance(value, np.generic):
        return value
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, float):
        return np.float64(value)
    if isinstance(value, (tuple, list)):
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            return np.asarray(value, np.int64)
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value):
            return np.asarray(value, np.float64)
        return text_attr(", ".join(map(str, value)))
    return text_attr(str(value))


def text_attr(text: str) -> str:
    """Text HDF5 can store: NUL (h5py: "VLEN strings do not support embedded NULLs") becomes `\\x00`,
    unencodable surrogates backslash escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _group(h5py, parent, name: str):
    """A group with object timestamps off (HDF5 tracks times by default)."""
    if name in parent:
        return parent[name]
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode("utf-8"), gcpl=gcpl))


def _ensure(h5py, root, path: str):
    g = root
    for part in [p for p in path.split("/") if p]:
        g = _group(h5py, g, part)
    return g


def _dataset(group, name: str, data: np.ndarray, compress: bool):
    data = np.asarray(data, order="C")
    if data.dtype.kind not in "biuf":
        raise OutputError(f"dataset {name!r} has dtype {data.dtype}, which qexport does not write to HDF5")
    kw = {"track_times": False}
    if compress and data.ndim and data.size > 1:
        kw.update(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=data.dtype.itemsize > 1, chunks=True)
    return group.create_dataset(name, data=data, **kw)


def _tensor_attrs(t: ExportTensor) -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = [("name", t.name), ("scheme", t.scheme), ("role", t.role), ("layout", t.layout)]
    if t.layer:
        items.append(("layer", t.layer))
    items.extend((f"attr_{k}" if k in dict(items) else str(k), v) for k, v in t.attrs.items())
    return items


def write(qmodel: EncodedModel, path, compress: bool = False) -> Path:
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a dependency
        raise DependencyMissing("qexport h5 needs the Python package h5py: pip install h5py") from exc

    path = Path(path)
    layout = Layout()
    paths = tensor_paths(qmodel, layout)
    path_of = {t.name: p for t, p in zip(qmodel.tensors, paths)}
    prov = qmodel.provenance()
    with atomic_file(path, "wb") as fh:
        try:
            # Built in memory (HDF5's core driver, no backing store) and written by Python: libhdf5
            # crashes the process when a write fails mid-file, e.g. on a full disk (h5py#914),
            # where a Python write fails cleanly.  The image is byte-identical to a direct write.
            with h5py.File(str(path), "w", driver="core", backing_store=False, libver="earliest",
                           track_order=False) as f:  # fmt: skip
                for key, value in prov.items():
                    f.attrs[key] = text_attr(value)
                f.attrs["qexport_version"] = __version__
                f.attrs["conv_layout"] = qmodel.encoding.layout
                f.attrs["qexport_names"] = json.dumps([[p, t.name] for t, p in zip(qmodel.tensors, paths)])
                for t, p in zip(qmodel.tensors, paths):
                    group_path, leaf = p.rpartition("/")[::2]
                    ds = _dataset(_ensure(h5py, f, group_path), leaf, t.data, compress)
                    for key, value in _tensor_attrs(t):
                        ds.attrs[key] = _attr(value)
                used: set[str] = set()
                for q in qmodel.layers:
                    weight_path = path_of.get(q.weight or "")
                    group_path = weight_path.rpartition("/")[0] if weight_path else ""
                    if not group_path or group_path in used:
                        group_path = layout.free_group(q.name)
                    used.add(group_path)
                    g = _ensure(h5py, f, group_path)
                    items: list[tuple[str, object]] = [("qexport_layer", q.name), ("kind", q.kind),
                                                       ("scheme", q.scheme), ("bits", np.int32(q.bits)),
                                                       ("per_channel", bool(q.per_channel))]  # fmt: skip
                    if weight_path:
                        items.append(("weight", "/" + weight_path))
                    if q.bias and q.bias in path_of:
                        items.append(("bias", "/" + path_of[q.bias]))
                    items.extend(layer_facts(q))
                    for key, value in param_items(q):
                        if value.ndim == 0:
                            items.append((key, value[()]))
                        else:
                            leaf = layout.free_name(group_path, key)
                            ds = _dataset(g, leaf, value, compress)
                            ds.attrs["name"] = f"{q.name}.{key}"
                            ds.attrs["role"] = "param"
                            ds.attrs["layer"] = q.name
                            ds.attrs["param"] = key
                            items.append((f"{key}_dataset", f"/{group_path}/{leaf}"))
                    for key, value in items:
                        g.attrs[key] = _attr(value)
                f.flush()
                image = f.id.get_file_image()
        except (ValueError, TypeError, RuntimeError, KeyError) as exc:
            raise OutputError(f"{path}: cannot write HDF5 file: {exc}") from exc
        fh.write(image)
    return path


OPTIONS = (
    click.Option(["--compress"], is_flag=True, default=False,
                 help=f"gzip (level {GZIP_LEVEL}) + shuffle every array with more than one element."),
)  # fmt: skip

WRITER = WriterPlugin(
    name="h5",
    help="HDF5 file: groups mirror module names, exact dtypes, quantization parameters as attributes/datasets.",
    write=write,
    suffix=".h5",
    options=OPTIONS,
)
