"""ONNX writer (`qexport onnx`): the documented architecture as an ONNX graph.

How the graph is made (README "ONNX"):

1. qexport's own torch module for the architecture (`qexport.models.build(arch, config)`) is
   loaded with the weights the QuantizedModel stands for: float tensors as they are, quantized
   weights *dequantized* (affine `scale * (q - Z)`, binary `+-1` or `+-alpha_c`, ternary
   `alpha_c * t`), affine int32 biases as `b_q * (m / 2^s) / G`.  A BatchNorm folded by an affine
   plan becomes `nn.Identity` (the conv carries the folded bias); a BatchNorm turned into BNN
   thresholds by a binary plan becomes a threshold module (`+1` where `acc >= tau`, or `acc <= tau`
   where flip = 1, else `-1`) and the conv loses its bias (it is inside tau).
2. `torch.onnx.export(dynamo=False)` (TorchScript exporter: works offline without onnxscript) traces
   it with input "input" (float32 NCHW, dynamic batch) and output "output".  Constant folding is off
   (the exporter's eval-mode Conv+BN fusion would rewrite the weights) and initializers are kept as
   graph inputs during export (which disables the exporter's de-duplication of equal tensors), so
   every parameter is one initializer named like its state_dict entry; they are then removed from
   the graph inputs.
3. The graph is post-processed with `onnx`: each quantized weight initializer `W` is replaced by
   the integer initializer `W_quantized` (the QuantizedModel's codes, in OIHW order), `W_scale`,
   `W_zero_point` and a `DequantizeLinear` node whose output is named `W`, so the consumers are
   untouched.  Before the replacement the float tensor torch exported is checked to equal the
   dequantized values bit for bit.  int32 biases become `DequantizeLinear` of int32 (zero point 0);
   thresholds become an int32 initializer + `Cast`, flips a uint8 initializer + `Cast` to bool.

Opset 17 by default (per-axis DequantizeLinear needs 13); affine codes wider than 8 bits are
uint16, which DequantizeLinear accepts from opset 21: the graph is then converted to opset 21 with
`onnx.version_converter`.  Output bytes depend only on the input and options.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

import click
import numpy as np

from .. import __version__
from ..atomic import atomic_file
from ..errors import CannotHandle, DependencyMissing, UsageError
from ..model import QuantizedModel, QuantLayer
from .base import WriterPlugin
from .common import layer_summary

DEFAULT_OPSET = 17
UINT16_OPSET = 21  # DequantizeLinear on uint16 codes
MIN_OPSET, MAX_OPSET = 13, 21
TORCH_MAX_OPSET = 20  # the TorchScript exporter of torch 2.x
IR_VERSION = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
INPUT_NAME, OUTPUT_NAME = "input", "output"
EXPORT_BATCH = 1  # batch size of the dummy tensor traced by the exporter (the batch axis is dynamic)


# --------------------------------------------------------------------------------------------------
# What the graph computes with: dequantized values and integer initializers (pure numpy)
# --------------------------------------------------------------------------------------------------


def _oihw(data: np.ndarray, layout: str) -> np.ndarray:
    """A weight in PyTorch/ONNX order: ohwi (0, 2, 3, 1) is transposed back; codes are unchanged."""
    return np.ascontiguousarray(data.transpose(0, 3, 1, 2) if layout == "ohwi" and data.ndim == 4 else data)


def _axis0(v: np.ndarray, ndim: int) -> np.ndarray:
    """A per-tensor (0-d) or per-channel ((C,)) parameter broadcast along axis 0 of an ndim array."""
    v = np.asarray(v)
    return v.reshape((-1,) + (1,) * (ndim - 1)) if v.ndim == 1 else v


def bias_scale(q: QuantLayer) -> np.ndarray:
    """float32 step of an affine int32 bias: b = b_q * (m / 2^s) / G (SPEC §4)."""
    m = np.asarray(q.params["multiplier"], np.float64)
    s = np.asarray(q.params["shift"], np.float64)
    g = float(np.asarray(q.params["input_gain"]))
    return np.asarray(m / np.exp2(s) / g, np.float32)


class _Quantized:
    """One integer initializer and the DequantizeLinear parameters that give its float value."""

    def __init__(self, codes: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, what: str):
        self.codes, self.scale, self.zero_point, self.what = codes, scale, zero_point, what

    def dequantized(self) -> np.ndarray:
        """Exactly what DequantizeLinear computes: float32(x - zp) * scale, one rounding."""
        diff = self.codes.astype(np.int64) - _axis0(self.zero_point, self.codes.ndim).astype(np.int64)
        return diff.astype(np.float32) * _axis0(self.scale, self.codes.ndim).astype(np.float32)


def quantized_weight(qmodel: QuantizedModel, q: QuantLayer) -> _Quantized:
    t = qmodel.tensor(q.weight)
    codes = _oihw(np.asarray(t.data), t.layout)
    if q.scheme == "affine":
        dtype = np.uint8 if codes.dtype.itemsize == 1 else np.uint16
        zp = np.asarray(q.params["zero_point"])
        scale = np.asarray(q.params["scale"], np.float32)
        what = f"affine {q.bits}-bit unsigned, {'per-channel (axis 0)' if scale.ndim else 'per-tensor'}"
        return _Quantized(codes.astype(dtype), scale, zp.astype(dtype), what)
    if q.scheme in ("binary", "ternary"):
        alpha = q.params.get("alpha")
        if alpha is None:  # binary without alpha: the codes are the weights
            scale = np.asarray(1.0, np.float32)
            what = f"{q.scheme} {{-1,+1}}, no alpha (scale 1)"
        else:
            scale = np.asarray(alpha, np.float32)
            what = f"{q.scheme} codes times alpha, {'per-channel (axis 0)' if scale.ndim else 'per-tensor'}"
        return _Quantized(codes.astype(np.int8), scale, np.zeros(scale.shape, np.int8), what)
    raise CannotHandle(f"layer {q.name}: scheme {q.scheme!r} has no ONNX representation")


def quantized_bias(qmodel: QuantizedModel, q: QuantLayer) -> _Quantized | None:
    if q.scheme != "affine" or not q.bias:
        return None
    t = qmodel.tensor(q.bias)
    if t.scheme != "int32":
        return None
    scale = bias_scale(q)
    return _Quantized(np.asarray(t.data, np.int32), scale, np.zeros(scale.shape, np.int32),
                      "int32 bias b_q * (m/2^s) / input_gain")  # fmt: skip


def _check_supported(qmodel: QuantizedModel) -> None:
    from ..models import BUILDERS

    model = qmodel.model
    src = model.source.name
    if not model.has_graph:
        raise CannotHandle(f"{src}: `qexport onnx` needs the layer graph of a documented architecture, and this "
                           f"checkpoint was read by the generic reader; use `qexport npy` or `qexport h5` for its "
                           f"tensors, or --arch to force an architecture")  # fmt: skip
    if model.arch not in BUILDERS:
        raise CannotHandle(f"{src}: architecture {model.arch!r} has no torch module in qexport.models, so no ONNX "
                           f"graph can be built; use `qexport npy` or `qexport h5`")  # fmt: skip
    passthrough = [q.name for q in qmodel.layers if q.scheme == "passthrough"]
    if passthrough:
        raise CannotHandle(f"{src}: the weights are already integer codes (layer {passthrough[0]} ...) whose scale "
                           f"and zero point the checkpoint does not hold, so ONNX cannot compute with them; export "
                           f"the float checkpoint instead")  # fmt: skip


def _needs_uint16(qmodel: QuantizedModel) -> bool:
    return any(q.scheme == "affine" and q.bits > 8 for q in qmodel.layers)


def choose_opset(qmodel: QuantizedModel, opset: int | None) -> int:
    if opset is None:
        return UINT16_OPSET if _needs_uint16(qmodel) else DEFAULT_OPSET
    if _needs_uint16(qmodel) and opset < UINT16_OPSET:
        raise UsageError(f"--opset {opset}: affine codes wider than 8 bits are uint16, which DequantizeLinear "
                         f"accepts from opset {UINT16_OPSET}; use --opset {UINT16_OPSET} or --bits 8 or less")
    return opset


# --------------------------------------------------------------------------------------------------
# torch side
# --------------------------------------------------------------------------------------------------


def _threshold_module_class():
    import torch
    from torch import nn

    class BnnThreshold(nn.Module):
        """BN + sign of a binary layer as integer thresholds: +1 where (flip ? acc <= tau : acc >= tau),
        else -1 (never 0).  acc is the layer's float output without bias, an exact integer."""

        def __init__(self, threshold: np.ndarray, flip: np.ndarray, ndim: int):
            super().__init__()
            shape = (-1,) + (1,) * (ndim - 2)
            self.register_buffer("threshold", torch.from_numpy(threshold.astype(np.float32).reshape(shape)))
            self.register_buffer("flip", torch.from_numpy(flip.astype(bool).reshape(shape)))

        def forward(self, x):
            # And/Or rather than Where: onnxruntime has no Where kernel for bool operands
            plus = (self.flip & (x <= self.threshold)) | (~self.flip & (x >= self.threshold))
            return torch.where(plus, 1.0, -1.0)

    return BnnThreshold


