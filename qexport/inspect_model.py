"""Text description of a Model for `qexport inspect`."""

from __future__ import annotations

import numpy as np

from .model import Model, PlanOptions


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""


def _range(a: np.ndarray) -> tuple[str, str]:
    if a.size == 0 or a.dtype == bool:
        return "-", "-"
    return f"{a.min():.6g}", f"{a.max():.6g}"


def inspect_text(model: Model, options: PlanOptions) -> str:
    from dataclasses import replace

    from .quantize.plan import as_trained, make_plan

    lines = [f"file:          {model.source.name}  ({_size(model.source.size)}, sha256 {model.source.sha256})"]
    lines.append(f"architecture:  {model.arch}" + (f"  {dict(model.config)}" if model.config else ""))
    if model.metadata:
        meta = ", ".join(f"{k}={v}" for k, v in model.metadata.items() if not isinstance(v, (dict, list)))
        lines.append(f"metadata:      {meta or '(nested values only)'}")
    for note in model.notes:
        lines.append(f"note:          {note}")
    lines.append("")
    lines.append(f"{'tensor':<44} {'shape':<20} {'dtype':<8} {'min':>12} {'max':>12}")
    for name, a in model.tensors.items():
        lo, hi = _range(a)
        lines.append(f"{name:<44} {str(tuple(a.shape)):<20} {str(a.dtype):<8} {lo:>12} {hi:>12}")
    lines.append("")
    trained = as_trained(options) and not model.integer_codes  # the default export quantizes nothing
    seeded = trained and bool(model.default_plan)  # a network without a seed plan shows it as trained
    plan = make_plan(model, replace(options, plan="seed") if seeded else options)
    planned = {p.layer: p for p in plan.layers}
    folded_into = {layer.attrs.get("bn"): layer.name for layer in model.layers
                   if planned.get(layer.name) and planned[layer.name].fold_bn and layer.attrs.get("bn")}  # fmt: skip
    lines.append(f"{'layer':<36} {'kind':<7} {'with --plan seed' if seeded else 'plan':<34} follows")
    for layer in model.layers:
        p = planned.get(layer.name)
        if p is None:
            what = f"folded into {folded_into[layer.name]}" if layer.name in folded_into else "float"
        elif p.scheme == "affine":
            what = f"affine uint{p.bits} " + ("per-channel" if p.per_channel else "per-tensor")
            what += " +fold-bn" if p.fold_bn and layer.attrs.get("bn") else ""
        elif p.scheme == "binary":
            what = "binary " + (("alpha per-channel" if p.per_channel else "alpha per-tensor") if p.alpha else "no alpha")
            what += " +thresholds" if p.fold_bn else ""
        elif p.scheme == "ternary":
            what = "ternary " + ("per-channel" if p.per_channel else "per-tensor")
        else:
            what = p.scheme
        lines.append(f"{layer.name:<36} {layer.kind:<7} {what:<34} {' '.join(layer.follows)}")
    n = model.parameter_count
    lines.append("")
    lines.append(f"parameters:    {n}  float32 {_size(4 * n)}  uint8 {_size(n)}  2-bit {_size(n / 4)}  1-bit {_size(n / 8)}")
    if trained:
        stored = sum(a.nbytes for a in model.tensors.values())
        lines.append(f"as trained:    {_size(stored)} written by default (every tensor as stored, nothing quantized); "
                     f"--plan seed or --bits N quantizes")  # fmt: skip
    return "\n".join(lines)
