"""The records every writer writes the same way: a layer's parameters in canonical order, its
facts (folded BN, threshold rule), one-line array descriptions and the provenance lines."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..model import ExportTensor, QuantLayer
from ..names import comment_text

# Order in which per-layer parameters are written (unknown keys follow, sorted).
PARAM_ORDER = ("scale", "zero_point", "multiplier", "shift", "scale_error", "input_gain", "alpha", "delta",
               "n", "threshold", "flip")  # fmt: skip
# Facts about a layer that quantize records in QuantLayer.attrs and every writer reproduces.
LAYER_FACTS = ("folded_bn", "threshold_rule")


def param_items(layer: QuantLayer) -> list[tuple[str, np.ndarray]]:
    """A layer's parameters as (key, array) in canonical order; 0-d arrays are per-tensor values."""
    keys = [k for k in PARAM_ORDER if k in layer.params]
    keys += sorted(k for k in layer.params if k not in PARAM_ORDER)
    return [(k, np.asarray(layer.params[k])) for k in keys]


def layer_facts(layer: QuantLayer) -> list[tuple[str, str]]:
    """(key, text) of the layer facts present: which BN was folded, the threshold rule."""
    return [(key, str(layer.attrs[key])) for key in LAYER_FACTS if key in layer.attrs]


def layer_record(layer: QuantLayer) -> dict:
    """Scheme and scalar parameters of a layer as plain Python values (for JSON and metadata)."""
    out: dict = {"layer": layer.name, "scheme": layer.scheme, "bits": layer.bits, "per_channel": layer.per_channel}
    if layer.weight:
        out["weight"] = layer.weight
    if layer.bias:
        out["bias"] = layer.bias
    for key, value in param_items(layer):
        out[key] = value.item() if value.ndim == 0 else f"per-channel[{value.shape[0]}]"
    out.update(layer_facts(layer))
    return out


def array_comment(t: ExportTensor) -> str:
    """One line, safe for any comment syntax: name shape dtype scheme layout and attrs."""
    shape = "x".join(str(d) for d in t.data.shape) or "scalar"
    extra = " ".join(f"{k}={v}" for k, v in t.attrs.items())
    return comment_text(f"{t.name} {shape} {t.data.dtype} scheme={t.scheme} layout={t.layout} {extra}".strip())


def provenance_lines(model) -> list[str]:
    """'key: value' lines for file headers (of a QuantizedModel or EncodedModel); comment-safe."""
    return [comment_text(f"{k}: {v}") for k, v in model.provenance().items()]


def iter_arrays(encoded) -> Iterator[tuple[str, np.ndarray, str]]:
    """Every array a flat format writes: tensors, then per-channel layer parameters as
    `<layer>.<key>`; yields (name, array, kind) with kind "tensor" or "param"."""
    for t in encoded.tensors:
        yield t.name, t.data, "tensor"
    for layer in encoded.layers:
        for key, value in param_items(layer):
            if value.ndim:
                yield f"{layer.name}.{key}", value, "param"
