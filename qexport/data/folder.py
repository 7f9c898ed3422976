"""A folder of BMP / PNG images, read with Pillow in a sorted, deterministic order.

Labels, by the folder's structure:

* class sub-folders `folder/<class>/*.png`: label = position of <class> among the sub-folders
  sorted by name (the CIFAR-10/100 class names are in that order already); images sorted by name
  within each class;
* flat, every image named `{label}_{index}.{ext}` as `qexport cifar-bmp` writes a split folder
  (label and index without leading zeros, e.g. `3_1024.bmp`): labels from the names, images in
  index order;
* flat with other names: no labels, images sorted by name.

Only `.bmp` / `.png` files are read (case-insensitive), one level deep; other files, deeper
folders and hidden entries are left alone.  Every image must have the mode (L = 1 channel, RGB = 3) and size of the first one.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import DependencyMissing, InputError

SUFFIXES = (".bmp", ".png")
FORMATS = {".bmp": "BMP", ".png": "PNG"}
MODES = {"L": 1, "RGB": 3}
SPLIT_NAMES = {"train", "test"}
# cifar-bmp's flat naming: f"{label}_{index}.{fmt}" (qexport/cifar/conversion.py), no zero padding.
CIFAR_NAME = re.compile(r"(0|[1-9][0-9]*)_(0|[1-9][0-9]*)\.(bmp|png)")


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _images_in(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if _visible(p) and p.is_file() and p.suffix.lower() in SUFFIXES)


def _listing(folder: Path):
    """-> (files in order, labels or None, classes or None)."""
    files = _images_in(folder)
    subdirs = sorted(p for p in folder.iterdir() if _visible(p) and p.is_dir())
    if subdirs and files:
        raise InputError(f"{folder}: holds both images ({files[0].name}) and sub-folders ({subdirs[0].name}); "
                         "put every image in a class sub-folder or none")
    if subdirs:
        if {p.name for p in subdirs} == SPLIT_NAMES:
            raise InputError(f"{folder}: holds train/ and test/ split folders, not classes; point at one of them")
        out, labels = [], []
        for label, sub in enumerate(subdirs):
            found = _images_in(sub)
            out += found
            labels += [label] * len(found)
        if not out:
            raise InputError(f"{folder}: no .bmp or .png images in its sub-folders")
        return out, np.array(labels, np.int64), len(subdirs)
    if not files:
        raise InputError(f"{folder}: no .bmp or .png images (and no class sub-folders)")
    parsed = [CIFAR_NAME.fullmatch(p.name) for p in files]
    if not any(parsed):
        return files, None, None
    if not all(parsed):
        odd = files[[m is None for m in parsed].index(True)]
        good = files[[m is not None for m in parsed].index(True)]
        raise InputError(f"{odd}: not named {{label}}_{{index}}.{{ext}} like {good.name}; "
                         "rename it or move it out so every label is known")
    index = {}
    for p, m in zip(files, parsed):
        i = int(m.group(2))
        if i in index:
            raise InputError(f"{p}: image index {i} also used by {index[i].name}")
        index[i] = p
    order = sorted(range(len(files)), key=lambda k: int(parsed[k].group(2)))
    return [files[k] for k in order], np.array([int(parsed[k].group(1)) for k in order], np.int64), None


def _open(path: Path, image_module):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image_module.DecompressionBombWarning)
            with image_module.open(path) as im:
                fmt, mode = im.format, im.mode
                if fmt != FORMATS[path.suffix.lower()]:
                    raise InputError(f"{path}: holds a {fmt or 'unknown'} image, not {FORMATS[path.suffix.lower()]}")
                if mode not in MODES:
                    raise InputError(f"{path}: {mode} image; only L (gray) and RGB images are read")
                return np.asarray(im), mode
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombWarning,
            image_module.DecompressionBombError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


def read_folder(folder: Path, limit: int | None = None):
    """-> (images N x C x H x W, labels or None, classes or None); only the first `limit` images
    are decoded (the names of all are still checked)."""
    try:
        from PIL import Image
    except ImportError:
        raise DependencyMissing("reading a folder of images needs Pillow: pip install pillow") from None
    files, labels, classes = _listing(folder)
    if limit is not None:
        files, labels = files[:limit], labels[:limit] if labels is not None else None
    first, mode = _open(files[0], Image)
    h, w = first.shape[:2]
    images = np.empty((len(files), MODES[mode], h, w), np.uint8)
    for k, path in enumerate(files):
        arr, m = (first, mode) if k == 0 else _open(path, Image)
        if m != mode or arr.shape[:2] != (h, w):
            raise InputError(f"{path}: {arr.shape[1]} x {arr.shape[0]} pixels {m}, but {files[0]} is {w} x {h} pixels "
                             f"{mode} (width x height, mode); every image must have the same size and mode")
        images[k] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return images, labels, classes
