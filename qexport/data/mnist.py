"""MNIST idx files, raw or gzip-compressed, parsed from the format's definition.

An idx file is a big-endian header, magic `0x0000 TT DD` (TT the element type, 0x08 = unsigned
byte; DD the number of dimensions), DD sizes of 4 bytes each, then the elements:
images `0x00000803` N, H, W then N*H*W bytes; labels `0x00000801` N then N bytes.  The file must
be exactly that long.  The labels file is found beside the images file by the standard naming
(`train-images-idx3-ubyte` <-> `train-labels-idx1-ubyte`, `t10k-...`, `.gz` or not); without one
the images have no labels.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError
from .dataset import check_labels

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
MAGICS = (IMAGES_MAGIC.to_bytes(4, "big"), LABELS_MAGIC.to_bytes(4, "big"))
GZIP_MAGIC = b"\x1f\x8b"
CLASSES = 10
CHUNK = 1 << 20
MAX_BYTES = 1 << 32  # EMNIST, the largest idx set, is under 1 GB
IMAGES_NAME = re.compile(r"(.*)images([-.])idx3([-.])ubyte(\.gz)?")


def _read(path: Path, wanted: int) -> tuple[bytes, bool, bool]:
    """Up to `wanted` bytes of the (decompressed) file, read in chunks so a lying header costs
    nothing; -> (bytes, more followed, gzip)."""
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            fh = gzip.GzipFile(fileobj=raw) if gz else raw
            parts, got = [], 0
            while got < wanted:
                part = fh.read(min(CHUNK, wanted - got))
                if not part:
                    break
                parts.append(part)
                got += len(part)
            return b"".join(parts), bool(fh.read(1)), gz
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: not a readable idx file ({exc})") from None


def _parse(path: Path, magic: int, ndim: int) -> np.ndarray:
    head, _, _ = _read(path, 4 + 4 * ndim)
    if len(head) < 4 + 4 * ndim:
        raise InputError(f"{path}: truncated idx header: {len(head)} bytes, expected {4 + 4 * ndim}")
    (got,) = struct.unpack(">I", head[:4])
    if got != magic:
        raise InputError(f"{path}: idx magic 0x{got:08x}, expected 0x{magic:08x} "
                         f"({'images, unsigned bytes, 3 dims' if magic == IMAGES_MAGIC else 'labels, unsigned bytes, 1 dim'})")
    dims = struct.unpack(f">{ndim}I", head[4:])
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=object))
    if expected > MAX_BYTES:
        raise InputError(f"{path}: header says {' x '.join(map(str, dims))}, {expected} bytes, far larger than any idx file")
    raw, more, gz = _read(path, expected)
    if len(raw) != expected or more:
        actual = str(path.stat().st_size) if not gz else f"more than {expected}" if more else str(len(raw))
        what = " once decompressed" if gz else ""
        raise InputError(f"{path}: {'truncated' if not more else 'longer than its header says'}: "
                         f"{' x '.join(map(str, dims))} needs {expected} bytes, the file holds {actual}{what}")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def is_idx(head: bytes) -> bool:
    return head[:4] in MAGICS


def labels_path(images: Path) -> Path | None:
    """The matching `*-labels-idx1-ubyte` file beside `images` (same or other compression)."""
    m = IMAGES_NAME.fullmatch(images.name)
    if not m:
        return None
    stem = f"{m.group(1)}labels{m.group(2)}idx1{m.group(3)}ubyte"
    for name in ((stem + m.group(4), stem) if m.group(4) else (stem, stem + ".gz")):
        if (images.parent / name).is_file():
            return images.parent / name
    return None


def read_idx(path: Path, head: bytes):
    """-> (images N x 1 x H x W, labels or None, 10)."""
    if head[:4] == MAGICS[1]:
        raise InputError(f"{path}: an MNIST labels file (idx1); give the images file (*-images-idx3-ubyte)")
    images = _parse(path, IMAGES_MAGIC, 3)
    lp = labels_path(path)
    if lp is None:
        return images[:, None], None, CLASSES
    labels = _parse(lp, LABELS_MAGIC, 1)
    if len(labels) != len(images):
        raise InputError(f"{lp}: {len(labels)} labels for the {len(images)} images of {path.name}")
    return images[:, None], check_labels(labels, len(images), str(lp), CLASSES), CLASSES
