"""Input images for golden vectors: image files (PNG/BMP/PGM/... via Pillow, converted to the model's
channels; the size must match), `.npy` uint8 arrays, `.npz` files with `images` (and optional
`labels`), or `--samples N` (the first N inputs; without --input, the digits test split
fixtures/digits_test.npz, LeNet only).  Always uint8 codes (N, C, H, W)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from .stages import Inputs

IMAGE_SUFFIXES = (".png", ".bmp", ".pgm", ".ppm", ".pnm", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".webp")
DIGITS_SPLIT = Path(__file__).resolve().parents[2] / "fixtures" / "digits_test.npz"


def _to_nchw(a: np.ndarray, shape: tuple[int, int, int], name: str) -> np.ndarray:
    c, h, w = shape
    if a.dtype != np.uint8:
        raise InputError(f"{name}: images must be uint8 codes 0..255, got {a.dtype}")
    if a.ndim == 2 and c == 1:
        a = a[None, None]
    elif a.ndim == 3 and c == 1:
        a = a[:, None]
    elif a.ndim == 3 and a.shape[0] == c:
        a = a[None]
    elif a.ndim == 3 and a.shape[-1] == c:
        a = a[None].transpose(0, 3, 1, 2)
    elif a.ndim == 4 and a.shape[1] == c:
        pass
    elif a.ndim == 4 and a.shape[-1] == c:
        a = a.transpose(0, 3, 1, 2)
    else:
        raise InputError(f"{name}: array of shape {a.shape} is not a set of {c}x{h}x{w} images "
                         f"(N x H x W, N x C x H x W or N x H x W x C)")  # fmt: skip
    if a.shape[2:] != (h, w):
        raise InputError(f"{name}: images are {a.shape[2]}x{a.shape[3]}, the model takes {h}x{w}")
    return np.ascontiguousarray(a)


def _read_image(path: Path, shape) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is a test dependency
        from ..errors import DependencyMissing

        raise DependencyMissing("reading image files needs Pillow: pip install pillow") from exc
    c, h, w = shape
    try:
        with Image.open(path) as img:
            img.load()
            size = img.size
            arr = np.asarray(img.convert("L" if c == 1 else "RGB"), dtype=np.uint8)
    except Exception as exc:  # Pillow raises many types for a bad file
        raise InputError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    if size != (w, h):
        raise InputError(f"{path}: image is {size[0]}x{size[1]}, the model takes {w}x{h}; resize it first")
    return _to_nchw(arr, shape, str(path))


def _read_array(path: Path, shape):
    labels = None
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "images" not in z.files:
                    raise InputError(f"{path}: .npz without an 'images' array (has: {', '.join(z.files) or 'none'})")
                images = z["images"]
                labels = z["labels"] if "labels" in z.files else None
        else:
            images = np.load(path, allow_pickle=False)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy/.npz file ({type(exc).__name__}: {exc})") from None
    images = _to_nchw(np.asarray(images), shape, str(path))
    if labels is not None:
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.shape != (images.shape[0],):
            raise InputError(f"{path}: 'labels' must be integers, one per image")
        labels = labels.astype(np.int64)
    return images, labels


def load_inputs(paths, samples: int | None, shape: tuple[int, int, int], network: str = "this network") -> Inputs:
    """The input images as uint8 (N, C, H, W) for a network taking `shape` (C, H, W), labels if
    every input has them, and their names."""
    shape = tuple(int(d) for d in shape)
    paths = [Path(p) for p in (paths or ())]
    if not paths:
        if samples is None:
            raise UsageError("give --input FILE (image, .npy or .npz) or --samples N")
        if shape != (1, 28, 28):
            raise UsageError(f"--samples without --input uses the digits test split (1 x 28 x 28), which does not "
                             f"fit {network} (input {' x '.join(map(str, shape))}); give --input")  # fmt: skip
        if not DIGITS_SPLIT.is_file():
            raise InputError(f"{DIGITS_SPLIT.name}: the digits test split is not installed; give --input")
        paths = [DIGITS_SPLIT]
    images, labels, sources = [], [], []
    for p in paths:
        if not p.is_file():
            raise InputError(f"{p}: input file not found")
        if p.suffix.lower() in (".npy", ".npz"):
            im, lab = _read_array(p, shape)
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            im, lab = _read_image(p, shape), None
        else:
            raise InputError(f"{p}: unknown input type; give an image (PNG/BMP/PGM...), .npy or .npz")
        images.append(im)
        labels.append(lab)
        sources.append(p.name)
    x = np.concatenate(images)
    y = None if any(lab is None for lab in labels) else np.concatenate(labels)
    if samples is not None:
        if samples < 1:
            raise UsageError(f"--samples {samples}: must be at least 1")
        x = x[:samples]
        y = None if y is None else y[:samples]
    if x.shape[0] == 0:
        raise InputError(f"{', '.join(sources)}: no images")
    return Inputs(np.ascontiguousarray(x), y, sources)
