"""The tflite profile's reference executor: every operator as TFLite Micro's int8 reference kernel
computes it (tensorflow/lite/kernels/internal/reference/integer_ops/), in int64 numpy.

    values = run_tflite(tgraph, pixels)     # {tensor name: int8 array (N, *shape)}, input included

Run-time multipliers are derived here from the float32 scales exactly as the kernels' Prepare does
(qexport.tflite.arith.quantize_multiplier); every requantization is qexport.tflite.arith.requantize.
"""

from __future__ import annotations

import numpy as np

from ..graph.execute import conv2d, windows
from .arith import INT8_MAX, INT8_MIN, activation_range, quantize_multiplier, requantize
from .fixedpoint import logistic_table, tanh_table
from .ir import TflGraph, TflOp, TflTensor

ADD_LEFT_SHIFT = 20  # TFLM add for int8


def _nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2)


def _finish(v: np.ndarray, out: TflTensor, activation: str) -> np.ndarray:
    lo, hi = activation_range(activation, out.scale, out.zero_point)
    return np.clip(v, lo, hi).astype(np.int8)


def output_multipliers(op: TflOp, xt: TflTensor, out: TflTensor) -> tuple[np.ndarray, np.ndarray]:
    """(Q31 multipliers, shifts) of a conv / depthwise (per output channel, S_in S_w / S_out in double)
    or fully connected (one: the float32 product S_in S_w, as TFLM multiplies, / S_out) as Prepare
    derives them from the float32 scales; `cheader --arithmetic tflite` writes these."""
    if op.op == "FULLY_CONNECTED":
        product = np.float32(xt.scale) * np.float32(op.arrays["weight_scale"][0])
        return quantize_multiplier(np.array([float(product) / float(out.scale)]))
    return quantize_multiplier(float(xt.scale) * op.arrays["weight_scale"].astype(np.float64) / float(out.scale))


def _conv(op: TflOp, x: np.ndarray, xt: TflTensor, out: TflTensor) -> np.ndarray:
    w = op.arrays["weight"].astype(np.int64)
    depthwise = op.op == "DEPTHWISE_CONV_2D"
    w = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)  # back to OIHW for the sum
    groups = xt.shape[-1] if depthwise else xt.shape[-1] // w.shape[1]  # grouped CONV_2D: I / filter depth
    xc = _nchw(x.astype(np.int64) - xt.zero_point)  # padding then adds 0: TFLM skips those taps
    acc = conv2d(xc, w, op.arrays["bias"].astype(np.int64), op.attrs["stride"], op.attrs["torch_padding"],
                 op.attrs["dilation"], groups)  # fmt: skip
    m, s = output_multipliers(op, xt, out)
    v = requantize(acc, m.reshape(1, -1, 1, 1), s.reshape(1, -1, 1, 1)) + out.zero_point
    return _finish(v, out, op.attrs["activation"]).transpose(0, 2, 3, 1)


def _fully_connected(op: TflOp, x: np.ndarray, xt: TflTensor, out: TflTensor) -> np.ndarray:
    acc = (x.astype(np.int64) - xt.zero_point) @ op.arrays["weight"].astype(np.int64).T + op.arrays["bias"]
    m, s = output_multipliers(op, xt, out)
    return _finish(requantize(acc, m, s) + out.zero_point, out, op.attrs["activation"])


