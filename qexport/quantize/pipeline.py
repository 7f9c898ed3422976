"""quantize_model: apply a QuantPlan to a Model, giving the arrays every writer writes.

One small handler per scheme (hls4ml style), each returning plain data: the export tensors that
replace the layer's checkpoint tensors, the QuantLayer parameters and a LayerReport.  Tensors not
touched by the plan are passed through as they are (float32 stays float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import PlanError
from ..model import (ExportTensor, Layer, LayerPlan, LayerReport, Model, PlanOptions, QuantizedModel,
                     QuantLayer, QuantPlan, frozen_map)  # fmt: skip
from . import affine, bias as bias_q, binary, bn, chunks, dead_channels, intscale, pack, ternary


@dataclass
class Handled:
    tensors: list[ExportTensor] = field(default_factory=list)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    report: LayerReport | None = None
    consumed: set[str] = field(default_factory=set)  # checkpoint tensors replaced or absorbed
    bias: str | None = None
    notes: list[str] = field(default_factory=list)


def layout_of(a: np.ndarray, opts: PlanOptions, is_weight: bool) -> str:
    if a.ndim == 4 and is_weight:
        return opts.layout
    return {0: "scalar", 1: "c", 2: "oi"}.get(a.ndim, "-")


def in_layout(a: np.ndarray, opts: PlanOptions) -> np.ndarray:
    return pack.to_layout(a, opts.layout) if a.ndim == 4 else a


def error_stats(w: np.ndarray, deq: np.ndarray) -> tuple[float | None, float]:
    """SQNR in dB (None when the error is exactly zero) and the max abs error, in float64.

    C-contiguous float arrays of one shape are processed block by block (no float64 copy of the
    tensor), with numpy's pairwise summation order kept, so the values are those of the
    whole-array formulas below, bit for bit."""
    w, deq = np.asarray(w), np.asarray(deq)
    if (w.shape == deq.shape and w.size and w.dtype.kind == "f" and deq.dtype.kind == "f"
            and w.flags.c_contiguous and deq.flags.c_contiguous):  # fmt: skip
        noise, signal, max_err = _error_sums(w.reshape(1, -1), deq.reshape(1, -1))
    else:
        w64, e64 = w.astype(np.float64), w.astype(np.float64) - deq.astype(np.float64)
        noise = float(np.sum(e64 * e64))
        signal = float(np.sum(w64 * w64))
        max_err = float(np.max(np.abs(e64))) if e64.size else 0.0
    if noise == 0.0:
        return None, max_err
    if signal == 0.0:
        return float("-inf"), max_err
    return float(10.0 * np.log10(signal / noise)), max_err


def _error_sums(w: np.ndarray, deq: np.ndarray) -> tuple[float, float, float]:
    """(sum e^2, sum w^2, max |e|) over rows (1, N), e = w - deq in float64, in blocks."""
    grid = chunks.Grid(*w.shape)

    def kernel(b):
        x, d = w[:, b[2]:b[3]], deq[:, b[2]:b[3]]
        e = chunks.scratch(x.shape, np.float64)
        sq = chunks.scratch(x.shape, np.float64, slot=1)
        np.subtract(x, d, out=e, dtype=np.float64)
        max_err = max(float(e.max()), -float(e.min()))
        np.multiply(e, e, out=sq)
        noise = np.add.reduce(sq, axis=1)
        np.multiply(x, x, out=sq, dtype=np.float64)
        return noise, np.add.reduce(sq, axis=1), max_err

    parts = grid.map(kernel)
    noise = grid.row_sums([p[0] for p in parts])[0]
    signal = grid.row_sums([p[1] for p in parts])[0]
    return float(noise), float(signal), max(p[2] for p in parts)


def _int_scale(layer: str, scale: np.ndarray, opts: PlanOptions, what: str):
    """(m, s, relative error) for a run-time float scale, checked against --max-scale-error."""
    if layer in opts.scale_shift:
        m_val, s_val = opts.scale_shift[layer]
        m = np.full(scale.shape, m_val, np.int32)
        s = np.full(scale.shape, s_val, np.int32)
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.abs(m / np.exp2(s.astype(np.float64)) - scale) / scale
        return m, s, err  # an explicit override is the user's choice: reported, not refused
    m, s, err = intscale.integer_scale(scale.astype(np.float64), opts.mult_bits)
    m, s, err = dead_channels.zero_dead(scale, m, s, err, opts.max_scale_error)  # exact zeros (m = 0)
    if err.size and float(np.max(err)) > opts.max_scale_error:
        raise PlanError(dead_channels.scale_error_message(layer, what, scale, m, s, err, opts))
    return m, s, err


def _bn_params(model: Model, bn_name: str):
    t = model.tensors
    gamma = t.get(f"{bn_name}.weight")
    beta = t.get(f"{bn_name}.bias")
    mean, var = t[f"{bn_name}.running_mean"], t[f"{bn_name}.running_var"]
    eps = float(model.layer(bn_name).attrs.get("eps", 1e-5))
    return gamma, beta, mean, var, eps


def _bn_tensor_names(model: Model, bn_name: str) -> set[str]:
    return set(model.layer(bn_name).params)


def scale_floor(b, opts: PlanOptions, per_channel: bool, channels: int) -> np.ndarray:
    """Smallest affine scale the integer pass can use: m >> s within --max-scale-error needs
    S >= m_min / 2^31 (m_min = ceil(1 / (2 * max error)), capped at 2^M - 1), and the int32 bias
    round(b * G / S) needs S >= |b| * G / (2^31 - 1) (with the (m, s) error as margin)."""
    err = max(opts.max_scale_error, 1e-12)
    m_min = min(int(np.ceil(0.5 / err)), (1 << opts.mult_bits) - 1)
    floor = np.full(channels if per_channel else (), m_min / 2.0**31)
    if b is not None:
        need = np.abs(np.asarray(b, np.float64)) * opts.input_gain * (1 + err) * (1 + 1e-6) / (2.0**31 - 1)
        floor = np.maximum(floor, need if per_channel else need.max(initial=0.0))
    return floor


def _widen_tiny_scales(name: str, w, b, res, lp: LayerPlan, opts: PlanOptions):
    """Raise scales below scale_floor (dead or near-dead channels, e.g. BN gamma ~ 0 after folding)."""
    floor = scale_floor(b, opts, lp.per_channel, w.shape[0])
    low = res.scale.astype(np.float64) < floor
    if not low.any():
        return res, 0
    if opts.zero_point == "truncate":
        raise PlanError(f"layer {name}: its scale {float(np.min(res.scale)):.3g} is too small for m >> s or an "
                        f"int32 bias; --zero-point truncate cannot change it (use the default rounding mode)")  # fmt: skip
    qmax = (1 << lp.bits) - 1
    scale = np.where(low, np.nextafter(floor.astype(np.float32), np.float32(np.inf)), res.scale).astype(np.float32)
    rows = w.reshape(w.shape[0], -1) if lp.per_channel else w.reshape(1, -1)
    lo = np.minimum(rows.min(axis=1), 0).astype(np.float64)
    lo = lo if lp.per_channel else lo.reshape(())
    zp = np.where(low, np.clip(np.rint(-lo / scale.astype(np.float64)), 0, qmax), res.zero_point).astype(np.int32)
    codes = affine.quantize_with(w, scale, zp, lp.bits)
    return affine.AffineResult(codes, scale, zp, res.saturated), int(np.count_nonzero(low))


def handle_affine(model: Model, layer: Layer, lp: LayerPlan, opts: PlanOptions) -> Handled:
    h = Handled()
    w = np.asarray(model.tensors[layer.weight], dtype=np.float32)
    b = model.tensors.get(layer.bias) if layer.bias else None
    h.consumed |= {layer.weight} | ({layer.bias} if layer.bias else set())
    bn_name = layer.attrs.get("bn")
    if lp.fold_bn and bn_name and layer.attrs.get("bn_direct"):
        w, b = bn.fold_bn(w, b, *_bn_params(model, bn_name), layer=layer.name)
        h.consumed |= _bn_tensor_names(model, bn_name)
        h.attrs["folded_bn"] = bn_name
    res = affine.affine_quantize(w, bits=lp.bits, per_channel=lp.per_channel, zero_point=opts.zero_point)
    res, widened = _widen_tiny_scales(layer.name, w, b, res, lp, opts)
    m, s, err = _int_scale(layer.name, res.scale, opts, "scale")
    h.params.update(scale=res.scale, zero_point=res.zero_point, multiplier=m, shift=s, scale_error=err,
                    input_gain=np.asarray(opts.input_gain, np.int32))  # fmt: skip
    attrs = frozen_map({"bits": lp.bits, "per_channel": lp.per_channel, "signed": False})
    h.tensors.append(ExportTensor(layer.weight, in_layout(res.codes, opts), layer.name, "weight", "affine",
                                  layout_of(res.codes, opts, True), attrs))  # fmt: skip
    if b is not None:
        bq = bias_q.quantize_bias(np.asarray(b, np.float32), m, s, opts.input_gain, layer=layer.name)
        h.bias = layer.bias or f"{layer.name}.bias"
        h.tensors.append(ExportTensor(h.bias, bq, layer.name, "bias", "int32", "c",
                                      frozen_map({"formula": "round(b*G/(m/2^s))"})))  # fmt: skip
    sqnr, max_err = error_stats(w, affine.dequantize(res.codes, res.scale, res.zero_point))
    h.report = LayerReport(layer.name, "affine", lp.bits, sqnr, max_err, saturated=int(res.saturated),
                           scale_error=float(np.max(err)), widened_channels=widened)  # fmt: skip
    if widened:
        h.notes.append(f"{layer.name}: {widened} channel scale(s) raised to the smallest value that m >> s "
                       f"and an int32 bias can represent (their weights are tiny; error still <= scale/2)")
    return h


def _packed_binary(name: str, codes: np.ndarray, layer: str, opts: PlanOptions) -> ExportTensor:
    words, n = pack.pack_binary(codes, opts.word_bits, opts.layout)
    attrs = {"word_bits": opts.word_bits, "bit_order": "lsb-first", "n": int(n), "encoding": "1=+1,0=-1",
             "layout": opts.layout if codes.ndim == 4 else "oi", "padding": "0"}  # fmt: skip
    return ExportTensor(f"{name}.packed", words, layer, "packed", "binary", "words", frozen_map(attrs))


def _threshold_bn(model: Model, layer: Layer, lp: LayerPlan, h: Handled, alpha: np.ndarray | None) -> None:
    """Binary layer followed by BN then sign: BN+sign become integer thresholds (SPEC §4)."""
    bn_name = layer.attrs.get("bn")
    follows = layer.follows
    if not (lp.fold_bn and bn_name):
        return
    if "sign" not in follows or not layer.attrs.get("binary_input"):
        h.notes.append(f"{layer.name}: BN {bn_name} kept float (its output is not binarized or its input is "
                       f"not binary, so no popcount-domain threshold exists)")  # fmt: skip
        return
    if alpha is not None:
        h.notes.append(f"{layer.name}: BN {bn_name} kept float (thresholds are defined for alpha-free layers)")
        return
    gamma, beta, mean, var, eps = _bn_params(model, bn_name)
    b = model.tensors.get(layer.bias) if layer.bias else None
    tau, flip = bn.bnn_thresholds(gamma, beta, mean, var, eps, bias=b, layer=layer.name)
    h.params.update(threshold=tau, flip=flip)
    h.consumed |= _bn_tensor_names(model, bn_name) | ({layer.bias} if layer.bias else set())
    h.attrs["folded_bn"] = bn_name
    h.attrs["threshold_rule"] = "out = +1 iff (flip ? acc <= threshold : acc >= threshold), acc = popcount dot"


def handle_binary(model: Model, layer: Layer, lp: LayerPlan, opts: PlanOptions) -> Handled:
    h = Handled()
    w = np.asarray(model.tensors[layer.weight], dtype=np.float32)
    h.consumed.add(layer.weight)
    codes = binary.binarize(w)
    n = int(np.prod(w.shape[1:], dtype=np.int64))
    h.params["n"] = np.asarray(n, np.int32)
    alpha = None
    if lp.alpha:
        if lp.per_channel:
            alpha = binary.binary_alpha(w)
        else:
            alpha = binary.binary_alpha(w, per_channel=False)  # mean(|W|) in float64
        m, s, err = _int_scale(layer.name, alpha, opts, "alpha")
        dead = dead_channels.dead_mask(alpha, m)
        h.notes += dead_channels.note(layer.name, "alpha", alpha, dead)
        alpha = dead_channels.zeroed(alpha, dead)
        h.params.update(alpha=alpha, multiplier=m, shift=s, scale_error=err)
    h.tensors.append(ExportTensor(layer.weight, in_layout(codes, opts), layer.name, "weight", "binary",
                                  layout_of(codes, opts, True), frozen_map({"values": "-1,+1"})))  # fmt: skip
    if opts.pack:
        h.tensors.append(_packed_binary(layer.weight, codes, layer.name, opts))
    _threshold_bn(model, layer, lp, h, alpha)
    deq = codes.astype(np.float32) if alpha is None else codes * _per_channel(alpha, codes.ndim)
    sqnr, max_err = error_stats(w, deq)
    zero_alpha = int(np.count_nonzero(alpha == 0)) if alpha is not None else 0
    worst = float(np.max(h.params["scale_error"])) if "scale_error" in h.params else None
    h.report = LayerReport(layer.name, "binary", 1, sqnr, max_err, zero_alpha_channels=zero_alpha,
                           binary_exact_zeros=binary.count_exact_zeros(w), scale_error=worst,
                           dead_channels=int(np.count_nonzero(dead)) if alpha is not None else 0)  # fmt: skip
    return h


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((-1,) + (1,) * (ndim - 1)) if v.ndim == 1 else v


def handle_ternary(model: Model, layer: Layer, lp: LayerPlan, opts: PlanOptions) -> Handled:
    h = Handled()
    w = np.asarray(model.tensors[layer.weight], dtype=np.float32)
    h.consumed.add(layer.weight)
    res = ternary.ternarize(w, per_channel=lp.per_channel)
    m, s, err = _int_scale(layer.name, res.alpha, opts, "alpha")
    dead = dead_channels.dead_mask(res.alpha, m)
    h.notes += dead_channels.note(layer.name, "alpha", res.alpha, dead)
    res = replace(res, alpha=dead_channels.zeroed(res.alpha, dead))
    n = int(np.prod(w.shape[1:], dtype=np.int64))
    h.params.update(delta=res.delta, alpha=res.alpha, multiplier=m, shift=s, scale_error=err,
                    n=np.asarray(n, np.int32))  # fmt: skip
    h.tensors.append(ExportTensor(layer.weight, in_layout(res.codes, opts), layer.name, "weight", "ternary",
                                  layout_of(res.codes, opts, True), frozen_map({"values": "-1,0,+1"})))  # fmt: skip
    if opts.pack:
        packed = pack.pack_ternary(res.codes, opts.word_bits, opts.layout, opts.ternary_pack)
        for key, arr in packed.items():
            attrs = {"word_bits": 8 if key == "base3" else opts.word_bits, "n": n, "mode": opts.ternary_pack,
                     "plane": key, "bit_order": "digit j weighs 3**j" if key == "base3" else "lsb-first",
                     "layout": opts.layout if w.ndim == 4 else "oi", "padding": "0",
                     "encoding": TERNARY_ENCODINGS[key]}  # fmt: skip
            h.tensors.append(ExportTensor(f"{layer.weight}.{key}", arr, layer.name, "packed", "ternary", "words",
                                          frozen_map(attrs)))  # fmt: skip
    deq = res.codes * _per_channel(res.alpha, w.ndim)
    sqnr, max_err = error_stats(w, deq)
    h.report = LayerReport(layer.name, "ternary", 2, sqnr, max_err,
                           zero_alpha_channels=int(np.count_nonzero(res.alpha == 0)),
                           empty_ternary_channels=int(res.empty_channels), scale_error=float(np.max(err)),
                           dead_channels=int(np.count_nonzero(dead)))  # fmt: skip
    return h


TERNARY_ENCODINGS = {
    "nonzero": "bit=1 where t!=0 (lsb-first)",
    "positive": "bit=1 where t=+1 (lsb-first)",
    "codes": "2-bit codes 00=0 01=+1 11=-1 (lsb-first)",
    "base3": "5 trits per byte, byte=sum(d_j*3^j), d=t mod 3 (0,+1->1,-1->2)",
}


def handle_passthrough(model: Model, layer: Layer, lp: LayerPlan, opts: PlanOptions) -> Handled:
    h = Handled()
    w = model.tensors[layer.weight]
    h.consumed.add(layer.weight)
    h.tensors.append(ExportTensor(layer.weight, in_layout(w, opts), layer.name, "weight", "passthrough",
                                  layout_of(w, opts, True), frozen_map({"note": "codes from the checkpoint"})))  # fmt: skip
    h.report = LayerReport(layer.name, "passthrough", 0)
    return h


HANDLERS = {"affine": handle_affine, "binary": handle_binary, "ternary": handle_ternary,
            "passthrough": handle_passthrough}  # fmt: skip


def _role(name: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("running_mean", "running_var", "num_batches_tracked"):
        return "bn"
    return leaf if leaf in ("weight", "bias") else "other"


def quantize_model(model: Model, plan: QuantPlan) -> QuantizedModel:
    opts = plan.options
    layers_by_name = {layer.name: layer for layer in model.layers}
    handled: dict[str, Handled] = {}
    owner: dict[str, str] = {}  # checkpoint tensor -> layer whose handler replaced it
    for lp in plan.layers:
        layer = layers_by_name[lp.layer]
        h = HANDLERS[lp.scheme](model, layer, lp, opts)
        handled[lp.layer] = h
        for name in h.consumed:
            owner[name] = lp.layer

    tensor_layer = {p: layer.name for layer in model.layers for p in layer.params}
    out: list[ExportTensor] = []
    emitted: set[str] = set()
    for name, arr in model.tensors.items():
        if name in owner:
            h = handled[owner[name]]
            if owner[name] not in emitted:  # a layer's arrays go where its first tensor was
                emitted.add(owner[name])
                out.extend(h.tensors)
            continue
        is_weight = name.endswith("weight") and arr.ndim == 4
        data = in_layout(arr, opts) if is_weight else arr
        out.append(ExportTensor(name, data, tensor_layer.get(name), _role(name),
                                "float" if arr.dtype.kind == "f" else str(arr.dtype), layout_of(arr, opts, is_weight)))  # fmt: skip

    qlayers, reports, notes = [], [], []
    for lp in plan.layers:
        h = handled[lp.layer]
        layer = layers_by_name[lp.layer]
        qlayers.append(QuantLayer(lp.layer, layer.kind, lp.scheme, lp.bits, lp.per_channel, layer.weight,
                                  h.bias or (layer.bias if layer.bias not in h.consumed else None),
                                  frozen_map(h.params),
                                  frozen_map({**dict(layer.attrs), **h.attrs})))  # fmt: skip
        if h.report:
            reports.append(h.report)
        notes.extend(h.notes)
    return QuantizedModel(model, plan, tuple(out), tuple(qlayers), tuple(reports), tuple(notes))
