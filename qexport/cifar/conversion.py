"""`convert`: a CIFAR folder or archive -> one image file per picture (and labels.csv on request).

Every image is written atomically (created in a private staging folder inside its output folder,
then renamed into place) so an interrupted run leaves complete files only.  Images are not fsynced
one by one (that would cost more than the conversion itself); labels.csv goes through
`atomic_file`, which fsyncs.
"""

from __future__ import annotations

import contextlib
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import interrupts
from ..atomic import TMP_MARK, _os_error, atomic_file
from ..errors import InputError, OutputError, UsageError
from .dataset import Kind, find_default_source, folder_names, load_dataset
from .images import HEIGHT, WIDTH, _png_encoder, encode_bmp_batch

SPLITS = ("train", "test")
FORMATS = ("bmp", "png")
LAYOUTS = ("flat", "class-dirs")
CHUNK = 256  # images assembled per numpy pass (800 KB: stays in cache)

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
    """Convert a CIFAR-10/100 folder or archive to images.  See qexport.cifar's docstring and README "CIFAR-10/100 to images".

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
