"""The tflite profile in `qexport eval --arithmetic tflite`: the reference executor's outputs as
real values in the float network's layout, for top-1 and per-operator SQNR."""

from __future__ import annotations

import numpy as np

from .profile import lower_tflite
from .reference import run_tflite


def tflite_outputs(qmodel, calibration, pixels: np.ndarray):
    """(logits codes (N, classes), [(tensor, op, float nodes it computes, real values)]) on raw pixels;
    4-D NHWC values come back as NCHW, like the float network's."""
    tgraph = lower_tflite(qmodel, calibration)
    values = run_tflite(tgraph, pixels)
    rows = []
    for op in tgraph.ops:
        t = tgraph.tensors[op.output]
        v = values[op.output]
        real = float(t.scale) * (v.astype(np.float64) - t.zero_point)
        if v.ndim == 4:
            real = real.transpose(0, 3, 1, 2)
        elif op.op == "RESHAPE" and len(tgraph.tensors[op.inputs[0]].shape) == 3:  # HWC order back to torch's CHW
            h, w, c = tgraph.tensors[op.inputs[0]].shape
            real = real.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(real.shape[0], -1)
        rows.append((op.output, op.op, op.source or (op.output,), real))
    return values[tgraph.output].reshape(pixels.shape[0], -1), rows
