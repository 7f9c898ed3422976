"""Networks with binary layers (the binarized VGG and ResNet18, or your module): run the network's
float torch module (qexport.graph.stage.network_module) carrying the *dequantized* weights, capture the input of every binary conv/linear layer whose input is
binarized (or those matching --layer GLOB) and turn it into popcount stages (popcount.py).  Plus
`input` (uint8 images) and `prediction` (argmax of the float model, which sees code / G)."""

from __future__ import annotations

from fnmatch import fnmatchcase

import numpy as np

from ..encode.options import EncodeOptions
from ..errors import CannotHandle
from ..model import QuantizedModel
from .popcount import popcount_layer
from .stages import Golden, Inputs, Stage, add_labels

BATCH = 16  # images per forward pass / popcount batch (bounds memory)


def dequantized_state(qmodel: QuantizedModel) -> dict[str, np.ndarray]:
    """Float tensors (PyTorch layout) with every binary/ternary weight replaced by its dequantized
    value, codes * alpha (codes alone without alpha).  BN tensors stay the checkpoint's (a BN folded
    to thresholds is equivalent to it).  Only binary architectures get here, and a plan cannot mix
    binary and affine layers (--bits applies to every quantized layer)."""
    from ..quantize.dequantize import dequantize_layer

    state = {k: np.asarray(v) for k, v in qmodel.model.tensors.items()}
    for q in qmodel.layers:
        if not q.weight or q.scheme == "passthrough":
            continue
        if q.scheme not in ("binary", "ternary"):
            raise CannotHandle(f"layer {q.name}: golden vectors of binary layers need the other layers binary, "
                               f"ternary or float, not {q.scheme}")  # fmt: skip
        state[q.weight] = dequantize_layer(q, qmodel.tensor(q.weight).data)
    return state


def binary_layers(qmodel: QuantizedModel, globs=()) -> list:
    """Binary conv/linear layers whose input is binarized (filtered by --layer globs)."""
    graph = {layer.name: layer for layer in qmodel.model.layers}
    found = [q for q in qmodel.layers if q.scheme == "binary" and q.kind in ("conv", "linear")
             and graph[q.name].attrs.get("binary_input")]  # fmt: skip
    if globs:
        found = [q for q in found if any(fnmatchcase(q.name, g) for g in globs)]
    return found


def binary_golden(qmodel: QuantizedModel, inputs: Inputs, globs, encoding: EncodeOptions) -> Golden:
    import torch

    from ..graph.stage import network_module

    layers = binary_layers(qmodel, globs)
    if not layers:
        which = f" matching --layer {' '.join(globs)}" if globs else ""
        raise CannotHandle(f"{qmodel.model.source.name}: no binary conv/linear layer with binarized input{which} "
                           f"in this plan; golden vectors need the default binary plan (or --bits 1)")  # fmt: skip
    net = network_module(qmodel.model)  # your module (--model-def) or qexport's
    state = {k: torch.from_numpy(np.array(v)) for k, v in dequantized_state(qmodel).items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CannotHandle(f"{qmodel.model.source.name}: the model's tensors do not fit its network's module "
                           f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")  # fmt: skip
    captured: dict[str, list[np.ndarray]] = {q.name: [] for q in layers}
    hooks = []
    for q in layers:
        def hook(module, args, name=q.name):
            captured[name].append(args[0].detach().cpu().numpy().copy())

        hooks.append(net.get_submodule(q.name).register_forward_pre_hook(hook))
    gain = float(qmodel.plan.options.input_gain)
    preds = []
    try:
        with torch.no_grad():
            for i in range(0, inputs.images.shape[0], BATCH):
                x = torch.from_numpy(inputs.images[i:i + BATCH].astype(np.float32) / np.float32(gain))
                preds.append(net(x).argmax(dim=1).numpy().astype(np.int64))
    finally:
        for h in hooks:
            h.remove()
    stages = [Stage("input", inputs.images, f"input codes x (the float model sees x/{int(gain)}), uint8", "NCHW")]
    notes = []
    for q in layers:
        layer_stages = popcount_layer(qmodel, q.name, np.concatenate(captured[q.name]), encoding)
        zeros = layer_stages[0].attrs["exact_zero_inputs"]
        if zeros:
            notes.append(f"{q.name}: {zeros} input activation(s) were exactly 0 (sign 0 in the float model); "
                         f"the golden vectors take them as -1")  # fmt: skip
        stages.extend(layer_stages)
    pred = np.concatenate(preds)
    stages.append(Stage("prediction", pred, "argmax of the float model with dequantized weights", "N"))
    g = Golden("binary-popcount", stages, inputs, notes)
    add_labels(g, pred)
    return g
