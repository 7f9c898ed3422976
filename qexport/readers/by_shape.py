"""Closest documented architecture by tensor shapes (README "Models and readers").

A checkpoint that no reader claims may still be a documented network saved under other module
names (a tutorial's LeNet with `conv1 conv2 conv3 line output` instead of `c1 c3 c5 f6 output`).
Its tensors, in file order, have exactly the shapes of the documented layout, in order, each with
the same leaf name (weight, bias, running_mean, ...).  Then the note names the architecture and
the mapping of module names that makes the checkpoint readable by that reader.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .base import OPTIONAL_SUFFIXES, expected_shapes


def _layout(shapes: Mapping[str, tuple]) -> list[tuple[str, tuple]]:
    return [(k, tuple(v)) for k, v in shapes.items() if not k.endswith(OPTIONAL_SUFFIXES)]


def name_mapping(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple]) -> list[tuple[str, str]] | None:
    """[(checkpoint module, documented module), ...] when the shapes and leaf names line up one to
    one in order and at least one name differs; None otherwise."""
    have = _layout({k: tuple(v.shape) for k, v in state.items()})
    want = _layout(expected)
    if len(have) != len(want) or not have:
        return None
    pairs: dict[str, str] = {}
    for (old, old_shape), (new, new_shape) in zip(have, want):
        old_mod, _, old_leaf = old.rpartition(".")
        new_mod, _, new_leaf = new.rpartition(".")
        if old_shape != new_shape or old_leaf != new_leaf or pairs.setdefault(old_mod, new_mod) != new_mod:
            return None
    if len(set(pairs.values())) != len(pairs) or all(a == b for a, b in pairs.items()):
        return None
    return list(pairs.items())


def shape_note(state: Mapping[str, np.ndarray], detections) -> str | None:
    """The note for the first documented architecture whose layout the shapes match, or None."""
    for arch, detection in detections:
        try:
            expected = expected_shapes(arch, detection.config)
        except Exception:  # a plugin reader whose layout cannot be built: no shape comparison
            continue
        pairs = name_mapping(state, expected)
        if pairs:
            renamed = [f"{a} -> {b}" for a, b in pairs if a != b]
            shown = ", ".join(renamed[:8]) + (f", ... ({len(renamed)} in all)" if len(renamed) > 8 else "")
            return (f"the tensor shapes match the documented architecture {arch} under other names; rename the "
                    f"modules {shown} (e.g. torch.save({{new: sd[old] ...}}, 'renamed.pth')) to export it as "
                    f"{arch}; using the generic reader")  # fmt: skip
    return None
