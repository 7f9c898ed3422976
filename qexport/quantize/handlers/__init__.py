"""One handler per quantization scheme (hls4ml's converters are the model): each takes the
Model, one Layer, its LayerPlan and the PlanOptions and returns a Handled record of plain data.
Codes are canonical: PyTorch order (OIHW), never packed (qexport.encode arranges them)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...model import ExportTensor, LayerReport, Model


@dataclass
class Handled:
    tensors: list[ExportTensor] = field(default_factory=list)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    report: LayerReport | None = None
    consumed: set[str] = field(default_factory=set)  # checkpoint tensors replaced or absorbed
    bias: str | None = None
    notes: list[str] = field(default_factory=list)


def canonical_layout(a: np.ndarray, is_weight: bool) -> str:
    """The layout name of a canonical array: "oihw" for 4-D weights, else by rank."""
    if a.ndim == 4 and is_weight:
        return "oihw"
    return {0: "scalar", 1: "c", 2: "oi"}.get(a.ndim, "-")


def bn_params(model: Model, bn_name: str):
    t = model.tensors
    gamma = t.get(f"{bn_name}.weight")
    beta = t.get(f"{bn_name}.bias")
    mean, var = t[f"{bn_name}.running_mean"], t[f"{bn_name}.running_var"]
    eps = float(model.layer(bn_name).attrs.get("eps", 1e-5))
    return gamma, beta, mean, var, eps


def bn_tensor_names(model: Model, bn_name: str) -> set[str]:
    return set(model.layer(bn_name).params)


def handlers() -> dict:
    from .affine import handle_affine
    from .binary import handle_binary
    from .passthrough import handle_passthrough
    from .ternary import handle_ternary

    return {"affine": handle_affine, "binary": handle_binary, "ternary": handle_ternary,
            "passthrough": handle_passthrough}  # fmt: skip
