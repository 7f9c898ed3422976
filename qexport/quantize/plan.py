"""From an architecture's default plan and the CLI options to one LayerPlan per quantized layer.

Rules (README "Plans"):
- without `--bits` and `--plan`, nothing is quantized: every tensor is exported as trained;
- `--plan seed` applies the architecture's own plan (set on the Model by its reader; README
  "Models and readers", column "seed plan");
- `--bits` sets the scheme of every layer the plan quantizes: 1 binary, 2 ternary, 3..16 affine;
- `--only GLOB` replaces the set of quantized layers by the conv/linear layers matching GLOB;
- `--keep-float GLOB` removes matching layers (it wins over --only);
- `--layer-bits GLOB=N` gives matching layers N bits whatever the rules above gave them (a mixed
  plan: binary blocks with 8-bit ends); a layer matched by it and by --keep-float is an error;
- `--per-channel/--per-tensor`, `--alpha`, `--fold-bn` override every quantized layer;
- checkpoints that already hold integer codes get a passthrough plan and refuse all of these.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from ..errors import UsageError
from ..model import LayerPlan, Model, PlanOptions, QuantPlan

QUANT_OPTIONS = ("bits", "per_channel", "alpha", "fold_bn", "only", "layer_bits")


def scheme_for_bits(bits: int) -> str:
    return "binary" if bits == 1 else "ternary" if bits == 2 else "affine"


def _fresh(layer, scheme: str, bits: int) -> LayerPlan:
    """Defaults for a layer that gets a scheme its architecture's plan did not give it."""
    if scheme == "binary":
        return LayerPlan(layer.name, "binary", 1, per_channel=True, alpha=True)
    if scheme == "ternary":
        return LayerPlan(layer.name, "ternary", 2, per_channel=True)
    fold = bool(layer.attrs.get("bn_direct"))
    return LayerPlan(layer.name, "affine", bits, per_channel=layer.kind == "dwconv", fold_bn=fold)


def _validate(opts: PlanOptions) -> None:
    low = opts.bits is not None and opts.bits < 3 or any(b < 3 for b in opts.layer_bits.values())
    if opts.zero_point == "truncate" and low:
        raise UsageError("--zero-point truncate applies to affine plans (--bits 3..16), not to --bits 1 or 2")
    for layer, (m, s) in opts.scale_shift.items():
        if not 1 <= m < (1 << 31) or not 0 <= s <= 31:
            raise UsageError(f"--scale-shift {layer}={m},{s}: need 1 <= m < 2^31 and 0 <= s <= 31")


def as_trained(opts: PlanOptions) -> bool:
    """True when neither --bits nor --plan asks for quantization (README "Plans")."""
    if opts.bits is not None or opts.plan is not None or opts.layer_bits:
        return False
    given = [name for name in QUANT_OPTIONS if getattr(opts, name) not in (None, ())]
    given += ["scale_shift"] * bool(opts.scale_shift) + ["zero_point"] * (opts.zero_point == "truncate")
    if given:
        flags = ", ".join(dict.fromkeys("--" + g.replace("_", "-") for g in given))
        raise UsageError(f"{flags}: only used when quantizing, and without --bits or --plan every tensor is exported "
                         f"as trained; add --bits N or --plan seed (README \"Plans\")")
    return True


