"""The data the golden command builds and writes: named integer arrays (stages), their inputs, and a
stage's memory-word encoding (in qexport.encode.memory's terms; the .mem and C outputs use it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..encode.memory import integer_encoding, packed_encoding, pm1_encoding


@dataclass
class Stage:
    name: str
    data: np.ndarray
    description: str
    layout: str
    layer: str | None = None
    encoding: str | None = None  # "pm1" for +-1 arrays, "packed" for packed words
    attrs: dict = field(default_factory=dict)


@dataclass
class Inputs:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray | None
    sources: list[str]  # base names


@dataclass
class Golden:
    kind: str  # "lenet-integer" | "binary-popcount"
    stages: list[Stage]
    inputs: Inputs
    notes: list[str] = field(default_factory=list)
    accuracy: float | None = None


def add_labels(g: Golden, pred: np.ndarray) -> None:
    if g.inputs.labels is not None:
        g.stages.append(Stage("label", g.inputs.labels, "label given with the input", "N"))
        g.accuracy = float(np.mean(pred == g.inputs.labels))


def stage_encoding(s: Stage) -> dict:
    """Memory-word encoding of a stage (the conventions of `qexport mem`)."""
    a = s.data
    if s.encoding == "pm1":
        return pm1_encoding()
    if s.encoding == "packed":
        return packed_encoding(a.dtype.itemsize * 8, "packed words, LSB-first, 1=+1")
    if a.dtype == np.uint8:
        return integer_encoding(8, signed=False)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    return integer_encoding(32 if -(1 << 31) <= lo and hi < (1 << 31) else 64, signed=True)  # narrowest
