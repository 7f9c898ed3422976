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

import json
from pathlib import Path

import click
import numpy as np

from .. import __version__
from ..atomic import atomic_file
from ..encode.arrange import EncodedModel
from ..encode.jsonvalue import json_value
from ..encode.records import layer_record
from ..errors import CannotHandle, DependencyMissing, UsageError
from ..model import QuantizedModel
from .base import WriterPlugin
from .onnx_module import INPUT_NAME, build_module, torch_export

DEFAULT_OPSET = 17
UINT16_OPSET = 21  # DequantizeLinear on uint16 codes
MIN_OPSET, MAX_OPSET = 13, 21
TORCH_MAX_OPSET = 20  # the TorchScript exporter of torch 2.x
IR_VERSION = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


def _check_supported(qmodel: QuantizedModel) -> None:
    from ..graph.stage import model_graph

    model = qmodel.model
    src = model.source.name
    model_graph(model)  # no graph (the generic reader without --model-def): refused, naming the fix
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


def _text(s: str) -> str:
    """Any str as valid UTF-8 for protobuf (file names may carry undecodable bytes)."""
    return str(s).encode("utf-8", "backslashreplace").decode("utf-8")


def metadata(qmodel: QuantizedModel, shape: tuple[int, ...]) -> list[tuple[str, str]]:
    prov = qmodel.provenance()
    plan = [json_value(layer_record(q)) for q in qmodel.layers]
    c, h, w = shape
    return [
        ("qexport.generator", _text(prov["generator"])),
        ("qexport.version", __version__),
        ("qexport.source", _text(prov["source"])),
        ("qexport.source_sha256", prov["source_sha256"]),
        ("qexport.arch", prov["arch"]),
        *((f"qexport.{k}", _text(prov[k])) for k in ("graph", "assumption") if k in prov),
        ("qexport.config", json.dumps(json_value(dict(qmodel.model.config)), sort_keys=True)),
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


def _strip_and_stamp(model_proto, qmodel: QuantizedModel, shape: tuple[int, ...]) -> None:
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
    for key, value in metadata(qmodel, shape):
        model_proto.metadata_props.append(_entry(key, value))


def _entry(key: str, value: str):
    from onnx import StringStringEntryProto

    e = StringStringEntryProto()
    e.key, e.value = key, value
    return e


def to_onnx(qmodel: QuantizedModel, opset: int | None = None):
    """The ModelProto for a QuantizedModel (checked with onnx.checker, full check); the graph is the
    model's network: your module (--model-def) or qexport's module of the documented architecture."""
    _check_supported(qmodel)
    opset = choose_opset(qmodel, opset)
    try:
        import onnx
        import torch  # noqa: F401
        from onnx import version_converter
    except ModuleNotFoundError as exc:
        raise DependencyMissing(f"`qexport onnx` needs the Python package {exc.name!r}: "
                                f"pip install {exc.name}") from exc

    from ..graph.stage import network_input_shape

    shape = network_input_shape(qmodel.model)
    module, replacements = build_module(qmodel)
    raw = torch_export(module, shape, min(opset, TORCH_MAX_OPSET))
    proto = onnx.load_from_string(raw)
    if opset > TORCH_MAX_OPSET:
        proto = version_converter.convert_version(proto, opset)
    proto.ir_version = IR_VERSION[opset]
    proto = post_process(proto, qmodel, replacements)
    _strip_and_stamp(proto, qmodel, shape)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise CannotHandle(f"the ONNX graph fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    return proto


def write(encoded: EncodedModel, path: Path, opset: int | None = None) -> None:
    proto = to_onnx(encoded.quantized, opset)  # the graph computes with the canonical arrays
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
    help="ONNX graph of the network (documented architecture or --model-def); quantized weights as DequantizeLinear of integer initializers.",
    write=write,
    suffix=".onnx",
    options=OPTIONS,
    needs_graph=True,
)
