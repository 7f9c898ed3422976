"""Per-channel input normalisation folded into the layers that read the input (README "Integer
inference"), so that firmware still feeds raw pixels.

The float input is x_c = (p / 255 - mean_c) / std_c.  With one std for every channel the input
tensor is S = 1 / (255 std), Z = round(255 mean) as before.  With stds that differ, every
conv reading the input gets its float weights times 1 / std_c per input channel, and the
plan quantizes those folded weights; the input is then x'_c = p / 255 - mean_c (std 1): one scale
1/255 and a zero point Z_c per channel (qexport.integer.lower).

    qmodel, std = fold_input_std(qmodel, std)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import PlanError
from ..graph.stage import model_graph
from ..model import QuantizedModel, frozen_map

def per_channel(values) -> bool:
    return np.unique(np.asarray(values, np.float64)).size > 1


def reads_channels(node, input_shape) -> bool:
    """True for a conv reading the C x H x W input: its weights see each input channel apart (the
    integer graph takes images only, so a linear never reads the input's channels)."""
    return node.op in ("conv2d", "binary_conv2d") and len(input_shape) == 3


def refuse_reader(node, what: str):
    raise PlanError(f"node {node.name} ({node.op}) reads the input directly, so the per-channel {what} cannot be "
                    f"folded into it; give one value for every channel, or a conv as the first layer")


def input_channel_of_weight(shape: tuple[int, ...], groups: int) -> np.ndarray:
    """The input channel each weight element reads, shaped to broadcast over the weight: for a
    conv (O, C/g, kh, kw), output o and index j read channel (o // (O/g)) * (C/g) + j."""
    o, cg = shape[0], shape[1]
    per_group = o // groups
    channel = (np.arange(o)[:, None] // per_group) * cg + np.arange(cg)[None, :]
    return channel.reshape((o, cg) + (1,) * (len(shape) - 2))


def fold_input_std(qmodel: QuantizedModel, std) -> tuple[QuantizedModel, tuple[float, ...]]:
    """(qmodel, std) unchanged when std is one value for all channels; else the model with every
    input reader's weights divided by std_c, re-quantized with the same plan, and std 1."""
    std = tuple(float(v) for v in np.atleast_1d(std))
    if not per_channel(std):
        return qmodel, std
    model = qmodel.model
    if model.integer_codes:
        raise PlanError("the checkpoint holds integer codes: a per-channel --std cannot be folded into its weights")
    graph = model_graph(model)
    tensors = dict(model.tensors)
    inv = 1.0 / np.asarray(std, np.float64)
    for node in graph.nodes:
        if "input" not in node.inputs:
            continue
        if not reads_channels(node, graph.input_shape):
            refuse_reader(node, "--std")
        name = node.params["weight"]
        w = np.asarray(tensors[name])
        factor = inv[input_channel_of_weight(w.shape, int(node.attrs["groups"]))]
        tensors[name] = (w.astype(np.float64) * factor).astype(w.dtype)
    from ..quantize.pipeline import quantize_model

    folded = replace(model, tensors=frozen_map(tensors))
    requantized = quantize_model(folded, qmodel.plan)
    notes = qmodel.notes + tuple(n for n in requantized.notes if n not in qmodel.notes)
    return replace(requantized, options_text=qmodel.options_text, notes=notes), (1.0,) * len(std)
