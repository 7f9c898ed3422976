"""The tflite profile's graph: TFLite builtin operators on int8 tensors, in TFLite's layout.

A TflTensor is int8 (uint8 for a uint8 model input) affine: real = scale * (q - zero_point), the
scale a float32 value (what the flatbuffer stores and TFLM computes from).  Activations are NHWC
(batch 1 in the file, N in the reference executor), conv weights OHWI, depthwise weights 1HWC,
fully connected weights (out, in).  `shape` excludes the batch dimension.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np


def _frozen(d=None):
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class TflTensor:
    name: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    dtype: str = "int8"


@dataclass(frozen=True)
class TflOp:
    """One builtin operator.  `arrays`: its constant inputs (weight int8, weight_scale float32 per
    output channel or one, bias int32); `attrs`: options (stride, padding SAME/VALID, activation
    NONE/RELU/RELU6, filter, depth_multiplier, paddings)."""

    op: str
    inputs: tuple[str, ...]
    output: str
    attrs: Mapping[str, Any] = field(default_factory=_frozen)
    arrays: Mapping[str, np.ndarray] = field(default_factory=_frozen)
    source: tuple[str, ...] = ()  # the float graph's nodes this operator computes


@dataclass(frozen=True)
class TflGraph:
    tensors: Mapping[str, TflTensor]  # activations only (constants live in their op's arrays)
    ops: tuple[TflOp, ...]
    input: str
    output: str
    notes: tuple[str, ...] = ()
