"""Helpers of tests/test_writer_onnx.py: the QuantizedModel computed in the test, an independent torch
reference carrying the same dequantized weights (evaluated in float64: see onnx_torch_run), and
onnxruntime runs.

The reference is built here from the QuantizedModel's codes and parameters (README "Numerics" meanings), not
with the writer's own helpers, so a wrong dequantization in the writer cannot hide behind the same
mistake in the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qexport.encode.arrange import arrange
from qexport.encode.options import encode_options_from
from qexport.export import export, load_model, plan_options_from, quantize
from qexport.prepare import options_text


def onnx_qmodel(ckpt, **plan_kw):
    """The QuantizedModel the CLI would build for these plan options (computed in the test)."""
    model = load_model(ckpt, plan_kw.get("arch"), needs_graph=True, command="onnx")
    return arrange(quantize(model, plan_options_from(**plan_kw), options_text(plan_kw)), encode_options_from(**plan_kw))


def onnx_write(ckpt, out: Path, opset=None, **plan_kw):
    """Run the library export (what `qexport onnx` runs) and return the QuantizedModel it used."""
    writer_options = {"opset": opset} if opset is not None else {}
    _, qm = export("onnx", ckpt, out, writer_options=writer_options, **plan_kw)
    return qm


def onnx_cli_args(plan_kw: dict) -> list[str]:
    args = []
    for key, value in plan_kw.items():
        flag = "--" + key.replace("_", "-")
        if key == "per_channel":
            args.append("--per-channel" if value else "--per-tensor")
        elif key == "fold_bn":
            args.append("--fold-bn" if value else "--no-fold-bn")
        elif key == "alpha":
            args.append("--alpha" if value else "--no-alpha")
        elif isinstance(value, (tuple, list)):
            for v in value:
                args += [flag, str(v)]
        else:
            args += [flag, str(value)]
    return args


def _oihw(t) -> np.ndarray:
    a = np.asarray(t.data)
    return a.transpose(0, 3, 1, 2) if t.layout == "ohwi" and a.ndim == 4 else a


def _col(v, ndim):
    v = np.asarray(v)
    return v.reshape((-1,) + (1,) * (ndim - 1)) if v.ndim == 1 else v


def onnx_expected_codes(qm, q) -> np.ndarray:
    """The integer codes of layer q in OIHW order (the only order ONNX Conv accepts)."""
    return _oihw(qm.tensor(q.weight))


def onnx_dequantized(qm, q):
    """(weight, bias or None) of quantized layer q as float32, from codes and params (README "Numerics"):
    affine scale*(q - Z); binary +-1 (or +-alpha_c); ternary alpha_c*t; int32 bias b_q*(m/2^s)/G."""
    codes = onnx_expected_codes(qm, q)
    p = q.params
    if q.scheme == "affine":
        diff = codes.astype(np.int32) - _col(p["zero_point"], codes.ndim).astype(np.int32)
        w = diff.astype(np.float32) * _col(np.asarray(p["scale"], np.float32), codes.ndim)
    elif "alpha" in p:
        w = codes.astype(np.float32) * _col(np.asarray(p["alpha"], np.float32), codes.ndim)
    else:
        w = codes.astype(np.float32)
    b = None
    if q.bias and qm.tensor(q.bias).scheme == "int32":
        step = (np.asarray(p["multiplier"], np.float64) / 2.0 ** np.asarray(p["shift"], np.float64)
                / float(p["input_gain"])).astype(np.float32)  # fmt: skip
        b = np.asarray(qm.tensor(q.bias).data).astype(np.float32) * step
    return w.astype(np.float32), b


def onnx_reference(qm):
    """qexport's torch module for the architecture with the dequantized weights of `qm`."""
    import torch
    from torch import nn

    from qexport.models import build

    class Threshold(nn.Module):  # BN + sign as the plan's integer thresholds (README "Numerics")
        def __init__(self, tau, flip, ndim):
            super().__init__()
            shape = (-1,) + (1,) * (ndim - 2)
            self.tau = torch.tensor(np.asarray(tau, np.float64).reshape(shape), dtype=torch.float64)
            self.flip = torch.tensor(np.asarray(flip).astype(bool).reshape(shape))

        def forward(self, acc):
            a = acc.double()
            plus = torch.where(self.flip, a <= self.tau, a >= self.tau)
            return torch.where(plus, 1.0, -1.0).to(acc.dtype)  # the dtype the module runs in

    model = qm.model
    module = build(model.arch, dict(model.config))
    override = {}
    for q in qm.layers:
        w, b = onnx_dequantized(qm, q)
        override[q.weight] = w
        conv = module.get_submodule(q.name)
        bn = q.attrs.get("folded_bn")
        if b is not None:
            override[f"{q.name}.bias"] = b
            if conv.bias is None:
                conv.bias = nn.Parameter(torch.zeros(len(b)))
        if bn and "threshold" in q.params:
            ndim = 4 if isinstance(module.get_submodule(bn), nn.BatchNorm2d) else 2
            module.set_submodule(bn, Threshold(q.params["threshold"], q.params["flip"], ndim))
            conv.bias = None
        elif bn:
            module.set_submodule(bn, nn.Identity())
    state = {}
    for key, ref in module.state_dict().items():
        arr = override[key] if key in override else np.asarray(model.tensors[key])
        state[key] = torch.from_numpy(np.array(arr)).to(ref.dtype)
    module.load_state_dict(state, strict=True)
    return module.eval()


def onnx_torch_run(module, x: np.ndarray) -> np.ndarray:
    """The reference output, evaluated in float64: the module (converted in place with .double();
    its float32 weights are exact in float64) on the float32 input widened to float64.

    float64, not float32, because the networks binarize activations with Sign (and thresholds): an
    input of Sign within float32 rounding of zero flips to +1 or -1 depending on which float32
    kernels (summation order, SIMD width, threads) the machine picks, and one flip moves the logits
    far (0.24 on a VGG with --bits 8).  onnxruntime's float32 result is compared with this
    machine-independent evaluation of the same network, which it matches within 1e-6 there."""
    import torch

    module = module.double()
    with torch.no_grad():
        return module(torch.from_numpy(np.asarray(x, np.float32).astype(np.float64))).numpy()


def onnx_session(path, optimize=True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def onnx_run(path, x: np.ndarray, optimize=True) -> np.ndarray:
    return onnx_session(path, optimize).run(["output"], {"input": x})[0]


def onnx_initializers(proto) -> dict:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}


def onnx_close(a: np.ndarray, b: np.ndarray, rel: float = 1e-4) -> tuple[bool, float, float]:
    """max|a - b| <= rel * max(1, max|b|): relative to the output's magnitude, absolute near 0."""
    err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    bound = rel * max(1.0, float(np.max(np.abs(b))))
    return err <= bound, err, bound