def build_module(qmodel: QuantizedModel):
    """qexport's torch module for the architecture, computing with the dequantized weights.

    Returns (module, replacements): per quantized layer, (kind, initializer name, layer, payload) for
    each initializer that post_process turns into integers + DequantizeLinear (or Cast).
    """
    import torch
    from torch import nn

    from ..models import build

    model = qmodel.model
    module = build(model.arch, dict(model.config))
    threshold_cls = None
    values: dict[str, np.ndarray] = {}
    for t in qmodel.tensors:  # kept-float tensors, in PyTorch order
        if t.scheme == "float":
            values[t.name] = _oihw(np.asarray(t.data), t.layout)
        elif t.role not in ("packed",) and t.scheme not in ("affine", "binary", "ternary", "int32"):
            values[t.name] = np.asarray(t.data)
    replacements = []  # (kind, initializer name, layer, payload)
    for q in qmodel.layers:
        w = quantized_weight(qmodel, q)
        values[q.weight] = w.dequantized()
        replacements.append(("dequantize", q.weight, q, w))
        b = quantized_bias(qmodel, q)
        conv = module.get_submodule(q.name)
        bn = q.attrs.get("folded_bn")  # BN folded into the conv (affine) or into thresholds (binary)
        if b is not None:
            values[q.bias] = b.dequantized()
            replacements.append(("dequantize", q.bias, q, b))
            if getattr(conv, "bias", None) is None:
                conv.bias = nn.Parameter(torch.zeros(b.codes.shape[0]))
        if bn and "threshold" in q.params:
            threshold_cls = threshold_cls or _threshold_module_class()
            ndim = 4 if isinstance(module.get_submodule(bn), nn.BatchNorm2d) else 2
            tau, flip = np.asarray(q.params["threshold"]), np.asarray(q.params["flip"])
            module.set_submodule(bn, threshold_cls(tau, flip, ndim))
            conv.bias = None  # the bias is inside the thresholds
            replacements.append(("threshold", f"{bn}.threshold", q, np.asarray(q.params["threshold"], np.int32)))
            replacements.append(("flip", f"{bn}.flip", q, np.asarray(q.params["flip"], np.uint8)))
        elif bn:
            module.set_submodule(bn, nn.Identity())
    threshold_modules = {name.rsplit(".", 1)[0] for kind, name, _, _ in replacements if kind == "threshold"}
    state = {}
    for key, ref in module.state_dict().items():
        if key.rsplit(".", 1)[0] in threshold_modules:  # the threshold module's own buffers
            state[key] = ref
            continue
        if key not in values:
            if key.endswith("num_batches_tracked"):
                state[key] = torch.zeros((), dtype=torch.long)
                continue
            raise CannotHandle(f"{model.source.name}: tensor {key!r} of the {model.arch} graph is missing from the "
                               f"export; cannot build the ONNX graph")  # fmt: skip
        arr = values[key]
        if tuple(arr.shape) != tuple(ref.shape):
            raise CannotHandle(f"{model.source.name}: tensor {key!r} has shape {tuple(arr.shape)}, the {model.arch} "
                               f"graph needs {tuple(ref.shape)}")  # fmt: skip
        state[key] = torch.from_numpy(np.ascontiguousarray(arr).astype(_np_dtype(ref.dtype), copy=True))
    module.load_state_dict(state, strict=True)
    return module.eval(), replacements


