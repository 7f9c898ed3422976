"""The `.tflite` flatbuffer of a TflGraph, built with the TFLite schema's Python object API (shipped
in the tflite-micro package) and flatbuffers.  One subgraph, batch 1, tensors and buffers in
operator order (deterministic bytes); buffer 0 is the empty buffer of every activation; the
provenance is the model's description and a metadata buffer "qexport_provenance" (JSON).
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import DependencyMissing
from .ir import TflGraph, TflOp, TflTensor

SCHEMA_MODULE = "tflite_micro.tensorflow.lite.micro.python.schema_py_generated"


def schema():
    import importlib

    try:
        return importlib.import_module(SCHEMA_MODULE)
    except ImportError as exc:
        raise DependencyMissing(f"qexport tflite needs the tflite-micro package (its TFLite schema): "
                                f"pip install tflite-micro ({exc})") from None  # fmt: skip


class _Builder:
    def __init__(self, fb):
        self.fb = fb
        self.tensors: list = []
        self.index: dict[str, int] = {}
        self.buffers = [fb.BufferT()]
        self.codes: list[int] = []

    def buffer(self, data: np.ndarray) -> int:
        buf = self.fb.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
        self.buffers.append(buf)
        return len(self.buffers) - 1

    def tensor(self, name: str, shape, dtype: int, scales=None, zero_points=None, axis: int = 0, data=None) -> int:
        t = self.fb.TensorT()
        t.name, t.shape, t.type = name, [int(d) for d in shape], dtype
        t.buffer = 0 if data is None else self.buffer(data)
        if scales is not None:
            q = self.fb.QuantizationParametersT()
            q.scale = [float(v) for v in np.atleast_1d(scales)]
            q.zeroPoint = [int(v) for v in np.atleast_1d(zero_points)]
            q.quantizedDimension = axis
            t.quantization = q
        self.tensors.append(t)
        self.index[name] = len(self.tensors) - 1
        return self.index[name]

    def activation(self, t: TflTensor) -> int:
        if t.name not in self.index:
            dtype = self.fb.TensorType.UINT8 if t.dtype == "uint8" else self.fb.TensorType.INT8
            self.tensor(t.name, (1, *t.shape), dtype, t.scale, t.zero_point)
        return self.index[t.name]

    def opcode(self, name: str) -> int:
        code = getattr(self.fb.BuiltinOperator, name)
        if code not in self.codes:
            self.codes.append(code)
        return self.codes.index(code)


def _options(fb, op: TflOp):
    """(BuiltinOptions type, options object) of an operator."""
    a = op.attrs
    act = getattr(fb.ActivationFunctionType, a.get("activation", "NONE"))
    pad = getattr(fb.Padding, a["padding"]) if "padding" in a else None
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = fb.Conv2DOptionsT() if op.op == "CONV_2D" else fb.DepthwiseConv2DOptionsT()
        o.padding, (o.strideH, o.strideW), (o.dilationHFactor, o.dilationWFactor) = pad, a["stride"], a["dilation"]
        o.fusedActivationFunction = act
        if op.op == "DEPTHWISE_CONV_2D":
            o.depthMultiplier = a["depth_multiplier"]
            return fb.BuiltinOptions.DepthwiseConv2DOptions, o
        return fb.BuiltinOptions.Conv2DOptions, o
    if op.op == "FULLY_CONNECTED":
        o = fb.FullyConnectedOptionsT()
        o.fusedActivationFunction = act
        return fb.BuiltinOptions.FullyConnectedOptions, o
    if op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = fb.Pool2DOptionsT()
        o.padding, (o.strideH, o.strideW), (o.filterHeight, o.filterWidth) = pad, a["stride"], a["filter"]
        o.fusedActivationFunction = act
        return fb.BuiltinOptions.Pool2DOptions, o
    if op.op == "ADD":
        o = fb.AddOptionsT()
        o.fusedActivationFunction = act
        return fb.BuiltinOptions.AddOptions, o
    if op.op == "CONCATENATION":
        o = fb.ConcatenationOptionsT()
        o.axis, o.fusedActivationFunction = a["axis"], act
        return fb.BuiltinOptions.ConcatenationOptions, o
    if op.op == "RESHAPE":
        o = fb.ReshapeOptionsT()
        o.newShape = list(a["shape"])
        return fb.BuiltinOptions.ReshapeOptions, o
    if op.op == "PAD":
        return fb.BuiltinOptions.PadOptions, fb.PadOptionsT()
    if op.op == "TRANSPOSE":
        return fb.BuiltinOptions.TransposeOptions, fb.TransposeOptionsT()
    return fb.BuiltinOptions.NONE, None


def _constants(b: _Builder, op: TflOp, x: TflTensor) -> list[int]:
    """The constant input tensors of `op` (weights, bias, paddings, shape)."""
    fb, arr = b.fb, op.arrays
    owner = op.source[0] if op.source else op.output  # constants named after the layer (c1.weight)
    if "weight" in arr:
        axis = 3 if op.op == "DEPTHWISE_CONV_2D" else 0
        scales = arr["weight_scale"]
        w = b.tensor(f"{owner}.weight", arr["weight"].shape, fb.TensorType.INT8, scales,
                     np.zeros(scales.size, np.int64), axis, arr["weight"].astype(np.int8))  # fmt: skip
        bias_scale = (float(x.scale) * scales.astype(np.float64)).astype(np.float32)
        if op.op == "FULLY_CONNECTED":
            bias_scale = np.repeat(bias_scale, arr["bias"].size)[:1]
        bias = b.tensor(f"{owner}.bias", arr["bias"].shape, fb.TensorType.INT32, bias_scale,
                        np.zeros(bias_scale.size, np.int64), 0, arr["bias"].astype("<i4"))  # fmt: skip
        return [w, bias]
    if op.op == "PAD":
        return [b.tensor(f"{owner}.paddings", (4, 2), fb.TensorType.INT32, data=arr["paddings"].astype("<i4"))]
    if op.op == "TRANSPOSE":
        perm = arr["perm"].astype("<i4")
        return [b.tensor(f"{op.output}.perm", perm.shape, fb.TensorType.INT32, data=perm)]
    if op.op == "RESHAPE":
        shape = np.asarray(op.attrs["shape"], "<i4")
        return [b.tensor(f"{owner}.shape", shape.shape, fb.TensorType.INT32, data=shape)]
    return []


def tflite_bytes(tgraph: TflGraph, provenance: dict[str, str]) -> bytes:
    import flatbuffers

    fb = schema()
    b = _Builder(fb)
    b.activation(tgraph.tensors[tgraph.input])
    operators = []
    for op in tgraph.ops:
        ins = [b.activation(tgraph.tensors[i]) for i in op.inputs]
        ins += _constants(b, op, tgraph.tensors[op.inputs[0]])
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs = b.opcode(op.op), ins
        o.outputs = [b.activation(tgraph.tensors[op.output])]
        o.builtinOptionsType, o.builtinOptions = _options(fb, op)
        operators.append(o)
    sub = fb.SubGraphT()
    sub.tensors, sub.operators, sub.name = b.tensors, operators, "main"
    sub.inputs, sub.outputs = [b.index[tgraph.input]], [b.index[tgraph.output]]
    meta = fb.MetadataT()
    meta.name = "qexport_provenance"
    meta.buffer = b.buffer(np.frombuffer(json.dumps(provenance, sort_keys=True).encode(), np.uint8))
    model = fb.ModelT()
    model.version, model.subgraphs, model.buffers, model.metadata = 3, [sub], b.buffers, [meta]
    model.description = "qexport tflite int8 profile; " + "; ".join(f"{k}: {v}" for k, v in provenance.items())
    model.operatorCodes = []
    for code in b.codes:
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        model.operatorCodes.append(oc)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
