"""`load_data`: find the format from the content (magic bytes) or the folder's structure, read it.

Files, by their first bytes (the suffix is not trusted): `\\x93NUMPY` .npy; `PK\\x03\\x04` .npz;
idx magic 0x00000803 / 0x00000801 MNIST; gzip holding an idx file (MNIST) or a tar archive (CIFAR);
a tar archive (`ustar` at byte 257) CIFAR; a pickle's first opcode, a CIFAR batch.  Folders: a
CIFAR folder if it holds any CIFAR batch or meta file, otherwise a folder of images.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from ..errors import InputError, UsageError
from . import arrays, cifar, folder, mnist
from .dataset import Dataset, check_args, finish, source_name

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"
TAR_MAGIC_AT = 257  # "ustar" in the first header block (POSIX and GNU)
HEAD = 512
FORMATS = ".npy, .npz, a folder of BMP/PNG images, CIFAR python pickles or .tar.gz, MNIST idx files"


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _gunzipped_head(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read(HEAD)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: not a readable gzip file ({exc})") from None


def _is_tar(head: bytes) -> bool:
    return head[TAR_MAGIC_AT : TAR_MAGIC_AT + 5] == b"ustar"


def _read_file(path: Path, channels, hw, limit):
    """-> (images, labels, classes) of a regular file, by its content."""
    head = _head(path)
    if head.startswith(NPY_MAGIC):
        return (*arrays.read_npy(path, channels, hw), None)
    if head.startswith(ZIP_MAGIC):
        return (*arrays.read_npz(path, channels, hw), None)
    if mnist.is_idx(head):
        return mnist.read_idx(path, head)
    if head.startswith(GZIP_MAGIC):
        inner = _gunzipped_head(path)
        if mnist.is_idx(inner):
            return mnist.read_idx(path, inner)
        if _is_tar(inner):
            return cifar.read_source(path, limit)
        raise InputError(f"{path}: a gzip file holding neither an MNIST idx file nor a tar archive")
    if _is_tar(head):
        return cifar.read_source(path, limit)
    if head[:1] in cifar.PICKLE_STARTS:
        return cifar.read_batch_file(path)
    raise InputError(f"{path}: unknown data format (expected {FORMATS})")


def load_data(path: str | os.PathLike, channels: int | None = None, size=None, limit: int | None = None) -> Dataset:
    """Load calibration / evaluation images (see the package docstring for the formats).

    `channels` and `size` (an int for square images, or (height, width)) are what the network
    takes: images of another shape are refused, never converted.  `limit` keeps the first N.
    Returns a Dataset: uint8 images N x C x H x W, int64 labels or None, the path's base name, and
    the number of classes when the format says.
    """
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise UsageError(f"data path {path!r}: give a file or folder")
    hw = check_args(channels, size, limit)
    path = Path(path)
    if path.is_dir():
        if cifar.is_cifar_folder(path):
            images, labels, classes = cifar.read_source(path, limit)
        else:
            images, labels, classes = folder.read_folder(path, limit)
    elif path.is_file():
        images, labels, classes = _read_file(path, channels, hw, limit)
    elif path.exists():
        raise InputError(f"{path}: not a regular file or folder")
    else:
        raise InputError(f"{path}: no such file or folder")
    return finish(images, labels, str(path), source_name(path), classes, channels, hw, limit)