def _np_dtype(torch_dtype):
    import torch

    return {torch.float32: np.float32, torch.int64: np.int64, torch.bool: np.bool_}.get(torch_dtype, np.float32)


def input_shape(qmodel: QuantizedModel) -> tuple[int, ...]:
    from ..models import INPUT_SHAPES

    c, h, w = INPUT_SHAPES[qmodel.model.arch]
    c = int(qmodel.model.config.get("input_channel", c))
    return (c, h, w)


def torch_export(module, shape: tuple[int, ...], opset: int) -> bytes:
    import torch

    dummy = torch.zeros((EXPORT_BATCH,) + tuple(shape), dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (dummy,), buf, dynamo=False, export_params=True, opset_version=opset,
                              do_constant_folding=False, training=torch.onnx.TrainingMode.EVAL,
                              keep_initializers_as_inputs=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - any exporter failure is reported as one line
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CannotHandle(f"torch.onnx.export failed: {first}") from exc
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# onnx side
# --------------------------------------------------------------------------------------------------


def _text(s: str) -> str:
    """Any str as valid UTF-8 for protobuf (file names may carry undecodable bytes)."""
    return str(s).encode("utf-8", "backslashreplace").decode("utf-8")


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def metadata(qmodel: QuantizedModel) -> list[tuple[str, str]]:
    prov = qmodel.provenance()
    plan = [_json_safe(layer_summary(q)) for q in qmodel.layers]
    c, h, w = input_shape(qmodel)
    return [
        ("qexport.generator", _text(prov["generator"])),
        ("qexport.version", __version__),
        ("qexport.source", _text(prov["source"])),
        ("qexport.source_sha256", prov["source_sha256"]),
        ("qexport.arch", prov["arch"]),
        ("qexport.config", json.dumps(_json_safe({k: (list(v) if isinstance(v, tuple) else v)
                                                   for k, v in qmodel.model.config.items()}), sort_keys=True)),
        ("qexport.options", _text(prov["options"])),
        ("qexport.plan", _text(json.dumps(plan, sort_keys=True, separators=(",", ":")))),
        ("qexport.input", f"{INPUT_NAME}: float32 [batch, {c}, {h}, {w}] (NCHW)"),
        ("qexport.weights", "quantized weights W: integer initializer W_quantized -> DequantizeLinear(W_scale, "
                            "W_zero_point, axis 0) -> W; affine uint8/uint16 codes, binary/ternary int8 {-1,0,+1} "
                            "with alpha as scale (1 without alpha); affine int32 biases likewise (zero point 0)"),
        ("qexport.sign", "activation Sign(0) = 0 (ONNX Sign, torch.sign); binary weight codes use w > 0 -> +1, "
                         "else -1; BNN thresholds give +1 where (flip ? acc <= tau : acc >= tau), else -1"),
    ]  # fmt: skip


def _initializer_map(graph) -> dict:
    return {init.name: i for i, init in enumerate(graph.initializer)}


def post_process(model_proto, qmodel: QuantizedModel, replacements):
    from onnx import TensorProto, helper, numpy_helper

    graph = model_proto.graph
    inits = _initializer_map(graph)
    names = set(inits)
    keep_inputs = [i for i in graph.input if i.name not in names]
    del graph.input[:]
    graph.input.extend(keep_inputs)

    new_inits: dict[str, list] = {}
    new_nodes = []
    taken = set(names) | {o for n in graph.node for o in n.output}

    def fresh(name: str) -> str:
        if name in taken:
            raise CannotHandle(f"ONNX name {name!r} is already used in the exported graph")
        taken.add(name)
        return name

    src = qmodel.model.source.name
    for kind, name, q, payload in replacements:
        if name not in inits:
            raise CannotHandle(f"{src}: the exported graph has no initializer {name!r} (layer {q.name})")
        exported = numpy_helper.to_array(graph.initializer[inits[name]])
        if kind == "dequantize":
            expect = payload.dequantized()
            if exported.dtype != np.float32 or not np.array_equal(exported, expect):
                raise CannotHandle(f"{src}: torch exported {name!r} differently from its dequantized values; "
                                   f"refusing to write an ONNX graph that would not compute with them")  # fmt: skip
            qn, sn, zn = fresh(f"{name}_quantized"), fresh(f"{name}_scale"), fresh(f"{name}_zero_point")
            new_inits[name] = [numpy_helper.from_array(payload.codes, qn), numpy_helper.from_array(payload.scale, sn),
                               numpy_helper.from_array(payload.zero_point, zn)]  # fmt: skip
            attrs = {"axis": 0} if payload.scale.ndim else {}
            node = helper.make_node("DequantizeLinear", [qn, sn, zn], [name], name=fresh(f"{name}_DequantizeLinear"),
                                    doc_string=f"qexport: layer {q.name}, {payload.what}", **attrs)  # fmt: skip
            new_nodes.append(node)
        else:  # threshold (int32) or flip (uint8): integer initializer + Cast to what the graph compares with
            target = TensorProto.FLOAT if kind == "threshold" else TensorProto.BOOL
            codes = payload.reshape(exported.shape)
            as_float = codes.astype(np.float32) if kind == "threshold" else codes.astype(bool)
            if not np.array_equal(exported, as_float):
                raise CannotHandle(f"{src}: torch exported {name!r} differently from the layer's {kind}s")
            iname = fresh(f"{q.name}.{kind}")
            new_inits[name] = [numpy_helper.from_array(codes, iname)]
            doc = f"qexport: layer {q.name}, BNN {kind} (BN {name.rsplit('.', 1)[0]})"
            new_nodes.append(helper.make_node("Cast", [iname], [name], name=fresh(f"{q.name}.{kind}_Cast"), to=target,
                                              doc_string=doc))  # fmt: skip

    rebuilt = []
    for init in graph.initializer:
        rebuilt.extend(new_inits.get(init.name, [init]))
    del graph.initializer[:]
    graph.initializer.extend(rebuilt)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)  # the new nodes read initializers only: topological order holds
    return model_proto


