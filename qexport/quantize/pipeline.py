"""quantize_model: apply a QuantPlan to a Model, giving the canonical arrays every writer writes.

Each planned layer goes to the handler of its scheme (qexport.quantize.handlers), which returns
the tensors replacing the layer's checkpoint tensors, its parameters and a report row.  Tensors
the plan does not touch pass through as they are (float32 stays float32).  Codes stay in PyTorch
order and unpacked; qexport.encode arranges them for each writer.
"""

from __future__ import annotations

from ..model import ExportTensor, Model, QuantizedModel, QuantLayer, QuantPlan, frozen_map
from .handlers import Handled, canonical_layout, handlers


def _role(name: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("running_mean", "running_var", "num_batches_tracked"):
        return "bn"
    return leaf if leaf in ("weight", "bias") else "other"


def quantize_model(model: Model, plan: QuantPlan) -> QuantizedModel:
    opts = plan.options
    by_scheme = handlers()
    layers_by_name = {layer.name: layer for layer in model.layers}
    handled: dict[str, Handled] = {}
    owner: dict[str, str] = {}  # checkpoint tensor -> layer whose handler replaced it
    for lp in plan.layers:
        h = by_scheme[lp.scheme](model, layers_by_name[lp.layer], lp, opts)
        handled[lp.layer] = h
        for name in h.consumed:
            owner[name] = lp.layer

    tensor_layer = {p: layer.name for layer in model.layers for p in layer.params}
    out: list[ExportTensor] = []
    emitted: set[str] = set()
    for name, arr in model.tensors.items():
        if name in owner:
            if owner[name] not in emitted:  # a layer's arrays go where its first tensor was
                emitted.add(owner[name])
                out.extend(handled[owner[name]].tensors)
            continue
        is_weight = name.endswith("weight") and arr.ndim == 4
        out.append(ExportTensor(name, arr, tensor_layer.get(name), _role(name),
                                "float" if arr.dtype.kind == "f" else str(arr.dtype), canonical_layout(arr, is_weight)))  # fmt: skip

    qlayers, reports, notes = [], [], []
    for lp in plan.layers:
        h = handled[lp.layer]
        layer = layers_by_name[lp.layer]
        qlayers.append(QuantLayer(lp.layer, layer.kind, lp.scheme, lp.bits, lp.per_channel, layer.weight,
                                  h.bias or (layer.bias if layer.bias not in h.consumed else None),
                                  frozen_map(h.params), frozen_map({**dict(layer.attrs), **h.attrs})))  # fmt: skip
        if h.report:
            reports.append(h.report)
        notes.extend(h.notes)
    return QuantizedModel(model, plan, tuple(out), tuple(qlayers), tuple(reports), tuple(notes))
