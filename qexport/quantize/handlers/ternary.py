"""Ternary layers: {-1, 0, +1} codes, delta and alpha per channel, alpha's (m, s)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...model import ExportTensor, Layer, LayerPlan, LayerReport, Model, PlanOptions, frozen_map
from .. import dead_channels, ternary
from ..dequantize import dequantize
from ..metrics import error_stats
from ..scales import checked_int_scale
from . import Handled, canonical_layout


def handle_ternary(model: Model, layer: Layer, lp: LayerPlan, opts: PlanOptions) -> Handled:
    h = Handled()
    w = np.asarray(model.tensors[layer.weight], dtype=np.float32)
    h.consumed.add(layer.weight)
    res = ternary.ternarize(w, per_channel=lp.per_channel)
    m, s, err = checked_int_scale(layer.name, res.alpha, opts, "alpha")
    dead = dead_channels.dead_mask(res.alpha, m)
    h.notes += dead_channels.note(layer.name, "alpha", res.alpha, dead)
    res = replace(res, alpha=dead_channels.zeroed(res.alpha, dead))
    n = int(np.prod(w.shape[1:], dtype=np.int64))
    h.params.update(delta=res.delta, alpha=res.alpha, multiplier=m, shift=s, scale_error=err,
                    n=np.asarray(n, np.int32))  # fmt: skip
    h.tensors.append(ExportTensor(layer.weight, res.codes, layer.name, "weight", "ternary",
                                  canonical_layout(res.codes, True), frozen_map({"values": "-1,0,+1"})))  # fmt: skip
    sqnr, max_err = error_stats(w, dequantize(res.codes, res.alpha, np.zeros(res.alpha.shape, np.int8)))
    h.report = LayerReport(layer.name, "ternary", 2, sqnr, max_err,
                           zero_alpha_channels=int(np.count_nonzero(res.alpha == 0)),
                           empty_ternary_channels=int(res.empty_channels), scale_error=float(np.max(err)),
                           dead_channels=int(np.count_nonzero(dead)))  # fmt: skip
    return h
