"""Binary layers: +-1 codes, optional alpha with its (m, s), BN+sign as integer thresholds."""

from __future__ import annotations

import numpy as np

from ...model import ExportTensor, Layer, LayerPlan, LayerReport, Model, PlanOptions, frozen_map
from .. import binary, bn, dead_channels
from ..dequantize import dequantize
from ..metrics import error_stats
from ..scales import checked_int_scale
from . import Handled, bn_params, bn_tensor_names, canonical_layout

THRESHOLD_RULE = "out = +1 iff (flip ? acc <= threshold : acc >= threshold), acc = popcount dot"


def _threshold_bn(model: Model, layer: Layer, lp: LayerPlan, h: Handled, alpha: np.ndarray | None) -> None:
    """Binary layer followed by BN then sign: BN+sign become integer thresholds (README "Numerics")."""
    bn_name = layer.attrs.get("bn")
    if not (lp.fold_bn and bn_name):
        return
    if "sign" not in layer.follows or not layer.attrs.get("binary_input"):
        h.notes.append(f"{layer.name}: BN {bn_name} kept float (its output is not binarized or its input is "
                       f"not binary, so no popcount-domain threshold exists)")  # fmt: skip
        return
    if alpha is not None:
        h.notes.append(f"{layer.name}: BN {bn_name} kept float (thresholds are defined for alpha-free layers)")
        return
    gamma, beta, mean, var, eps = bn_params(model, bn_name)
    b = model.tensors.get(layer.bias) if layer.bias else None
    tau, flip = bn.bnn_thresholds(gamma, beta, mean, var, eps, bias=b, layer=layer.name)
    h.params.update(threshold=tau, flip=flip)
    h.consumed |= bn_tensor_names(model, bn_name) | ({layer.bias} if layer.bias else set())
    h.attrs["folded_bn"] = bn_name
    h.attrs["threshold_rule"] = THRESHOLD_RULE


def handle_binary(model: Model, layer: Layer, lp: LayerPlan, opts: PlanOptions) -> Handled:
    h = Handled()
    w = np.asarray(model.tensors[layer.weight], dtype=np.float32)
    h.consumed.add(layer.weight)
    codes = binary.binarize(w)
    h.params["n"] = np.asarray(int(np.prod(w.shape[1:], dtype=np.int64)), np.int32)
    alpha = None
    if lp.alpha:
        alpha = binary.binary_alpha(w, per_channel=lp.per_channel)  # per tensor: mean(|W|) in float64
        m, s, err = checked_int_scale(layer.name, alpha, opts, "alpha")
        dead = dead_channels.dead_mask(alpha, m)
        h.notes += dead_channels.note(layer.name, "alpha", alpha, dead)
        alpha = dead_channels.zeroed(alpha, dead)
        h.params.update(alpha=alpha, multiplier=m, shift=s, scale_error=err)
    h.tensors.append(ExportTensor(layer.weight, codes, layer.name, "weight", "binary",
                                  canonical_layout(codes, True), frozen_map({"values": "-1,+1"})))  # fmt: skip
    _threshold_bn(model, layer, lp, h, alpha)
    scale = np.float32(1.0) if alpha is None else alpha
    sqnr, max_err = error_stats(w, dequantize(codes, scale, np.zeros(np.shape(scale), np.int8)))
    zero_alpha = int(np.count_nonzero(alpha == 0)) if alpha is not None else 0
    worst = float(np.max(h.params["scale_error"])) if "scale_error" in h.params else None
    h.report = LayerReport(layer.name, "binary", 1, sqnr, max_err, zero_alpha_channels=zero_alpha,
                           binary_exact_zeros=binary.count_exact_zeros(w), scale_error=worst,
                           dead_channels=int(np.count_nonzero(dead)) if alpha is not None else 0)  # fmt: skip
    return h
