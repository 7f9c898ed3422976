"""A CIFAR-10/100 dataset: its layout (`Kind`), batch and meta validation, and where it is read from.

* Input: a `cifar-10-batches-py` / `cifar-100-python` folder, or the `cifar-10-python.tar.gz` /
  `cifar-100-python.tar.gz` archive read in place: one streaming pass through the archive picks the
  expected members by exact name; nothing is extracted, and links, absolute or `..` names are never
  followed or written (a link standing where a batch should be is refused).
* `load_dataset` loads and validates everything needed (batches, labels, class names) before the
  first file is written, so bad input leaves no output at all.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, QexportError, UnsafeInputError, UsageError
from .unpickle import _text, load_pickle

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SOURCE_CANDIDATES = ("cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar-100-python", "cifar-100-python.tar.gz")
IMAGE_BYTES = 3072
MAX_MEMBER_BYTES = 1 << 30  # the largest real member (CIFAR-100 train) is 155 MB


@dataclass(frozen=True)
class Kind:
    name: str  # "cifar-10" / "cifar-100"
    folder: str  # top folder inside the official archive
    batches: dict  # split -> member names in order
    meta: str
    label_keys: dict  # label kind -> key in a batch
    classes: dict  # label kind -> number of classes
    meta_keys: dict  # label kind -> key in the meta pickle


CIFAR10 = Kind(
    "cifar-10", "cifar-10-batches-py",
    {"train": tuple(f"data_batch_{j}" for j in range(1, 6)), "test": ("test_batch",)},
    "batches.meta", {"fine": "labels"}, {"fine": 10}, {"fine": "label_names"},
)
CIFAR100 = Kind(
    "cifar-100", "cifar-100-python",
    {"train": ("train",), "test": ("test",)},
    "meta", {"fine": "fine_labels", "coarse": "coarse_labels"}, {"fine": 100, "coarse": 20},
    {"fine": "fine_label_names", "coarse": "coarse_label_names"},
)
KINDS = (CIFAR10, CIFAR100)


# --------------------------------------------------------------------------- validation


@dataclass
class Batch:
    where: str
    data: np.ndarray  # (n, 3072) uint8
    labels: dict  # label kind -> int64 array (n,)


def _labels(value, where: str, key: str, n: int, classes: int) -> np.ndarray:
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "iu":
            raise InputError(f"{where}: {key!r} is a {value.dtype} array of shape {value.shape}, expected {n} integers")
        arr = value.astype(np.int64)
    elif isinstance(value, list):
        if not all(type(x) is int for x in value):
            bad = next(x for x in value if type(x) is not int)
            raise InputError(f"{where}: {key!r} holds {type(bad).__name__} {bad!r:.30}, expected integer labels")
        try:
            arr = np.array(value, dtype=np.int64)
        except OverflowError:
            raise InputError(f"{where}: {key!r} holds a label outside 0..{classes - 1}") from None
    else:
        raise InputError(f"{where}: {key!r} is a {type(value).__name__}, expected a list of integer labels")
    if len(arr) != n:
        raise InputError(f"{where}: {key!r} has {len(arr)} labels for {n} images")
    bad = np.flatnonzero((arr < 0) | (arr >= classes))
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{where}: {key!r}[{i}] = {int(arr[i])} is outside 0..{classes - 1}")
    return arr


def parse_batch(raw, where: str, kind: Kind) -> Batch:
    return batch_from_dict(load_pickle(raw, where), where, kind)


def batch_from_dict(d: dict, where: str, kind: Kind) -> Batch:
    """Validate an unpickled batch (split out so qexport.data can pick `kind` from its keys first)."""
    data = d.get("data")
    if data is None:
        raise InputError(f"{where}: no 'data' entry; not a CIFAR batch (keys: {', '.join(sorted(d)) or 'none'})")
    if not isinstance(data, np.ndarray):
        raise InputError(f"{where}: 'data' is a {type(data).__name__}, expected a uint8 array of shape (N, {IMAGE_BYTES})")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise InputError(f"{where}: 'data' is {data.dtype} of shape {data.shape}, expected uint8 of shape (N, {IMAGE_BYTES})")
    labels = {}
    for lk, key in kind.label_keys.items():
        if key not in d:
            raise InputError(f"{where}: no {key!r} entry; not a {kind.name.upper()} batch")
        labels[lk] = _labels(d[key], where, key, len(data), kind.classes[lk])
    return Batch(where, data, labels)


def parse_meta(raw, where: str, kind: Kind) -> dict:
    d = load_pickle(raw, where)
    names = {}
    for lk, key in kind.meta_keys.items():
        value = d.get(key)
        if not isinstance(value, list) or not all(_text(x) is not None for x in value):
            raise InputError(f"{where}: {key!r} missing or not a list of names")
        if len(value) != kind.classes[lk]:
            raise InputError(f"{where}: {key!r} has {len(value)} names, expected {kind.classes[lk]}")
        names[lk] = tuple(_text(x) for x in value)
    return names


_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def folder_names(names: tuple, where: str) -> tuple:
    """Class names made safe as folder names (letters, digits, . _ -; no leading dot)."""
    safe = []
    for name in names:
        s = _UNSAFE_CHARS.sub("_", name.strip())
        s = re.sub(r"^\.+", lambda m: "_" * len(m.group()), s)
        if not s:
            raise InputError(f"{where}: class name {name!r} is empty once made safe for a folder name")
        safe.append(s)
    if len(set(safe)) != len(safe):
        dup = next(s for s in safe if safe.count(s) > 1)
        raise InputError(f"{where}: two class names both become folder {dup!r}")
    return tuple(safe)


# --------------------------------------------------------------------------- sources


def find_default_source(folder: str | os.PathLike = ".") -> Path:
    """The one CIFAR folder or archive in `folder`, or a UsageError saying what was found."""
    folder = Path(folder)
    found = [folder / n for n in SOURCE_CANDIDATES if (folder / n).exists()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"no SRC given and none of {', '.join(SOURCE_CANDIDATES)} in the current folder")
    raise UsageError(f"no SRC given and several CIFAR sources in the current folder ({', '.join(p.name for p in found)}); name one")


class _FolderSource:
    def __init__(self, path: Path):
        self.path = path
        present = {k.name: [n for n in (*k.batches["train"], *k.batches["test"], k.meta) if (path / n).is_file()] for k in KINDS}
        kinds = [k for k in KINDS if present[k.name]]
        if not kinds:
            raise InputError(f"{path}: not a CIFAR folder (expected data_batch_1..5 and test_batch, or train and test)")
        if len(kinds) > 1:
            raise InputError(f"{path}: holds both CIFAR-10 and CIFAR-100 files; point SRC at one dataset folder")
        self.kind = kinds[0]

    def where(self, name: str) -> str:
        return str(self.path / name)

    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    def open(self, name: str):
        p = self.path / name
        if not p.exists():
            raise InputError(f"{self.path}: {name} is missing")
        if not p.is_file():
            raise InputError(f"{p}: not a regular file")
        if p.stat().st_size > MAX_MEMBER_BYTES:
            raise InputError(f"{p}: {p.stat().st_size} bytes, far larger than any CIFAR file")
        try:
            return open(p, "rb")
        except OSError as exc:
            raise InputError(f"{p}: cannot read: {exc.strerror or exc}") from None


class _TarSource:
    """One streaming pass over the archive, keeping only the wanted members (by exact name)."""

    def __init__(self, path: Path, wanted: dict):
        self.path = path
        self.members: dict = {}
        targets = {f"{k.folder}/{n}": (k, n) for k in KINDS for n in wanted[k.name]}
        try:
            with open(path, "rb") as fh, tarfile.open(fileobj=fh, mode="r|*") as tar:
                for m in tar:
                    name = m.name[2:] if m.name.startswith("./") else m.name
                    if name not in targets:
                        continue  # everything else, links and `..`/absolute names included, is skipped unread
                    if m.issym() or m.islnk():
                        raise UnsafeInputError(f"{path}: member {name} is a link; refusing to follow it")
                    if not m.isreg():
                        raise InputError(f"{path}: member {name} is not a regular file")
                    if m.size > MAX_MEMBER_BYTES:
                        raise InputError(f"{path}: member {name} is {m.size} bytes, far larger than any CIFAR file")
                    if name in self.members:
                        raise InputError(f"{path}: member {name} appears twice")
                    self.members[name] = tar.extractfile(m).read()
        except QexportError:
            raise
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise InputError(f"{path}: not a readable tar archive ({exc})") from None
        kinds = [k for k in KINDS if any(n.startswith(k.folder + "/") for n in self.members)]
        if not kinds:
            raise InputError(f"{path}: no {CIFAR10.folder}/ or {CIFAR100.folder}/ batches in the archive")
        if len(kinds) > 1:
            raise InputError(f"{path}: holds both CIFAR-10 and CIFAR-100 batches")
        self.kind = kinds[0]

    def where(self, name: str) -> str:
        return f"{self.path}:{self.kind.folder}/{name}"

    def has(self, name: str) -> bool:
        return f"{self.kind.folder}/{name}" in self.members

    def open(self, name: str):
        try:
            return io.BytesIO(self.members.pop(f"{self.kind.folder}/{name}"))
        except KeyError:
            raise InputError(f"{self.path}: no member {self.kind.folder}/{name}") from None


def open_source(src: Path, splits: tuple):
    if src.is_dir():
        return _FolderSource(src)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    wanted = {k.name: [n for s in splits for n in k.batches[s]] + [k.meta] for k in KINDS}
    return _TarSource(src, wanted)


@dataclass
class Dataset:
    source: Path
    kind: Kind
    batches: dict  # split -> list of Batch (only those needed for --limit)
    names: dict  # label kind -> class names (CIFAR-10 falls back to the standard ten)
    names_where: str


def load_dataset(src: Path, splits: tuple, limit: int | None = None) -> Dataset:
    """Read and validate every batch (up to `limit` images per split) and the class names."""
    source = open_source(src, splits)
    kind = source.kind
    batches = {}
    for split in splits:
        got, total = [], 0
        for name in kind.batches[split]:
            if limit is not None and total >= limit:
                break
            with source.open(name) as fh:
                batch = parse_batch(fh, source.where(name), kind)
            got.append(batch)
            total += len(batch.data)
        batches[split] = got
    names: dict = {}
    if source.has(kind.meta):
        with source.open(kind.meta) as fh:
            names = parse_meta(fh, source.where(kind.meta), kind)
    elif kind is CIFAR10:
        names = {"fine": CIFAR10_NAMES}
    return Dataset(src, kind, batches, names, source.where(kind.meta))
