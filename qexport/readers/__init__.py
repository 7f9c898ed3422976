"""Reader plugins: one module per documented architecture, plus `generic`.

`read_model(path, arch=None)` loads a checkpoint and hands it to the one reader whose exact-match
rule claims it (or to `--arch`), falling back to `generic` with a note naming the closest
documented architecture (by key names, or by shapes under other names: `by_shape`).
"""

from __future__ import annotations

import os

from .. import registry
from ..errors import ArchMismatchError, QexportError
from ..model import Model


def detect_all(state) -> list:
    """Detections of every non-generic reader, best first."""
    found = []
    for name in registry.reader_names():
        if name == "generic":
            continue
        found.append((name, registry.load_reader(name).detect(state)))
    return sorted(found, key=lambda nd: -nd[1].score)


def read_model(path: str | os.PathLike, arch: str | None = None) -> Model:
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    if arch:
        reader = registry.load_reader(arch)
        detection = reader.detect(ckpt.state)
        if not detection.matches:
            raise ArchMismatchError(f"{path}: does not fit --arch {arch}: {detection.explain()}")
        return _built(reader, ckpt, detection)

    detections = detect_all(ckpt.state)
    claims = [(n, d) for n, d in detections if d.matches]
    if len(claims) > 1 and claims[0][1].score == claims[1][1].score:
        names = ", ".join(n for n, _ in claims)
        raise QexportError(f"{path}: several readers claim this checkpoint ({names}); choose one with --arch")
    if claims:
        name, detection = claims[0]
        return _built(registry.load_reader(name), ckpt, detection)
    generic = registry.load_reader("generic")
    model = _built(generic, ckpt, generic.detect(ckpt.state))
    from .by_shape import shape_note

    by_shape = shape_note(ckpt.state, detections)
    if by_shape:
        model = _with_note(model, by_shape)
    elif detections:
        name, best = detections[0]
        if best.score > 0.5:
            note = f"not a documented architecture; closest is {name} ({best.explain(3)}); using the generic reader"
            model = _with_note(model, note)
    return model


def _built(reader, ckpt, detection) -> Model:
    """The reader's Model, carrying its architecture's default plan (the plan stage reads it there)."""
    from dataclasses import replace

    from ..model import frozen_map

    model = reader.build(ckpt, detection)
    return replace(model, default_plan=frozen_map(reader.default_plan(model)))


def _with_note(model: Model, note: str) -> Model:
    from dataclasses import replace

    return replace(model, notes=model.notes + (note,))
