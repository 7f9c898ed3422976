"""Reader for seed 004's MobileNetV1 (entry conv, 13 depthwise-separable blocks, linear)."""

from __future__ import annotations

from ..models.mobilenet import STAGES
from .base import ReaderPlugin, build_model, compare_keys, expected_shapes, plan_for, shape_of

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


def detect(state):
    cfg = infer_config(state)
    return compare_keys(ARCH, state, expected_shapes(ARCH, cfg), cfg)


def build(checkpoint, detection):
    return build_model(ARCH, checkpoint, detection, annotate(detection.config))


def default_plan(model):
    # uint8 affine after BN folding; depthwise convs per channel (their channels differ widely).
    plans = {}
    for layer in model.layers:
        if layer.kind in ("conv", "dwconv", "linear"):
            plans.update(plan_for(model, [layer.name], "affine", 8, per_channel=layer.kind == "dwconv",
                                  fold_bn=layer.kind != "linear"))  # fmt: skip
    return plans


READER = ReaderPlugin(ARCH, "MobileNetV1, seed 004", detect, build, default_plan)
