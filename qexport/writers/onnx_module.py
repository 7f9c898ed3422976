"""The torch side of the ONNX writer (README "ONNX"): qexport's module for the architecture,
loaded with the values the QuantizedModel stands for (quantized weights dequantized, affine int32
biases as b_q * (m / 2^s) / G, BN folded away or turned into BNN thresholds), and the
TorchScript export of it.  Each replaced initializer is recorded for onnx.py's post-processing.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from ..errors import CannotHandle
from ..model import QuantizedModel, QuantLayer
from ..quantize.dequantize import bias_step, dequantize

INPUT_NAME, OUTPUT_NAME = "input", "output"
EXPORT_BATCH = 1  # batch size of the dummy tensor traced by the exporter (the batch axis is dynamic)


class _Quantized:
    """One integer initializer and the DequantizeLinear parameters that give its float value."""

    def __init__(self, codes: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, what: str):
        self.codes, self.scale, self.zero_point, self.what = codes, scale, zero_point, what

    def dequantized(self) -> np.ndarray:
        """What DequantizeLinear computes: float32(x - zp) * scale, one rounding."""
        return dequantize(self.codes, self.scale, self.zero_point)


def quantized_weight(qmodel: QuantizedModel, q: QuantLayer) -> _Quantized:
    codes = np.asarray(qmodel.tensor(q.weight).data)  # canonical: PyTorch (OIHW) order
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
    scale = bias_step(q)
    return _Quantized(np.asarray(t.data, np.int32), scale, np.zeros(scale.shape, np.int32),
                      "int32 bias b_q * (m/2^s) / input_gain")  # fmt: skip


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
    """The model's network (qexport.graph.stage.network_module) computing with the dequantized weights.

    Returns (module, replacements): per quantized layer, (kind, initializer name, layer, payload) for
    each initializer that post_process turns into integers + DequantizeLinear (or Cast).
    """
    import torch
    from torch import nn

    from ..graph.stage import network_module

    model = qmodel.model
    module = network_module(model)  # a fresh copy: changed below
    threshold_cls = None
    values: dict[str, np.ndarray] = {}
    for t in qmodel.tensors:  # kept-float tensors, canonical (PyTorch) order
        if t.scheme == "float":
            values[t.name] = np.asarray(t.data)
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
