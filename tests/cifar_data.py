"""CIFAR-10/100 test data in the original distribution format, at any size.

The real `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz` batches were written by Python 2's
cPickle at protocol 2 with numpy of that era.  Python 3's pickler cannot produce that byte stream
(it encodes `bytes` at protocol 2 as `_codecs.encode(...)` calls and writes numpy 2 module names),
so `py2_pickle` below emits the opcodes cPickle wrote, following the pickle protocol-2 definition
(`pickletools`) and cPickle's habits:

* memo indices start at 1 (cPickle's put2 increments the memo size), every str, tuple, list,
  dict and global is memoised with BINPUT, a repeated global is fetched with BINGET;
* Python 2 `str` (bytes here) is SHORT_BINSTRING `U` (< 256 bytes) or BINSTRING `T`, so it loads
  as `bytes` under encoding='bytes' and as `str` under encoding='latin1';
* lists and dicts are filled with APPENDS / SETITEMS in batches of 1000 (APPEND / SETITEM for a
  batch of one);
* a numpy array is `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b')` followed by BUILD
  with `(1, shape, dtype, False, raw_bytes)`, the dtype `numpy.dtype('u1', 0, 1)` followed by
  BUILD with `(3, '|', None, None, None, -1, -1, 0)`.

Key order follows the real files as loaded with encoding='bytes'
(`[b'batch_label', b'labels', b'data', b'filenames']` for CIFAR-10 batches).

Everything is deterministic (fixed seeds), so expected values come from here, never from the
converter under test.
"""

from __future__ import annotations

import io
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_COARSE = tuple(f"coarse_{k:02d}" for k in range(20))
CIFAR100_FINE = tuple(f"fine_{k:02d}" for k in range(100))


class Global:
    """A `c module\\nname\\n` reference (what cPickle writes for a class or function)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def key(self):
        return (self.module, self.name)


class Reduce:
    """`func(*args)` then, if state is not None, BUILD with state."""

    def __init__(self, func, args: tuple, state=None):
        self.func, self.args, self.state = func, args, state


class Unicode(str):
    """Written as BINUNICODE (a Python 2 `unicode`, or a Python 3 `str` key)."""


def ndarray_reduce(arr: np.ndarray, module: str = "numpy.core.multiarray") -> Reduce:
    """What Python 2 numpy's ndarray.__reduce__ returned for a C-contiguous uint8/int array."""
    arr = np.ascontiguousarray(arr)
    code = {np.dtype(np.uint8): b"u1", np.dtype("<i8"): b"i8", np.dtype("<i4"): b"i4"}[arr.dtype]
    endian = b"|" if arr.dtype.itemsize == 1 else b"<"
    dtype = Reduce(Global("numpy", "dtype"), (code, 0, 1), (3, endian, None, None, None, -1, -1, 0))
    state = (1, tuple(arr.shape), dtype, False, arr.tobytes())
    return Reduce(Global(module, "_reconstruct"), (Global("numpy", "ndarray"), (0,), b"b"), state)


