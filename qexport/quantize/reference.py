"""Integer reference forward passes (numpy, int64 accumulation).

Used by the tests, the golden-vector command and as the specification the C and RTL
implementations must match bit for bit.

LeNet (seed 002), with input codes x in 0..255 standing for x/G:

    acc = sum x * (w_q - Z) + b_q            (int64)
    y   = (acc * m) >> s                     (64-bit product, arithmetic = floor shift)
    ReLU, then 2x2 average pool = (a + b + c + d + 2) >> 2   (round half up)

Stages returned, in order: c1 (requantized, before ReLU), s2 (after ReLU and pool), c3, s4, c5,
f6, output.  Every value stays in 1/G units, so argmax(output) is the prediction.
"""

from __future__ import annotations

import numpy as np

from ..errors import PlanError
from ..model import QuantizedModel
from . import intops
from .channels import axis0

LENET_STAGES = ("c1", "s2", "c3", "s4", "c5", "f6", "output")


def _layer_arrays(qmodel: QuantizedModel, name: str):
    try:
        ql = qmodel.quant_layer(name)
    except KeyError:
        raise PlanError(f"layer {name}: the integer LeNet pass needs it quantized, but the plan keeps it float "
                        f"(--keep-float/--only); quantize every layer") from None
    if ql.scheme != "affine":
        raise PlanError(f"layer {name}: the integer LeNet pass needs an affine plan (got {ql.scheme}); use --bits 3..16")
    codes = qmodel.tensor(ql.weight).data  # canonical: PyTorch (OIHW) order
    z = np.asarray(ql.params["zero_point"], np.int64)
    w = codes.astype(np.int64) - axis0(z, codes.ndim)
    b = qmodel.tensor(ql.bias).data.astype(np.int64) if ql.bias else np.zeros(codes.shape[0], np.int64)
    m = np.asarray(ql.params["multiplier"], np.int64)
    s = np.asarray(ql.params["shift"], np.int64)
    return w, b, m, s


def lenet_forward_int(qmodel: QuantizedModel, images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-stage int64 activations of the seed-002 integer LeNet for uint8 images (N, 28, 28)."""
    if qmodel.arch != "lenet":
        raise PlanError(f"the integer LeNet pass needs a lenet model, not {qmodel.arch}")
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    x = x.astype(np.int64)
    graph = {layer.name: layer for layer in qmodel.model.layers}
    out: dict[str, np.ndarray] = {}
    for name in ("c1", "c3", "c5"):
        w, b, m, s = _layer_arrays(qmodel, name)
        attrs = graph[name].attrs
        acc = intops.int_conv2d(x, w, b, stride=attrs["stride"], padding=attrs["padding"], groups=attrs["groups"])
        x = intops.requantize(acc, m, s)
        out[name] = x
        if name != "c5":
            x = intops.avgpool2_int(intops.relu_int(x))
            out["s2" if name == "c1" else "s4"] = x
    x = x.reshape(x.shape[0], -1)
    for name in ("f6", "output"):
        w, b, m, s = _layer_arrays(qmodel, name)
        x = intops.requantize(intops.int_linear(x, w, b), m, s)
        out[name] = x
    return {k: out[k] for k in LENET_STAGES}
