"""Loading a PyTorch checkpoint safely into plain numpy arrays.

Always `torch.load(weights_only=True, map_location="cpu")`, memory-mapped when the file is in the
zip format, so a checkpoint can never run code and large files are not copied into memory.
Containers understood: a raw state_dict; {"state_dict": ..., "epoch", "best_prec1", ...}
(BinaryNet); {"best_acc", "state_dict"} (micronet); {"net", "acc", "epoch"}; {"model"} /
{"model_state_dict"}; a DataParallel "module." prefix.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import InputError, UnsafeInputError
from .model import Source

# Keys under which training scripts nest the state_dict, in order of preference.
STATE_KEYS = ("state_dict", "model_state_dict", "net", "model", "state", "weights")

RESAVE_HINT = (
    "re-save only the weights with torch.save(model.state_dict(), path) "
    "in the training environment and export that file"
)


@dataclass(frozen=True)
class Checkpoint:
    state: dict[str, np.ndarray]  # ordered as in the file, prefix stripped
    source: Source
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    container: str = "state_dict"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():  # reading a FIFO or device could block or never end
        raise InputError(f"{path}: is not a regular file (a device, FIFO or socket), not a checkpoint file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


TORCHSCRIPT_MEMBER = re.compile(r"[^/]+/(code/|constants\.pkl$)")
PT2_MEMBER = re.compile(r"[^/]+/(archive_format|models/[^/]+\.json)$")  # torch.export.save


def refuse_torchscript(path: Path) -> None:
    """A TorchScript archive (torch.jit.save: `<root>/code/...`, `<root>/constants.pkl`) is named
    and refused before torch sees it: it holds code, and torch's own message advises running it."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except Exception:  # a corrupt archive: torch.load reports it below
        return
    if any(PT2_MEMBER.match(n) for n in names):  # README "The network graph": .pt2 is not read
        raise UnsafeInputError(
            f"{path}: refused: a torch.export program (.pt2); torch.export.load falls back to unpickling "
            f"(weights_only=False), so qexport does not read it; save the weights with "
            f"torch.save(model.state_dict(), 'weights.pth') and give --model-def FILE.py:NAME for the module"
        )
    if any(TORCHSCRIPT_MEMBER.match(n) for n in names):
        raise UnsafeInputError(
            f"{path}: refused: a TorchScript archive (torch.jit.save), which holds code that qexport will not "
            f"execute; where you trust it, run torch.save(torch.jit.load({path.name!r}).state_dict(), "
            f"'weights.pth') and export weights.pth"
        )


