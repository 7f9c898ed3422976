"""CIFAR-10/100 python pickles through qexport.cifar (its allow-listed unpickler and validation).

* one batch file (`data_batch_1`, `test_batch`, CIFAR-100 `train` / `test`): its images; the kind
  is told by the labels key (`labels` -> CIFAR-10, `fine_labels` -> CIFAR-100);
* a `cifar-10-batches-py` / `cifar-100-python` folder or the `.tar.gz`: its test split (point at
  a batch file for training images).

Labels are CIFAR-100's fine labels; `classes` is 10 or 100.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cifar.dataset import CIFAR10, CIFAR100, KINDS, MAX_MEMBER_BYTES, batch_from_dict, load_dataset
from ..cifar.unpickle import load_pickle
from ..errors import InputError

SHAPE = (3, 32, 32)
PICKLE_STARTS = (b"\x80", b"(", b"}")  # PROTO (protocols 2-5); MARK / EMPTY_DICT (protocols 0, 1)


def is_cifar_folder(folder: Path) -> bool:
    """True when `folder` holds any file a CIFAR-10 or CIFAR-100 folder has (as qexport.cifar checks)."""
    return any((folder / n).is_file() for k in KINDS for n in (*k.batches["train"], *k.batches["test"], k.meta))


def _images(data: np.ndarray) -> np.ndarray:
    return data.reshape(-1, *SHAPE)  # rows are R, G, B planes of 32 x 32: already N x C x H x W


def read_batch_file(path: Path):
    """-> (images, labels, classes) of one batch file."""
    where = str(path)
    if path.stat().st_size > MAX_MEMBER_BYTES:
        raise InputError(f"{where}: {path.stat().st_size} bytes, far larger than any CIFAR file")
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{where}: cannot read: {exc.strerror or exc}") from None
    with fh:
        d = load_pickle(fh, where)
    kind = CIFAR100 if "fine_labels" in d else CIFAR10
    if "data" in d and "labels" not in d and "fine_labels" not in d:
        raise InputError(f"{where}: no 'labels' (CIFAR-10) or 'fine_labels' (CIFAR-100) entry")
    batch = batch_from_dict(d, where, kind)
    return _images(batch.data), batch.labels["fine"], kind.classes["fine"]


def read_source(path: Path, limit: int | None):
    """-> (images, labels, classes) of the test split of a CIFAR folder or archive."""
    ds = load_dataset(path, ("test",), limit)
    batches = ds.batches["test"]
    if not batches:
        raise InputError(f"{path}: no test batch")
    data = np.concatenate([b.data for b in batches]) if len(batches) > 1 else batches[0].data
    labels = np.concatenate([b.labels["fine"] for b in batches])
    return _images(data), labels, ds.kind.classes["fine"]
