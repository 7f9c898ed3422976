"""Reader and writer plugins, found by name and imported only when used (imageio v3 style).

Built-ins are listed here as "module:attr" strings; third-party plugins register the same kind of
string under the entry-point groups `qexport.readers` / `qexport.writers`.  Both go through
`_load`, so a built-in gets no privilege a plugin lacks.  Listing plugins imports nothing heavy;
`qexport --help` uses the help strings below and never imports a plugin module.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from functools import lru_cache

from .errors import DependencyMissing, QexportError, UsageError

READER_GROUP = "qexport.readers"
WRITER_GROUP = "qexport.writers"


@dataclass(frozen=True)
class PluginEntry:
    name: str
    target: str  # "module:attr"
    help: str = ""
    builtin: bool = True
    dist: str = ""  # distribution providing a third-party plugin


BUILTIN_READERS = (
    PluginEntry("lenet", "qexport.readers.lenet:READER", "LeNet-5 (seed 002)"),
    PluginEntry("vgg_cifar10_binary", "qexport.readers.vgg:READER", "BinaryNet VGG for CIFAR-10 (seed 000)"),
    PluginEntry("twn_nin_gc", "qexport.readers.twn:READER", "ternary NIN with grouped convs (seed 001)"),
    PluginEntry("resnet18_bnn", "qexport.readers.resnet18_bnn:READER", "binarized ResNet18 (seed 003)"),
    PluginEntry("mobilenet_v1", "qexport.readers.mobilenet:READER", "MobileNetV1 (seed 004)"),
    PluginEntry("generic", "qexport.readers.generic:READER", "any state_dict, no layer graph"),
)

BUILTIN_WRITERS = (
    PluginEntry("mat", "qexport.writers.mat:WRITER", "MATLAB v5 .mat file"),
    PluginEntry("txt", "qexport.writers.txt:WRITER", "folder of .txt files, every value"),
    PluginEntry("npy", "qexport.writers.npy:WRITER", "folder of .npy files + manifest.json, or .npz"),
    PluginEntry("h5", "qexport.writers.h5:WRITER", "HDF5 file"),
    PluginEntry("cheader", "qexport.writers.cheader:WRITER", "C header for MCU/FPGA firmware"),
    PluginEntry("onnx", "qexport.writers.onnx:WRITER", "ONNX graph with DequantizeLinear weights"),
    PluginEntry("mem", "qexport.writers.mem:WRITER", "FPGA memory files (.mem/.coe/.mif)"),
)


def _entry_points(group: str) -> tuple[PluginEntry, ...]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=group):
        dist = getattr(getattr(ep, "dist", None), "name", "") or ""
        found.append(PluginEntry(ep.name, ep.value, f"plugin from {dist or 'unknown package'}", False, dist))
    return tuple(sorted(found, key=lambda e: e.name))


def _scan_entry_points(group: str) -> list[PluginEntry]:
    """The entry points of `group` read straight from the `*.dist-info`/`*.egg-info` folders on
    sys.path, for `qexport --help` only: importing importlib.metadata costs ~40 ms of start-up.
    Commands and `qexport formats` use importlib.metadata (`_entry_points`)."""
    found = []
    for folder in sys.path:
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for info in names:
            if not info.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(folder or ".", info, "entry_points.txt"), encoding="utf-8") as fh:
                    lines = fh.read().splitlines()
            except OSError:
                continue
            dist, section = info.rsplit(".", 1)[0].split("-")[0], None
            for line in lines:
                line = line.strip()
                if line.startswith("["):
                    section = line.strip("[]").strip()
                elif section == group and "=" in line and not line.startswith(("#", ";")):
                    name, _, value = line.partition("=")
                    found.append(PluginEntry(name.strip(), value.strip(), f"plugin from {dist}", False, dist))
    return found


def help_entries(kind: str) -> tuple[PluginEntry, ...]:
    """Like `entries`, without importlib.metadata (for `qexport --help`)."""
    builtin = BUILTIN_READERS if kind == "readers" else BUILTIN_WRITERS
    seen = {e.name for e in builtin}
    extra = []
    for e in _scan_entry_points(READER_GROUP if kind == "readers" else WRITER_GROUP):
        if e.name not in seen:
            seen.add(e.name)
            extra.append(e)
    return builtin + tuple(sorted(extra, key=lambda e: e.name))


@lru_cache(maxsize=None)
def entries(kind: str) -> tuple[PluginEntry, ...]:
    """All plugins of one kind ("readers" or "writers"): built-ins first, then third-party ones.
    A third-party plugin cannot shadow a built-in name."""
    builtin = BUILTIN_READERS if kind == "readers" else BUILTIN_WRITERS
    group = READER_GROUP if kind == "readers" else WRITER_GROUP
    names = {e.name for e in builtin}
    extra = tuple(e for e in _entry_points(group) if e.name not in names)
    return builtin + extra


def entry(kind: str, name: str) -> PluginEntry:
    for e in entries(kind):
        if e.name == name:
            return e
    known = ", ".join(e.name for e in entries(kind))
    raise UsageError(f"unknown {kind[:-1]} {name!r}; known: {known}")


def _load(e: PluginEntry):
    module_name, _, attr = e.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing.split(".")[0] == module_name.split(".")[0]:
            raise QexportError(f"plugin {e.name!r}: module {module_name} not found ({e.target})") from exc
        raise DependencyMissing(
            f"plugin {e.name!r} needs the Python package {missing!r}: pip install {missing}"
        ) from exc
    try:
        obj = module
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise QexportError(f"plugin {e.name!r}: {e.target} does not exist") from exc
    return obj


def load_reader(name: str):
    return _load(entry("readers", name))


def load_writer(name: str):
    return _load(entry("writers", name))


def reader_names() -> list[str]:
    return [e.name for e in entries("readers")]


def writer_names() -> list[str]:
    return [e.name for e in entries("writers")]