def _strip_and_stamp(model_proto, qmodel: QuantizedModel) -> None:
    model_proto.producer_name = "qexport"
    model_proto.producer_version = __version__
    model_proto.domain = ""
    model_proto.model_version = 0
    model_proto.doc_string = _text(f"qexport {__version__}: {qmodel.model.arch} from {qmodel.model.source.name}")
    model_proto.graph.name = qmodel.model.arch
    model_proto.graph.doc_string = ""
    for node in model_proto.graph.node:
        if not node.doc_string.startswith("qexport:"):
            node.doc_string = ""  # never a source path or stack trace from the exporter
    del model_proto.metadata_props[:]
    for key, value in metadata(qmodel):
        model_proto.metadata_props.append(_entry(key, value))


def _entry(key: str, value: str):
    from onnx import StringStringEntryProto

    e = StringStringEntryProto()
    e.key, e.value = key, value
    return e


def to_onnx(qmodel: QuantizedModel, opset: int | None = None):
    """The ModelProto for a QuantizedModel (checked with onnx.checker, full check)."""
    _check_supported(qmodel)
    opset = choose_opset(qmodel, opset)
    try:
        import onnx
        import torch  # noqa: F401
        from onnx import version_converter
    except ModuleNotFoundError as exc:
        raise DependencyMissing(f"`qexport onnx` needs the Python package {exc.name!r}: "
                                f"pip install {exc.name}") from exc

    module, replacements = build_module(qmodel)
    raw = torch_export(module, input_shape(qmodel), min(opset, TORCH_MAX_OPSET))
    proto = onnx.load_from_string(raw)
    if opset > TORCH_MAX_OPSET:
        proto = version_converter.convert_version(proto, opset)
    proto.ir_version = IR_VERSION[opset]
    proto = post_process(proto, qmodel, replacements)
    _strip_and_stamp(proto, qmodel)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise CannotHandle(f"the ONNX graph fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    return proto


def write(qmodel: QuantizedModel, path: Path, opset: int | None = None) -> None:
    proto = to_onnx(qmodel, opset)
    data = proto.SerializeToString(deterministic=True)
    with atomic_file(path, "wb") as fh:
        fh.write(data)


OPTIONS = (
    click.Option(["--opset"], type=click.IntRange(MIN_OPSET, MAX_OPSET), default=None, metavar="N",
                 help=f"ONNX opset {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET}; {UINT16_OPSET} when affine "
                      f"codes are wider than 8 bits, which needs it)."),
)  # fmt: skip

WRITER = WriterPlugin(
    name="onnx",
    help="ONNX graph of a documented architecture; quantized weights as DequantizeLinear of integer initializers.",
    write=write,
    suffix=".onnx",
    options=OPTIONS,
    needs_graph=True,
)
