"""Atomic outputs: write to a temporary name in the target folder, rename into place on success.

A failure (exception, SIGINT, SIGTERM turned into an exception by the CLI) removes the temporary
file, so no partial output exists and a previous good output is never clobbered.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from . import interrupts
from .errors import OutputError

TMP_MARK = ".qexport-tmp-"


def _check_parent(target: Path) -> Path:
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        if parent.exists():
            raise OutputError(f"{target}: {parent} is not a folder")
        raise OutputError(f"{target}: output folder {parent} does not exist")
    return parent


def check_output_folder(target: str | os.PathLike) -> None:
    """Fail early (before any loading or quantizing) when `target` cannot be created at all."""
    _check_parent(Path(target))


def _os_error(target: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"{target}: no space left on device; nothing was written")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{target}: permission denied; choose a writable output with -o")
    return OutputError(f"{target}: cannot write: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `target`; on clean exit fsync and rename it to `target`."""
    with atomic_path(target) as tmp:
        with open(tmp, mode, newline=None if "b" in mode else "\n") as fh:
            yield fh


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary file *name* beside `target` (for libraries that want a name: scipy.io.savemat,
    h5py, onnx); on clean exit the file is fsynced and renamed to `target`."""
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"{target}: is a directory; give a file name with -o")
    if target.exists() and not target.is_file():
        # The rename would put a regular file in place of a device or FIFO (-o /dev/null as root).
        raise OutputError(f"{target}: exists and is not a regular file (a device, FIFO or socket); "
                          f"give a file name with -o")
    parent = _check_parent(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + target.name + TMP_MARK, dir=parent)
        os.close(fd)
    except OSError as exc:
        raise _os_error(target, exc) from exc
    try:
        yield Path(tmp)
        _fsync(tmp)  # the rename must never expose a file whose data is not on disk yet
        os.chmod(tmp, 0o644)
        interrupts.check()
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        raise _os_error(target, exc) from exc
    except BaseException:
        _remove(tmp)
        raise


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary name; on success swap it in place of `target`.

    An existing `target` folder is replaced only after the new one is complete, and only when it
    holds nothing the new one does not (a previous run of the same export): a folder of other
    files given by mistake to -o is refused, never deleted.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target}: exists and is not a directory; choose another -o")
    parent = _check_parent(target)
    try:
        tmp = Path(tempfile.mkdtemp(prefix="." + target.name + TMP_MARK, dir=parent))
    except OSError as exc:
        raise _os_error(target, exc) from exc
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        interrupts.check()
        if target.exists():
            _check_replaceable(target, tmp)
            old = Path(tempfile.mkdtemp(prefix="." + target.name + TMP_MARK + "old-", dir=parent))
            os.rmdir(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _os_error(target, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_replaceable(target: Path, new: Path) -> None:
    """Refuse to replace `target` if it holds an entry (file, folder, link) that `new` does not."""
    for folder, dirs, files in os.walk(target):
        dirs[:] = [d for d in dirs if not Path(folder, d).samefile(new)]  # -o . builds inside target
        for name in sorted(dirs) + sorted(files):
            old = Path(folder, name)
            rel = old.relative_to(target)
            twin = new / rel
            same_kind = twin.is_dir() == old.is_dir() and not twin.is_symlink()
            if old.is_symlink() or not twin.exists() or not same_kind:
                raise OutputError(
                    f"{target}: folder exists and holds {rel.as_posix()}, which this export does not write; "
                    f"qexport replaces only its own previous output: choose another -o or remove the folder"
                )


def _remove(path: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