def _average_pool(op: TflOp, x: np.ndarray, xt: TflTensor, out: TflTensor) -> np.ndarray:
    win = windows(_nchw(x.astype(np.int64)), op.attrs["filter"], op.attrs["stride"], (0, 0))
    k = int(np.prod(op.attrs["filter"]))
    total = win.sum(axis=(4, 5))
    v = np.where(total > 0, (total + k // 2) // k, -((-total + k // 2) // k))  # C's / truncates
    return _finish(v, out, op.attrs["activation"]).transpose(0, 2, 3, 1)


def _max_pool(op: TflOp, x: np.ndarray, xt: TflTensor, out: TflTensor) -> np.ndarray:
    win = windows(_nchw(x.astype(np.int64)), op.attrs["filter"], op.attrs["stride"], op.attrs["torch_padding"],
                  pad_value=INT8_MIN - 1)  # fmt: skip
    return _finish(win.max(axis=(4, 5)), out, op.attrs["activation"]).transpose(0, 2, 3, 1)


def _add(op: TflOp, a: np.ndarray, b: np.ndarray, at: TflTensor, bt: TflTensor, out: TflTensor) -> np.ndarray:
    twice_max = 2.0 * max(float(at.scale), float(bt.scale))
    ma, sa = quantize_multiplier(float(at.scale) / twice_max)
    mb, sb = quantize_multiplier(float(bt.scale) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * float(out.scale)))
    sa_val = requantize((a.astype(np.int64) - at.zero_point) << ADD_LEFT_SHIFT, ma, sa)
    sb_val = requantize((b.astype(np.int64) - bt.zero_point) << ADD_LEFT_SHIFT, mb, sb)
    return _finish(requantize(sa_val + sb_val, mo, so) + out.zero_point, out, op.attrs["activation"])


def _quantize(op: TflOp, x: np.ndarray, xt: TflTensor, out: TflTensor) -> np.ndarray:
    m, s = quantize_multiplier(float(xt.scale) / float(out.scale))
    return np.clip(requantize(x.astype(np.int64) - xt.zero_point, m, s) + out.zero_point, INT8_MIN, INT8_MAX).astype(np.int8)


def _pad(op: TflOp, x: np.ndarray, xt: TflTensor, out: TflTensor) -> np.ndarray:
    return np.pad(x, [tuple(p) for p in op.arrays["paddings"]], constant_values=out.zero_point)


def _table(op: TflOp, x: np.ndarray, xt: TflTensor, out: TflTensor) -> np.ndarray:
    table = (logistic_table if op.op == "LOGISTIC" else tanh_table)(xt.scale, xt.zero_point)
    return table[x.astype(np.int64) + 128]


def _transpose(op: TflOp, x: np.ndarray, xt: TflTensor, out: TflTensor) -> np.ndarray:
    return x.transpose(*op.arrays["perm"])  # perm includes the batch axis, as in the file


def _reshape(op: TflOp, x: np.ndarray, xt: TflTensor, out: TflTensor) -> np.ndarray:
    return x.reshape(x.shape[0], *out.shape)


KERNELS = {"CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "FULLY_CONNECTED": _fully_connected,
           "AVERAGE_POOL_2D": _average_pool, "MAX_POOL_2D": _max_pool, "QUANTIZE": _quantize, "PAD": _pad,
           "RESHAPE": _reshape, "TRANSPOSE": _transpose, "LOGISTIC": _table, "TANH": _table}  # fmt: skip


def model_input(tgraph: TflGraph, pixels: np.ndarray) -> np.ndarray:
    """The model's input tensor for raw pixels (N, C, H, W) uint8: NHWC, as uint8 or as pixel - 128."""
    x = np.asarray(pixels).transpose(0, 2, 3, 1)
    if tgraph.tensors[tgraph.input].dtype == "uint8":
        return x.astype(np.uint8)
    return (x.astype(np.int16) - 128).astype(np.int8)


def run_tflite(tgraph: TflGraph, pixels: np.ndarray) -> dict[str, np.ndarray]:
    values = {tgraph.input: model_input(tgraph, pixels)}
    for op in tgraph.ops:
        out = tgraph.tensors[op.output]
        ins = [values[i] for i in op.inputs]
        kinds = [tgraph.tensors[i] for i in op.inputs]
        if op.op == "ADD":
            values[op.output] = _add(op, *ins, *kinds, out)
        elif op.op == "CONCATENATION":  # a copy: every input already has the output's scale
            values[op.output] = np.concatenate(ins, axis=op.attrs["axis"])
        else:
            values[op.output] = KERNELS[op.op](op, ins[0], kinds[0], out)
    return values