def make_plan(model: Model, opts: PlanOptions) -> QuantPlan:
    _validate(opts)
    if opts.plan not in (None, "seed"):
        raise UsageError(f"--plan {opts.plan!r}: the only plan is 'seed' (the architecture's own plan)")
    weighted = [layer for layer in model.layers if layer.kind in ("conv", "dwconv", "linear") and layer.weight]

    if model.integer_codes:
        given = [name for name in QUANT_OPTIONS if getattr(opts, name) not in (None, ())]
        if given:
            flags = ", ".join("--" + g.replace("_", "-") for g in given)
            raise UsageError(f"{model.source.name}: weights are already integer codes; {flags} would re-quantize them")
        return QuantPlan(tuple(LayerPlan(layer.name, "passthrough", 0) for layer in weighted), opts)
    if as_trained(opts):
        return QuantPlan((), opts)

    defaults = model.default_plan
    if opts.plan == "seed" and not defaults and opts.bits is None and not opts.only and not opts.layer_bits:
        raise UsageError(f"{model.source.name}: --plan seed: this network has no seed plan (only the documented "
                         f"architectures have one, README \"Plans\"); give --bits N")  # fmt: skip
    if opts.only:
        chosen = [layer for layer in weighted if any(fnmatchcase(layer.name, g) for g in opts.only)]
        if not chosen:
            raise UsageError(f"--only {' '.join(opts.only)} matches no conv/linear layer of {model.source.name}")
    elif defaults:
        chosen = [layer for layer in weighted if layer.name in defaults]
    else:
        chosen = weighted if opts.bits else []
    chosen = [layer for layer in chosen if not any(fnmatchcase(layer.name, g) for g in opts.keep_float)]
    explicit = _layer_bits(weighted, opts, model.source.name)
    chosen += [layer for layer in weighted if layer.name in explicit and layer not in chosen]
    chosen.sort(key=weighted.index)

    plans = []
    for layer in chosen:
        base = defaults.get(layer.name)
        bits = explicit.get(layer.name, opts.bits)
        if bits is not None:
            scheme = scheme_for_bits(bits)
            if base is None or base.scheme != scheme:
                base = _fresh(layer, scheme, bits)
            elif scheme == "affine":
                base = LayerPlan(base.layer, "affine", bits, base.per_channel, base.alpha, base.fold_bn)
        elif base is None:
            base = _fresh(layer, "affine", 8)
        plan = LayerPlan(
            layer=layer.name,
            scheme=base.scheme,
            bits=base.bits,
            per_channel=base.per_channel if opts.per_channel is None else opts.per_channel,
            alpha=(base.alpha if opts.alpha is None else opts.alpha) if base.scheme == "binary" else False,
            fold_bn=base.fold_bn if opts.fold_bn is None else opts.fold_bn,
        )
        plans.append(plan)

    planned = {p.layer: p for p in plans}
    for name in opts.scale_shift:
        p = planned.get(name)
        if p is None:
            raise UsageError(f"--scale-shift {name}: no quantized layer of that name; see `qexport inspect`")
        if p.per_channel:
            raise UsageError(f"--scale-shift {name}: the layer has one scale per channel; use --per-tensor")
        if p.scheme == "binary" and not p.alpha:
            raise UsageError(f"--scale-shift {name}: a binary layer without alpha has no scale to set")
    if opts.zero_point == "truncate" and any(p.per_channel for p in plans if p.scheme == "affine"):
        raise UsageError("--zero-point truncate reproduces seed 002's per-tensor quantizer; add --per-tensor")
    return QuantPlan(tuple(plans), opts)


def _layer_bits(weighted, opts: PlanOptions, source: str) -> dict[str, int]:
    """Layer name -> bits from --layer-bits; every GLOB must match, no layer twice with two widths."""
    explicit: dict[str, int] = {}
    for glob, bits in opts.layer_bits.items():
        matched = [layer.name for layer in weighted if fnmatchcase(layer.name, glob)]
        if not matched:
            raise UsageError(f"--layer-bits {glob}={bits} matches no conv/linear layer of {source}; "
                             f"see `qexport inspect`")  # fmt: skip
        for name in matched:
            if explicit.get(name, bits) != bits:
                raise UsageError(f"--layer-bits: layer {name} matches two globs with different bits "
                                 f"({explicit[name]} and {bits})")  # fmt: skip
            if any(fnmatchcase(name, g) for g in opts.keep_float):
                raise UsageError(f"--layer-bits {glob}={bits} and --keep-float both match layer {name}; drop one")
            explicit[name] = bits
    return explicit


def seed_unless_asked(plan_kw: dict, what: str = "golden vectors") -> str | None:
    """Golden vectors are integers: without --bits or --plan, `golden` uses --plan seed (set in
    plan_kw, so the provenance records it); returns the note saying so, or None."""
    if plan_kw.get("bits") is not None or plan_kw.get("plan") or plan_kw.get("layer_bits"):
        return None
    plan_kw["plan"] = "seed"
    return f"{what} need integers and neither --bits nor --plan was given: using --plan seed"
