"""`.npy` and `.npz` pixel arrays, read with `np.load(allow_pickle=False)` only.

Accepted layouts of the image array (N images):

* N x C x H x W with C in (1, 3)   (what the network takes; kept as it is)
* N x H x W                        (one channel)
* N x H x W x C with C in (1, 3)   (channels last, as Pillow / matplotlib hold images)

A 4-D shape that reads both ways (both axis 1 and axis 3 are 1 or 3, e.g. N x 3 x 8 x 3) is
decided by `channels`/`size` when exactly one reading fits them, and refused otherwise.  Pixels
are uint8 0..255; another integer type is accepted when every value is in 0..255.  Floats are
refused: the normalisation is given by --mean/--std, never baked into the file.

`.npz`: the images under `images` (or `x`), the optional labels under `labels` (or `y`).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError

CHANNELS = (1, 3)
IMAGE_KEYS = ("images", "x")
LABEL_KEYS = ("labels", "y")


def _dims(shape) -> str:
    return " x ".join(map(str, shape))


def to_nchw(arr: np.ndarray, where: str, channels=None, hw=None) -> np.ndarray:
    """One of the accepted layouts -> N x C x H x W uint8 (a view where possible)."""
    if arr.dtype.kind == "f" or arr.dtype.kind == "c":
        raise InputError(f"{where}: pixels are {arr.dtype}; they must be uint8 0..255 "
                         "(the float normalisation is given by --mean/--std)")
    if arr.dtype.kind not in "iu":
        raise InputError(f"{where}: pixels are {arr.dtype}; they must be uint8 0..255")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        readings = []
        if arr.shape[1] in CHANNELS:
            readings.append(("N x C x H x W", arr))
        if arr.shape[3] in CHANNELS:
            readings.append(("N x H x W x C", arr.transpose(0, 3, 1, 2)))
        if not readings:
            raise InputError(f"{where}: images are {_dims(arr.shape)}; neither axis 1 nor axis 3 is 1 or 3 channels "
                             "(accepted: N x C x H x W, N x H x W, N x H x W x C)")
        if len(readings) > 1:
            fits = [r for r in readings if (channels is None or r[1].shape[1] == channels)
                    and (hw is None or r[1].shape[2:] == tuple(hw))]
            if len(fits) != 1 or (channels is None and hw is None):
                raise InputError(f"{where}: images are {_dims(arr.shape)}, which reads as N x C x H x W or as "
                                 "N x H x W x C; give the network's channels and size to decide")
            readings = fits
        arr = readings[0][1]
    else:
        raise InputError(f"{where}: a {arr.ndim}-D array of shape {_dims(arr.shape)}; "
                         "accepted: N x C x H x W, N x H x W, N x H x W x C")
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InputError(f"{where}: {arr.dtype} pixels run {arr.min()}..{arr.max()}; they must be in 0..255")
        arr = arr.astype(np.uint8)
    return arr


def _refusal(where: str, exc: Exception) -> InputError:
    if isinstance(exc, ValueError) and "allow_pickle" in str(exc):  # object arrays: pickle is never used
        return InputError(f"{where}: an object array, which only pickle can read; save plain uint8 arrays")
    return InputError(f"{where}: not a readable .npy/.npz array ({exc})")


READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _load(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except READ_ERRORS as exc:
        raise _refusal(str(path), exc) from None


def _member(npz, path: Path, keys: tuple, what: str):
    found = [k for k in keys if k in npz.files]
    if len(found) > 1:
        raise InputError(f"{path}: holds both {found[0]!r} and {found[1]!r}; keep one {what} array")
    if not found:
        return None, None
    try:
        return npz[found[0]], f"{path}:{found[0]}"
    except READ_ERRORS as exc:
        raise _refusal(f"{path}:{found[0]}", exc) from None


def read_npy(path: Path, channels=None, hw=None):
    """-> (images N x C x H x W, labels or None)."""
    arr = _load(path)
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise InputError(f"{path}: not a .npy array")
    return to_nchw(arr, str(path), channels, hw), None


def read_npz(path: Path, channels=None, hw=None):
    npz = _load(path)
    if isinstance(npz, np.ndarray):  # a .npy under another name: content decides
        return to_nchw(npz, str(path), channels, hw), None
    with npz:
        images, where = _member(npz, path, IMAGE_KEYS, "image")
        if images is None:
            have = ", ".join(repr(k) for k in npz.files[:5]) + (", ..." if len(npz.files) > 5 else "") or "nothing"
            raise InputError(f"{path}: no 'images' (or 'x') array; it holds {have}")
        labels, _ = _member(npz, path, LABEL_KEYS, "label")
    return to_nchw(images, where, channels, hw), labels