def _torch_load(path: Path):
    import torch

    try:
        # is_zipfile itself raises on some corrupt end records (e.g. "spans multiple disks")
        use_mmap = zipfile.is_zipfile(path)
        if use_mmap:
            refuse_torchscript(path)
        with warnings.catch_warnings():  # torch warns on odd input; our error line says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except UnsafeInputError:
        raise
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", msg)
        if found:
            raise UnsafeInputError(
                f"{path}: refused: loading it would execute pickled code ({found.group(1)}); "
                f"qexport never unpickles objects (a whole nn.Module or a __reduce__ payload); "
                f"{RESAVE_HINT}"
            ) from exc
        detail = re.search(r"(Unsupported operand[^\n]*|invalid load key[^\n]*)", msg)
        if detail:
            raise InputError(f"{path}: not a PyTorch checkpoint ({detail.group(1)})") from exc
        raise UnsafeInputError(  # torch's own text here advises weights_only=False: never passed on
            f"{path}: refused: the pickle needs more than tensors and plain containers, which qexport never "
            f"unpickles; {RESAVE_HINT}"
        ) from exc
    except (EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__})") from exc
    except RuntimeError as exc:
        msg = _first_line(exc)
        if "zip archive" in msg or "central directory" in msg or "file not found" in msg:
            raise InputError(f"{path}: truncated or not a PyTorch checkpoint (its zip archive is incomplete or "
                             f"corrupt); copy or save the file again") from exc
        raise InputError(f"{path}: cannot read checkpoint (torch.load failed: corrupt, or not a checkpoint "
                         f"file); {RESAVE_HINT}; --debug shows torch's message") from exc
    except MemoryError as exc:
        raise InputError(f"{path}: declares tensors larger than memory; corrupt checkpoint?") from exc
    except Exception as exc:  # torch raises many types on corrupt input; none may escape raw
        raise InputError(f"{path}: cannot read checkpoint (torch.load raised {type(exc).__name__}: corrupt, or not "
                         f"a checkpoint file); {RESAVE_HINT}; --debug shows torch's message") from exc


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Container metadata reduced to JSON-friendly values (for inspect, reports, outputs)."""
    import torch

    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _jsonable(value.item(), depth)
    if depth < 3 and isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in list(value.items())[:64]}
    if depth < 3 and isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in list(value)[:64]]
    return f"<{type(value).__name__}>"


def _split_container(obj: Any, path: Path) -> tuple[Mapping, dict, str]:
    import torch

    if not isinstance(obj, Mapping):
        kind = type(obj).__name__
        raise InputError(f"{path}: holds a {kind}, not a state_dict; {RESAVE_HINT}")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}, "state_dict"
    for key in STATE_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            meta = {str(k): _jsonable(v) for k, v in obj.items() if k != key}
            return inner, meta, f"dict[{key!r}]"
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        meta = {str(k): _jsonable(v) for k, v in obj.items() if not isinstance(v, torch.Tensor)}
        return tensors, meta, "state_dict+extras"
    if not obj:
        raise InputError(f"{path}: the checkpoint is empty (no tensors)")
    keys = ", ".join(repr(k) for k in list(obj)[:6])
    raise InputError(f"{path}: no state_dict found (top-level keys: {keys}); expected tensors or one of {', '.join(STATE_KEYS)}")


def _to_numpy(name: str, t, path: Path, notes: list[str]) -> np.ndarray:
    import torch

    if t.layout != torch.strided:
        raise InputError(f"{path}: tensor {name!r} is {t.layout} (not a dense tensor); qexport reads dense tensors")
    if t.is_quantized:
        raise InputError(f"{path}: tensor {name!r} is a torch.ao quantized tensor ({t.dtype}); export the float model instead")
    if t.dtype.is_complex:
        raise InputError(f"{path}: tensor {name!r} is complex ({t.dtype}); qexport exports real tensors")
    t = t.detach()
    stored = t.untyped_storage().nbytes() // max(t.element_size(), 1)
    if t.numel() > stored:
        # Broadcast/overlapping views (stride 0) or crafted metadata: making them dense could need
        # far more memory than the file holds.
        raise InputError(f"{path}: tensor {name!r} declares {t.numel()} elements but stores only {stored} "
                         f"(a broadcast view or a corrupt file); re-save it with .contiguous()")  # fmt: skip
    if t.dtype in (torch.float16, torch.bfloat16):
        notes.append(f"{name}: {str(t.dtype).removeprefix('torch.')} converted to float32 (exact)")
        t = t.float()
    elif t.dtype == torch.float64:
        notes.append(f"{name}: float64 converted to float32 (rounded to nearest)")
        t = t.float()
    if not t.is_contiguous():
        t = t.contiguous()
    return t.numpy()


def _check_values(name: str, a: np.ndarray, path: Path) -> None:
    if a.size == 0:
        raise InputError(f"{path}: tensor {name!r} has no elements (shape {tuple(a.shape)}); nothing to export")
    if a.dtype.kind == "f":
        bad = a.size - int(np.count_nonzero(np.isfinite(a)))
        if bad:
            raise InputError(f"{path}: tensor {name!r} has {bad} non-finite value(s) (NaN/Inf); fix the checkpoint")


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read `path` into a Checkpoint of numpy arrays, or raise one clear InputError."""
    path = Path(path)
    _check_file(path)
    digest = sha256_of(path)
    obj = _torch_load(path)
    raw, metadata, container = _split_container(obj, path)

    notes: list[str] = []
    keys = [str(k) for k in raw]
    prefix = "module."
    strip = bool(keys) and all(k.startswith(prefix) for k in keys)
    if strip:
        notes.append("stripped the DataParallel 'module.' prefix from every key")
    state: dict[str, np.ndarray] = {}
    import torch

    for key, value in raw.items():
        name = str(key)[len(prefix):] if strip else str(key)
        if not isinstance(value, torch.Tensor):
            notes.append(f"{name}: not a tensor ({type(value).__name__}); ignored")
            continue
        arr = _to_numpy(name, value, path, notes)
        _check_values(name, arr, path)
        state[name] = arr
    if not state:
        raise InputError(f"{path}: the state_dict is empty (no tensors)")
    source = Source(name=path.name, sha256=digest, size=path.stat().st_size)
    return Checkpoint(state=state, source=source, metadata=metadata, notes=tuple(notes), container=container)
