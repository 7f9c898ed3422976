"""`Dataset` and the checks every format shares: arguments, label range and count, limit, shape."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError


@dataclass
class Dataset:
    images: np.ndarray  # (N, C, H, W) uint8, C-contiguous
    labels: np.ndarray | None  # (N,) int64
    source: str  # base name of the path given (never an absolute path)
    classes: int | None  # number of classes when the format says (CIFAR meta, MNIST, class folders)


def source_name(path: Path) -> str:
    # "." or "dir/" have no name of their own: take the folder's real name, never its full path.
    return path.name or path.resolve().name


def check_args(channels, size, limit) -> tuple | None:
    """Validate the arguments; return `size` as (H, W) or None."""
    if channels is not None and (type(channels) is not int or channels < 1):
        raise UsageError(f"channels {channels!r}: must be a whole number, 1 or more")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise UsageError(f"limit {limit!r}: must be a whole number, 1 or more")
    if size is None:
        return None
    hw = (size, size) if type(size) is int else tuple(size) if isinstance(size, (tuple, list)) else None
    if hw is None or len(hw) != 2 or not all(type(v) is int and v >= 1 for v in hw):
        raise UsageError(f"size {size!r}: give one whole number (square images) or (height, width)")
    return hw


def check_labels(labels: np.ndarray, n: int, where: str, classes: int | None) -> np.ndarray:
    """Labels as int64 (N,): count equal to the images', each in 0..classes-1 (or >= 0 if unknown)."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise InputError(f"{where}: labels are {labels.dtype} of shape {labels.shape}, expected {n} integers")
    if len(labels) != n:
        raise InputError(f"{where}: {len(labels)} labels for {n} images")
    if labels.dtype == np.uint64 and n and labels.max() > np.iinfo(np.int64).max:
        raise InputError(f"{where}: label {int(labels.max())} is out of range")
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= classes)) if classes else np.flatnonzero(labels < 0)
    if bad.size:
        i = int(bad[0])
        span = f"0..{classes - 1} for {classes} classes" if classes else "0 or more"
        raise InputError(f"{where}: label [{i}] = {int(labels[i])} is outside {span}")
    return labels


def finish(images: np.ndarray, labels, where: str, source: str, classes, channels, hw, limit) -> Dataset:
    """Check against what the network takes, apply `limit`, and build the Dataset."""
    n, c, h, w = images.shape
    if n == 0:
        raise InputError(f"{where}: holds no images")
    if (channels is not None and channels != c) or (hw is not None and hw != (h, w)):
        if hw is None:
            got, want = f"have {c} channel{'s' * (c != 1)}", f"{channels}"
        elif channels is None:
            got, want = f"are {h} x {w}", f"{hw[0]} x {hw[1]}"
        else:
            got, want = f"are {c} x {h} x {w}", f"{channels} x {hw[0]} x {hw[1]}"
        hint = "; gray images are not turned into 3 channels silently, convert them first" if c == 1 and channels == 3 else ""
        raise InputError(f"{where}: images {got}, the network takes {want}{hint}")
    if labels is not None:
        labels = check_labels(np.asarray(labels), n, where, classes)
    if limit is not None:
        images = images[:limit]
        labels = labels[:limit] if labels is not None else None
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if not images.flags.writeable:  # idx and CIFAR bytes come in through np.frombuffer: own a copy
        images = images.copy()
    return Dataset(images, labels, source, classes)
