"""The fallback reader: any state_dict, no layer graph.

Every >= 2-D floating tensor named `*.weight` is a quantizable layer (conv if 4-D, linear if 2-D);
everything else is kept float.  Formats that need the graph (ONNX, golden vectors) refuse it.
"""

from __future__ import annotations

from ..model import Layer, Model, frozen_map
from .base import Detection, ReaderPlugin
from ..integer_weights import classify_integer_weights

ARCH = "generic"


def detect(state):
    return Detection(ARCH, True, 0.01)


def build(checkpoint, detection):
    integer_codes, state, notes = classify_integer_weights(checkpoint.state, checkpoint.source.name)
    layers = []
    for name, a in state.items():
        if name.endswith(".weight") and a.ndim >= 2:
            base = name[: -len(".weight")]
            bias = f"{base}.bias" if f"{base}.bias" in state else None
            kind = "conv" if a.ndim == 4 else "linear" if a.ndim == 2 else "conv"
            params = tuple(n for n in (name, bias) if n)
            layers.append(Layer(base, kind, name, bias, params, frozen_map({"out_channels": a.shape[0]})))
    return Model(ARCH, frozen_map(state), tuple(layers), checkpoint.source, frozen_map({}),
                 frozen_map(checkpoint.metadata), tuple(checkpoint.notes) + tuple(notes),
                 integer_codes=integer_codes, has_graph=False)  # fmt: skip


def default_plan(model):
    return {}  # nothing is quantized unless the user asks (--bits)


READER = ReaderPlugin(ARCH, "any state_dict (no layer graph)", detect, build, default_plan)
