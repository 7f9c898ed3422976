"""Helpers every writer shares: canonical order of layer parameters, one-line descriptions, and the
header text that records provenance.  Writers stay small by using these."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..model import ExportTensor, QuantizedModel, QuantLayer
from ..names import comment_text

# Order in which per-layer parameters are written (unknown keys follow, sorted).
PARAM_ORDER = ("scale", "zero_point", "multiplier", "shift", "scale_error", "input_gain", "alpha", "delta",
               "n", "threshold", "flip")  # fmt: skip


def param_items(layer: QuantLayer) -> list[tuple[str, np.ndarray]]:
    """A layer's parameters as (key, array) in canonical order; 0-d arrays are per-tensor values."""
    keys = [k for k in PARAM_ORDER if k in layer.params]
    keys += sorted(k for k in layer.params if k not in PARAM_ORDER)
    return [(k, np.asarray(layer.params[k])) for k in keys]


def layer_summary(layer: QuantLayer) -> dict:
    """Scheme and scalar parameters of a layer as plain Python values (for JSON, attributes, comments)."""
    out: dict = {"layer": layer.name, "scheme": layer.scheme, "bits": layer.bits, "per_channel": layer.per_channel}
    if layer.weight:
        out["weight"] = layer.weight
    if layer.bias:
        out["bias"] = layer.bias
    for key, value in param_items(layer):
        out[key] = value.item() if value.ndim == 0 else f"per-channel[{value.shape[0]}]"
    for key in ("folded_bn", "threshold_rule"):
        if key in layer.attrs:
            out[key] = layer.attrs[key]
    return out


def tensor_summary(t: ExportTensor) -> dict:
    out = {"name": t.name, "shape": list(t.data.shape), "dtype": str(t.data.dtype), "scheme": t.scheme,
           "role": t.role, "layout": t.layout}  # fmt: skip
    if t.layer:
        out["layer"] = t.layer
    out.update({k: (v.item() if isinstance(v, np.generic) else v) for k, v in t.attrs.items()})
    return out


def describe(t: ExportTensor) -> str:
    """One line, safe for any comment syntax: name shape dtype scheme layout and attrs."""
    shape = "x".join(str(d) for d in t.data.shape) or "scalar"
    extra = " ".join(f"{k}={v}" for k, v in t.attrs.items())
    return comment_text(f"{t.name} {shape} {t.data.dtype} scheme={t.scheme} layout={t.layout} {extra}".strip())


def provenance_lines(qmodel: QuantizedModel) -> list[str]:
    """'key: value' lines for file headers; comment-safe."""
    return [comment_text(f"{k}: {v}") for k, v in qmodel.provenance().items()]


def iter_arrays(qmodel: QuantizedModel) -> Iterator[tuple[str, np.ndarray, str]]:
    """Every array a flat format writes: tensors, then per-channel layer parameters as
    `<layer>.<key>`; yields (name, array, kind) with kind "tensor" or "param"."""
    for t in qmodel.tensors:
        yield t.name, t.data, "tensor"
    for layer in qmodel.layers:
        for key, value in param_items(layer):
            if value.ndim:
                yield f"{layer.name}.{key}", value, "param"
