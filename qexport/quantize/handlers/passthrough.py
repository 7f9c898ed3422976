"""Weights that are already integer codes in the checkpoint: written as they are."""

from __future__ import annotations

from ...model import ExportTensor, Layer, LayerPlan, LayerReport, Model, PlanOptions, frozen_map
from . import Handled, canonical_layout


def handle_passthrough(model: Model, layer: Layer, lp: LayerPlan, opts: PlanOptions) -> Handled:
    h = Handled()
    w = model.tensors[layer.weight]
    h.consumed.add(layer.weight)
    h.tensors.append(ExportTensor(layer.weight, w, layer.name, "weight", "passthrough", canonical_layout(w, True),
                                  frozen_map({"note": "codes from the checkpoint"})))  # fmt: skip
    h.report = LayerReport(layer.name, "passthrough", 0)
    return h