class _Py2Pickler:
    def __init__(self):
        self.out = io.BytesIO()
        self.next_memo = 1
        self.globals: dict = {}

    def put(self) -> None:
        idx = self.next_memo
        self.next_memo += 1
        self.out.write(b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx))

    def save(self, obj) -> None:
        w = self.out.write
        if obj is None:
            w(b"N")
        elif obj is True or obj is False:
            w(b"\x88" if obj else b"\x89")
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                w(b"K" + bytes([obj]))
            elif 0 <= obj < 65536:
                w(b"M" + struct.pack("<H", obj))
            elif -(2**31) <= obj < 2**31:
                w(b"J" + struct.pack("<i", obj))
            else:
                raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
                w(b"\x8a" + bytes([len(raw)]) + raw)
        elif isinstance(obj, Unicode):
            raw = str(obj).encode("utf-8")
            w(b"X" + struct.pack("<I", len(raw)) + raw)
            self.put()
        elif isinstance(obj, (bytes, bytearray)):
            obj = bytes(obj)
            w((b"U" + bytes([len(obj)])) if len(obj) < 256 else (b"T" + struct.pack("<I", len(obj))))
            w(obj)
            self.put()
        elif isinstance(obj, str):  # plain str in this module means a Python 2 str (bytes)
            self.save(obj.encode("latin1"))
        elif isinstance(obj, Global):
            if obj.key() in self.globals:
                idx = self.globals[obj.key()]
                w(b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx))
                return
            w(b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
            self.globals[obj.key()] = self.next_memo
            self.put()
        elif isinstance(obj, tuple):
            if not obj:
                w(b")")
                return
            if len(obj) <= 3:
                for item in obj:
                    self.save(item)
                w({1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(obj)])
            else:
                w(b"(")
                for item in obj:
                    self.save(item)
                w(b"t")
            self.put()
        elif isinstance(obj, list):
            w(b"]")
            self.put()
            for start in range(0, len(obj), 1000):
                chunk = obj[start : start + 1000]
                if len(chunk) == 1:
                    self.save(chunk[0])
                    w(b"a")
                else:
                    w(b"(")
                    for item in chunk:
                        self.save(item)
                    w(b"e")
        elif isinstance(obj, dict):
            w(b"}")
            self.put()
            items = list(obj.items())
            for start in range(0, len(items), 1000):
                chunk = items[start : start + 1000]
                if len(chunk) == 1:
                    self.save(chunk[0][0])
                    self.save(chunk[0][1])
                    w(b"s")
                else:
                    w(b"(")
                    for k, v in chunk:
                        self.save(k)
                        self.save(v)
                    w(b"u")
        elif isinstance(obj, np.ndarray):
            self.save(ndarray_reduce(obj))
        elif isinstance(obj, Reduce):
            self.save(obj.func)
            self.save(obj.args)
            w(b"R")
            self.put()
            if obj.state is not None:
                self.save(obj.state)
                w(b"b")
        else:
            raise TypeError(f"py2_pickle cannot write {type(obj).__name__}")


def py2_pickle(obj) -> bytes:
    """The protocol-2 byte stream Python 2's cPickle.dump(obj, f, 2) wrote for CIFAR objects."""
    p = _Py2Pickler()
    p.out.write(b"\x80\x02")
    p.save(obj)
    p.out.write(b".")
    return p.out.getvalue()


# --------------------------------------------------------------------------- datasets


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    if n:
        # Corners that expose flips and channel swaps even to a casual look.
        data[0, :] = 0
        data[0, 0] = 255  # R of pixel (row 0, col 0)
        data[0, 1024 + 31] = 255  # G of pixel (row 0, col 31)
        data[0, 2048 + 31 * 32] = 255  # B of pixel (row 31, col 0)
    return data


@dataclass
class Split:
    data: np.ndarray  # (n, 3072) uint8, global order
    labels: dict = field(default_factory=dict)  # kind -> np.ndarray of ints


@dataclass
class Made:
    root: Path
    splits: dict  # "train"/"test" -> Split
    names: dict  # kind -> tuple of class names
    batch_sizes: list  # training images per data_batch_j (CIFAR-10) or [n] (CIFAR-100)


def _key(name: str, str_keys: bool):
    return Unicode(name) if str_keys else name.encode("latin1")


def cifar10_batch(data: np.ndarray, labels, batch_label: str, start: int = 0, str_keys: bool = False) -> dict:
    k = lambda s: _key(s, str_keys)  # noqa: E731
    return {
        k("batch_label"): batch_label.encode(),
        k("labels"): [int(x) for x in labels],
        k("data"): data,
        k("filenames"): [f"synthetic_s_{start + i:06d}.png".encode() for i in range(len(data))],
    }


def make_cifar10(
    root: Path,
    batch_sizes=(40, 40, 40, 40, 40),
    test_size: int = 40,
    seed: int = 10,
    str_keys: bool = False,
    meta: bool = True,
    names=CIFAR10_NAMES,
    folder: str = "cifar-10-batches-py",
) -> Made:
    """A `cifar-10-batches-py` folder under `root` with data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    out = Path(root) / folder
    out.mkdir(parents=True, exist_ok=True)
    train_data, train_labels = [], []
    start = 0
    for j, n in enumerate(batch_sizes, start=1):
        data = _images(rng, n)
        labels = rng.integers(0, 10, size=n)
        if n >= 10:
            labels[:10] = np.arange(10)  # every class occurs
        batch = cifar10_batch(data, labels, f"training batch {j} of 5", start, str_keys)
        (out / f"data_batch_{j}").write_bytes(py2_pickle(batch))
        train_data.append(data)
        train_labels.append(labels)
        start += n
    test = _images(rng, test_size)
    test_labels = rng.integers(0, 10, size=test_size)
    if test_size >= 10:
        test_labels[:10] = np.arange(10)[::-1]  # every class occurs, in another order than train
    (out / "test_batch").write_bytes(py2_pickle(cifar10_batch(test, test_labels, "testing batch 1 of 1", 0, str_keys)))
    if meta:
        k = lambda s: _key(s, str_keys)  # noqa: E731
        (out / "batches.meta").write_bytes(
            py2_pickle({k("num_cases_per_batch"): 10000, k("label_names"): [n.encode() for n in names], k("num_vis"): 3072})
        )
    (out / "readme.html").write_bytes(b"<html>synthetic CIFAR-10</html>\n")
    return Made(
        root=out,
        splits={
            "train": Split(np.concatenate(train_data), {"fine": np.concatenate(train_labels)}),
            "test": Split(test, {"fine": test_labels}),
        },
        names={"fine": tuple(names)},
        batch_sizes=list(batch_sizes),
    )


def make_cifar100(root: Path, train_size: int = 120, test_size: int = 40, seed: int = 100, str_keys: bool = False,
                  folder: str = "cifar-100-python") -> Made:
    """A `cifar-100-python` folder under `root` with train, test, meta."""
    rng = np.random.default_rng(seed)
    out = Path(root) / folder
    out.mkdir(parents=True, exist_ok=True)
    k = lambda s: _key(s, str_keys)  # noqa: E731
    splits = {}
    for split, n in (("train", train_size), ("test", test_size)):
        data = _images(rng, n)
        fine = rng.integers(0, 100, size=n)
        fine[: min(n, 100)] = np.arange(min(n, 100))
        coarse = fine % 20  # any fixed map; the converter must copy what the file says
        batch = {
            k("filenames"): [f"synthetic_s_{i:06d}.png".encode() for i in range(n)],
            k("batch_label"): f"{'training' if split == 'train' else 'testing'} batch 1 of 1".encode(),
            k("fine_labels"): [int(x) for x in fine],
            k("coarse_labels"): [int(x) for x in coarse],
            k("data"): data,
        }
        (out / split).write_bytes(py2_pickle(batch))
        splits[split] = Split(data, {"fine": fine, "coarse": coarse})
    (out / "meta").write_bytes(
        py2_pickle({k("fine_label_names"): [n.encode() for n in CIFAR100_FINE],
                    k("coarse_label_names"): [n.encode() for n in CIFAR100_COARSE]})
    )
    (out / "file.txt~").write_bytes(b"")
    return Made(root=out, splits=splits, names={"fine": CIFAR100_FINE, "coarse": CIFAR100_COARSE},
                batch_sizes=[train_size])


def make_tar(folder: Path, tar_path: Path, extra=None) -> Path:
    """`folder` packed as the official archive is: a top-level folder entry then its files.

    `extra` is a list of (TarInfo, bytes-or-None) appended after the real members.
    """
    folder = Path(folder)
    with tarfile.open(tar_path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(folder.name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1234567890
        tar.addfile(info)
        for path in sorted(folder.iterdir()):
            raw = path.read_bytes()
            info = tarfile.TarInfo(f"{folder.name}/{path.name}")
            info.size, info.mode, info.mtime = len(raw), 0o644, 1234567890
            tar.addfile(info, io.BytesIO(raw))
        for info, raw in extra or ():
            tar.addfile(info, io.BytesIO(raw) if raw is not None else None)
    return tar_path


# --------------------------------------------------------------------------- expected outputs


def hwc(row: np.ndarray) -> np.ndarray:
    """The seed's `np.reshape(x, (3, 32, 32)).transpose(1, 2, 0)`: R, G, B planes -> H x W x RGB."""
    return np.reshape(row, (3, 32, 32)).transpose(1, 2, 0)


def read_bmp_bgr(raw: bytes) -> tuple[dict, np.ndarray]:
    """An independent reader for 24-bit BI_RGB BMPs written from the format's definition.

    Returns the header fields and the pixels as top-down H x W x BGR (what cv2.imread gives).
    """
    assert raw[:2] == b"BM", "not a BMP"
    file_size, r1, r2, offset = struct.unpack_from("<IHHI", raw, 2)
    (hsize, width, height, planes, bpp, compression, image_size,
     xppm, yppm, colors, important) = struct.unpack_from("<IiiHHIIiiII", raw, 14)
    fields = dict(file_size=file_size, reserved=(r1, r2), offset=offset, header_size=hsize, width=width,
                  height=height, planes=planes, bpp=bpp, compression=compression, image_size=image_size,
                  colors=colors, important=important, xppm=xppm, yppm=yppm)
    assert bpp == 24 and compression == 0
    stride = (width * 3 + 3) // 4 * 4
    rows = []
    for r in range(abs(height)):
        start = offset + r * stride
        rows.append(np.frombuffer(raw, np.uint8, width * 3, start).reshape(width, 3))
        assert not any(raw[start + width * 3 : start + stride]), "padding bytes must be zero"
    img = np.stack(rows)
    if height > 0:  # bottom-up
        img = img[::-1]
    return fields, img
