"""CIFAR-10/100 python pickles -> BMP or PNG images (SPEC §7, issue 7; replaces seed 000's script).

* Input: a `cifar-10-batches-py` / `cifar-100-python` folder, or the `cifar-10-python.tar.gz` /
  `cifar-100-python.tar.gz` archive read in place: one streaming pass through the archive picks the
  expected members by exact name; nothing is extracted, and links, absolute or `..` names are never
  followed or written (a link standing where a batch should be is refused).
* Pickles are loaded by `load_pickle`, a restricted unpickler.  Real CIFAR batches (Python 2
  cPickle, protocol 2) consist of dicts, lists, strings, ints and numpy arrays, and the only globals
  they name are the array reconstruction ones.  Those four globals are admitted and mapped to
  inert stand-ins defined here, so no numpy code ever runs on the pickle's state: the array is
  rebuilt with `np.frombuffer` from a validated integer dtype and the raw bytes.  Any other global
  raises UnsafeInputError before anything is called.
* Everything needed (batches, labels, class names) is loaded and validated before the first file
  is written, so bad input leaves no output at all.
* BMP: 24-bit BI_RGB, bottom-up BGR rows padded to 4 bytes, header laid out as Pillow writes it.
  A whole chunk of images is assembled as one numpy array (headers + pixels); each file is then
  one os.write of a slice.  PNG goes through Pillow.
* Every image is written atomically (created in a private staging folder inside its output
  folder, then renamed into place) so an interrupted run leaves complete files only.  Images are
  not fsynced one by one (that would cost more than the conversion itself); labels.csv goes
  through `atomic_file`, which fsyncs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import pickle
import re
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import interrupts
from .atomic import TMP_MARK, _os_error, atomic_file
from .errors import DependencyMissing, InputError, OutputError, QexportError, UnsafeInputError, UsageError

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SOURCE_CANDIDATES = ("cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar-100-python", "cifar-100-python.tar.gz")
SPLITS = ("train", "test")
FORMATS = ("bmp", "png")
LAYOUTS = ("flat", "class-dirs")
IMAGE_BYTES = 3072
WIDTH = HEIGHT = 32
MAX_MEMBER_BYTES = 1 << 30  # the largest real member (CIFAR-100 train) is 155 MB
CHUNK = 256  # images assembled per numpy pass (800 KB: stays in cache)


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


# --------------------------------------------------------------------------- restricted unpickler


class _NdarrayClass:
    """Stands for `numpy.ndarray` inside a pickle: only ever an argument of `_reconstruct`."""

    def __repr__(self):
        return "numpy.ndarray"


_NDARRAY = _NdarrayClass()
_DTYPE_CODE = re.compile(r"[iu][1248]")
_ENDIANS = frozenset("|<>=")


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, str):
        return value
    return None


class _DtypeSpec:
    """`numpy.dtype(code, align, copy)` + BUILD, restricted to plain integer types."""

    def __init__(self, code, align=0, copy=1):
        text = _text(code)
        if text is None or not _DTYPE_CODE.fullmatch(text) or type(align) not in (int, bool) or type(copy) not in (int, bool):
            raise InputError(f"numpy dtype {code!r} is not a plain integer type")
        self.code = text
        self.endian = "|" if text.endswith("1") else "="

    def __setstate__(self, state):
        # (version 3, endian, subarray, names, fields, elsize, alignment, flags), as numpy writes
        # for a simple type; anything else (structured, subarray, object flags) is refused.
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3):
            raise InputError(f"unexpected numpy dtype state {state!r:.80}")
        endian = _text(state[1])
        if endian not in _ENDIANS or state[2:5] != (None, None, None) or state[5:] != (-1, -1, 0):
            raise InputError(f"numpy dtype state {state!r:.80} is not a plain integer type")
        self.endian = endian

    def dtype(self) -> np.dtype:
        dt = np.dtype(self.code)
        return dt if self.endian == "|" else dt.newbyteorder(self.endian)


class _ArraySpec:
    """`numpy.core.multiarray._reconstruct(ndarray, (0,), 'b')` + BUILD -> `np.frombuffer`."""

    def __init__(self, subtype, shape, typecode):
        if subtype is not _NDARRAY or shape != (0,) or _text(typecode) != "b":
            raise InputError("unexpected numpy array reconstruction arguments")
        self.array = None

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise InputError("unexpected numpy array state")
        shape, spec, fortran, raw = state
        if not isinstance(spec, _DtypeSpec):
            raise InputError("numpy array state without a plain dtype")
        if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)) or len(shape) > 4:
            raise InputError(f"numpy array shape {shape!r:.60} is not valid")
        if isinstance(raw, str):  # a Python 2 str loaded with encoding='latin1'
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)) or type(fortran) not in (bool, int):
            raise InputError("numpy array state has no raw data")
        dtype = spec.dtype()
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize != len(raw):
            raise InputError(f"numpy array of shape {shape} needs {count * dtype.itemsize} bytes, the pickle holds {len(raw)}")
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _reconstruct(subtype, shape, typecode):
    return _ArraySpec(subtype, shape, typecode)


def _dtype(code, align=0, copy=1):
    return _DtypeSpec(code, align, copy)


# The complete allow-list: what numpy (old and new module names) writes for an ndarray.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
}


class _RestrictedUnpickler(pickle._Unpickler):
    # The pure-Python unpickler (no slower here: the bulk is one large string): the C one grows its
    # memo to the largest BINPUT index it meets, so a 150-byte pickle saying LONG_BINPUT 2**31
    # makes it allocate and zero tens of GB (found by the fuzz target); this one keeps a dict.
    def __init__(self, file, where: str):
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeInputError(
                f"{self.where}: refused: the pickle asks for {module}.{name}, which CIFAR pickles never "
                "contain (only numpy array reconstruction is allowed); nothing was executed"
            ) from None

    def persistent_load(self, pid):
        raise InputError(f"{self.where}: refused: the pickle uses persistent ids, which CIFAR pickles never contain")


def load_pickle(raw, where: str) -> dict:
    """Unpickle one CIFAR file (bytes or a binary file) with the allow-list; return its dict with
    str keys and numpy arrays.  A file is read directly (one copy fewer than reading it first)."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw) if isinstance(raw, (bytes, bytearray)) else raw, where).load()
    except UnsafeInputError:
        raise
    except InputError as exc:
        if str(exc).startswith(where):
            raise
        raise InputError(f"{where}: {exc}") from None
    except (EOFError, pickle.UnpicklingError) as exc:
        raise InputError(f"{where}: truncated or corrupt pickle ({exc or 'ran out of input'})") from None
    except MemoryError:
        raise InputError(f"{where}: corrupt pickle (asks for more memory than there is)") from None
    except Exception as exc:  # any other failure inside the unpickler is a malformed file
        raise InputError(f"{where}: not a CIFAR pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: not a CIFAR pickle (top level is {type(obj).__name__}, expected a dict)")
    result = {}
    for key, value in obj.items():
        text = _text(key)
        if text is None:
            raise InputError(f"{where}: not a CIFAR pickle (dict key {key!r:.40} is not a string)")
        if text in result:
            raise InputError(f"{where}: key {text!r} appears twice (as bytes and as str)")
        if isinstance(value, _ArraySpec):
            if value.array is None:
                raise InputError(f"{where}: numpy array {text!r} has no data")
            value = value.array
        elif isinstance(value, _DtypeSpec):
            raise InputError(f"{where}: unexpected bare numpy dtype under {text!r}")
        result[text] = value
    return result


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
    d = load_pickle(raw, where)
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


