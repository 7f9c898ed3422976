"""Reader for seed 004's MobileNetV1 (entry conv, 13 depthwise-separable blocks, linear)."""

from __future__ import annotations

from ..models.mobilenet import STAGES
from .base import documented_reader, plan_for, shape_of

ARCH = "mobilenet_v1"


def infer_config(state) -> dict:
    lin = shape_of(state, "linear.weight")
    entry = shape_of(state, "entry.0.weight")
    return {"num_classes": lin[0] if lin else 100, "input_channel": entry[1] if entry else 3}


def annotate(cfg) -> dict:
    notes = {"entry.0": {"bn": "entry.1", "bn_direct": True, "follows": ("bn:entry.1", "relu6")}}
    for stage, blocks in STAGES.items():
        for j in range(len(blocks)):
            for part in ("depthConv", "pointConv"):
                p = f"{stage}.{j}.{part}"
                notes[f"{p}.0"] = {"bn": f"{p}.1", "bn_direct": True, "follows": (f"bn:{p}.1", "relu6")}
    notes["linear"] = {"follows": ("softmax",)}
    return notes


def default_plan(model):
    # uint8 affine after BN folding; depthwise convs per channel (their channels differ widely).
    plans = {}
    for layer in model.layers:
        if layer.kind in ("conv", "dwconv", "linear"):
            plans.update(plan_for(model, [layer.name], "affine", 8, per_channel=layer.kind == "dwconv",
                                  fold_bn=layer.kind != "linear"))  # fmt: skip
    return plans


READER = documented_reader(ARCH, "MobileNetV1, seed 004", infer_config, annotate, default_plan)
