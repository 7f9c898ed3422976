"""Affine unsigned layers: codes, scale, zero point, (m, s), int32 bias; BN folded when planned."""

from __future__ import annotations

import numpy as np

from ...model import ExportTensor, Layer, LayerPlan, LayerReport, Model, PlanOptions, frozen_map
from .. import affine, bias as bias_q, bn
from ..dequantize import dequantize
from ..metrics import error_stats
from ..scales import checked_int_scale, widen_tiny_scales
from . import Handled, bn_params, bn_tensor_names, canonical_layout


def handle_affine(model: Model, layer: Layer, lp: LayerPlan, opts: PlanOptions) -> Handled:
    h = Handled()
    w = np.asarray(model.tensors[layer.weight], dtype=np.float32)
    b = model.tensors.get(layer.bias) if layer.bias else None
    h.consumed |= {layer.weight} | ({layer.bias} if layer.bias else set())
    bn_name = layer.attrs.get("bn")
    if lp.fold_bn and bn_name and layer.attrs.get("bn_direct"):
        w, b = bn.fold_bn(w, b, *bn_params(model, bn_name), layer=layer.name)
        h.consumed |= bn_tensor_names(model, bn_name)
        h.attrs["folded_bn"] = bn_name
    res = affine.affine_quantize(w, bits=lp.bits, per_channel=lp.per_channel, zero_point=opts.zero_point)
    res, widened = widen_tiny_scales(layer.name, w, b, res, lp, opts)
    m, s, err = checked_int_scale(layer.name, res.scale, opts, "scale")
    h.params.update(scale=res.scale, zero_point=res.zero_point, multiplier=m, shift=s, scale_error=err,
                    input_gain=np.asarray(opts.input_gain, np.int32))  # fmt: skip
    attrs = frozen_map({"bits": lp.bits, "per_channel": lp.per_channel, "signed": False})
    h.tensors.append(ExportTensor(layer.weight, res.codes, layer.name, "weight", "affine",
                                  canonical_layout(res.codes, True), attrs))  # fmt: skip
    if b is not None:
        bq = bias_q.quantize_bias(np.asarray(b, np.float32), m, s, opts.input_gain, layer=layer.name)
        h.bias = layer.bias or f"{layer.name}.bias"
        h.tensors.append(ExportTensor(h.bias, bq, layer.name, "bias", "int32", "c",
                                      frozen_map({"formula": "round(b*G/(m/2^s))"})))  # fmt: skip
    sqnr, max_err = error_stats(w, dequantize(res.codes, res.scale, res.zero_point))
    h.report = LayerReport(layer.name, "affine", lp.bits, sqnr, max_err, saturated=int(res.saturated),
                           scale_error=float(np.max(err)), widened_channels=widened)  # fmt: skip
    if widened:
        h.notes.append(f"{layer.name}: {widened} channel scale(s) raised to the smallest value that m >> s "
                       f"and an int32 bias can represent (their weights are tiny; error still <= scale/2)")
    return h