# --------------------------------------------------------------------------- encoders


def bmp_header(width: int, height: int) -> bytes:
    """BITMAPFILEHEADER + BITMAPINFOHEADER of a 24-bit BI_RGB bottom-up image (as Pillow writes)."""
    stride = (width * 3 + 3) & ~3
    image = stride * height
    ppm = 3780  # 96 dpi, Pillow's default
    return (
        b"BM" + struct.pack("<IHHI", 14 + 40 + image, 0, 0, 14 + 40)
        + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, image, ppm, ppm, 0, 0)
    )


def encode_bmp_batch(data: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """(n, 3*H*W) planar RGB rows -> (n, file size) uint8: one complete BMP file per row."""
    n = len(data)
    header = np.frombuffer(bmp_header(width, height), np.uint8)
    stride = (width * 3 + 3) & ~3
    out = np.empty((n, len(header) + stride * height), np.uint8)
    out[:, : len(header)] = header
    rows = out[:, len(header) :].reshape(n, height, stride)
    if stride != width * 3:
        rows[:, :, width * 3 :] = 0
    pixels = rows[:, :, : width * 3].reshape(n, height, width, 3)  # a view (last axis split only)
    planes = data.reshape(n, 3, height, width)
    # Rows bottom-up, bytes B, G, R: one strided copy per channel, straight into the files' buffer.
    for byte, plane in enumerate((2, 1, 0)):
        pixels[..., byte] = planes[:, plane, ::-1, :]
    return out


def _png_encoder():
    try:
        from PIL import Image
    except ImportError:
        raise DependencyMissing("--format png needs Pillow: pip install pillow") from None

    def encode(rgb: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.frombytes("RGB", (rgb.shape[1], rgb.shape[0]), rgb.tobytes()).save(buf, format="PNG")
        return buf.getvalue()

    return encode


# --------------------------------------------------------------------------- writing

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class _Dir:
    """An output folder opened once, with a private staging folder inside it.

    Each image is created in `.qexport-tmp-<pid>/` and renamed into the output folder, so it
    appears complete or not at all.  Staging in a small folder of its own rather than under a
    temporary name beside the outputs keeps the large output folder to one insertion per file:
    on ext4 this makes the atomic write cost about what a plain write does (see the benchmark).
    """

    def __init__(self, path: Path):
        self.path = path
        self.fd = self.tmp_fd = -1
        self.tmp_name = f"{TMP_MARK}{os.getpid()}"
        try:
            path.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.mkdir(self.tmp_name, 0o700, dir_fd=self.fd)
            except FileExistsError:  # left by a killed earlier run that had the same pid
                self._empty_stale()
            self.tmp_fd = os.open(self.tmp_name, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW,
                                  dir_fd=self.fd)
        except FileExistsError:
            self.close()
            raise OutputError(f"{path}: exists and is not a folder; choose another -o") from None
        except OutputError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise _os_error(path, exc) from exc

    def _empty_stale(self) -> None:
        stale = self.path / self.tmp_name
        if stale.is_symlink() or not stale.is_dir():
            raise OutputError(f"{stale}: in the way of qexport's staging folder; remove it")
        for p in stale.iterdir():
            p.unlink()

    def write(self, name: str, data) -> None:
        """Write `data` to `name` atomically: create in the staging folder, one write, rename."""
        tfd = self.tmp_fd
        try:
            try:
                fd = os.open(name, _CREATE, 0o644, dir_fd=tfd)
            except FileExistsError:
                os.unlink(name, dir_fd=tfd)
                fd = os.open(name, _CREATE, 0o644, dir_fd=tfd)
            try:
                done = os.write(fd, data)
                if done < len(data):  # never for a few KB on a regular file, but be exact
                    view = memoryview(data)
                    while done < len(view):
                        done += os.write(fd, view[done:])
            finally:
                os.close(fd)
            interrupts.check()  # a signal whose KeyboardInterrupt was lost still stops here
            os.rename(name, name, src_dir_fd=tfd, dst_dir_fd=self.fd)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=tfd)
            if isinstance(exc, OSError):
                raise _os_error(self.path / name, exc) from exc
            raise

    def close(self) -> None:
        """Remove the (empty) staging folder and close both folders; safe to call twice."""
        if self.tmp_fd >= 0:
            os.close(self.tmp_fd)
            self.tmp_fd = -1
            with contextlib.suppress(OSError):
                os.rmdir(self.tmp_name, dir_fd=self.fd)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class Result:
    source: Path
    kind: str
    output: Path
    fmt: str
    counts: dict = field(default_factory=dict)  # split -> images written
    labels_csv: Path | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def default_output(kind: Kind, fmt: str) -> Path:
    """`cifar-10-bmp`, `cifar-100-png`... in the current folder (seed 000 wrote `cifar-10-bmp/`)."""
    return Path(f"{kind.name}-{fmt}")


def convert(
    src: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    *,
    split: str = "all",
    fmt: str = "bmp",
    layout: str = "flat",
    limit: int | None = None,
    label: str | None = None,
    labels_csv: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Result:
    """Convert a CIFAR-10/100 folder or archive to images.  See the module docstring and SPEC §7.

    flat layout: OUT/{split}/{label}_{index}.{fmt}; index is the image's position in the split,
    i.e. i + (images in data_batch_1..j-1), which for the real 10000-image batches is seed 000's
    i + (j-1)*10000.  class-dirs layout: OUT/{split}/{class name}/{index:05d}.{fmt}.
    `on_total(n)` is called once with the number of images before writing; `progress(k)` after
    every k images written.
    """
    if split not in (*SPLITS, "all"):
        raise UsageError(f"--split {split}: choose train, test or all")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose bmp or png")
    if layout not in LAYOUTS:
        raise UsageError(f"--layout {layout}: choose flat or class-dirs")
    if limit is not None and limit < 0:
        raise UsageError(f"--limit {limit}: must be 0 or more")
    splits = SPLITS if split == "all" else (split,)
    src = Path(src) if src is not None else find_default_source()

    ds = load_dataset(src, splits, limit)
    kind = ds.kind
    label_kind = label or "fine"
    if label_kind not in kind.label_keys:
        raise UsageError(f"--label {label_kind}: {kind.name.upper()} has one label per image; --label coarse is for CIFAR-100")
    need_names = layout == "class-dirs" or labels_csv
    names = ds.names.get(label_kind)
    if need_names and names is None:
        raise InputError(f"{ds.names_where}: missing; class names are needed for --layout class-dirs and --labels-csv")
    dir_names = folder_names(names, ds.names_where) if layout == "class-dirs" else None

    out = Path(output) if output is not None else default_output(kind, fmt)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another -o")

    plan = {}
    for s in splits:
        total = sum(len(b.data) for b in ds.batches[s])
        plan[s] = total if limit is None else min(total, limit)
    if on_total:
        on_total(sum(plan.values()))

    encode_png = _png_encoder() if fmt == "png" else None
    result = Result(src, kind.name, out, fmt)
    rows = []
    dirs: dict = {}
    try:
        for s in splits:
            split_dir = out / s
            if layout == "flat" or plan[s] == 0:
                dirs[s] = _Dir(split_dir)
            width = max(5, len(str(max(plan[s] - 1, 0))))
            index = 0
            for batch in ds.batches[s]:
                labels = batch.labels[label_kind]
                for start in range(0, len(batch.data), CHUNK):
                    stop = min(start + CHUNK, len(batch.data), start + plan[s] - index)
                    if stop <= start:
                        break
                    chunk = batch.data[start:stop]
                    if encode_png is None:
                        files = encode_bmp_batch(chunk)
                        size = files.shape[1]
                        flat = memoryview(files.reshape(-1))
                        blobs = (flat[k * size : (k + 1) * size] for k in range(len(chunk)))
                    else:
                        rgb = np.ascontiguousarray(chunk.reshape(-1, 3, HEIGHT, WIDTH).transpose(0, 2, 3, 1))
                        blobs = (encode_png(img) for img in rgb)
                    chunk_labels = labels[start:stop].tolist()
                    numbers = range(index, index + len(chunk_labels))
                    if layout == "flat":
                        write = dirs[s].write
                        file_names = [f"{lab}_{i}.{fmt}" for lab, i in zip(chunk_labels, numbers)]
                        for name, blob in zip(file_names, blobs):
                            write(name, blob)
                        if labels_csv:
                            rows += [(f"{s}/{name}", lab, names[lab]) for name, lab in zip(file_names, chunk_labels)]
                    else:
                        for lab, i, blob in zip(chunk_labels, numbers, blobs):
                            d = dirs.get((s, lab))
                            if d is None:
                                d = dirs[(s, lab)] = _Dir(split_dir / dir_names[lab])
                            name = f"{i:0{width}d}.{fmt}"
                            d.write(name, blob)
                            if labels_csv:
                                rows.append((f"{s}/{dir_names[lab]}/{name}", lab, names[lab]))
                    index += len(chunk_labels)
                    if progress:
                        progress(stop - start)
            result.counts[s] = index
    finally:
        for d in dirs.values():
            with contextlib.suppress(OSError):
                d.close()

    if labels_csv:
        target = out / "labels.csv"
        with atomic_file(target, "w") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(("file", "label", "class_name"))
            writer.writerows(rows)
        result.labels_csv = target
    return result
