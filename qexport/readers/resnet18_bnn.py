"""Reader for the seed-003 binarized ResNet18 (BN -> sign -> conv -> +residual -> PReLU blocks)."""

from __future__ import annotations

from ..models.resnet18_bnn import BLOCKS_PER_LAYER, WIDTHS
from .base import documented_reader, plan_for, shape_of

ARCH = "resnet18_bnn"


def infer_config(state) -> dict:
    fc = shape_of(state, "fc.weight")
    widths = tuple((shape_of(state, f"layer{i + 1}.0.conv.weight") or (w,))[0] for i, w in enumerate(WIDTHS))
    return {"num_classes": fc[0] if fc else 10, "conv_bias": "layer1.0.conv.bias" in state, "widths": widths}


def block_names(prefix_only=False):
    return [f"layer{i}.{j}" for i in range(1, 5) for j in range(BLOCKS_PER_LAYER)]


def annotate(cfg) -> dict:
    notes = {"conv1": {"bn": "bn1", "bn_direct": True, "follows": ("bn:bn1", "relu")}}
    for block in block_names():
        notes[f"{block}.bn"] = {"follows": ("sign", f"conv:{block}.conv")}
        notes[f"{block}.conv"] = {"binary_input": True, "follows": ("add_residual", f"prelu:{block}.prelu")}
        notes[f"{block}.downsample.0"] = {"bn": f"{block}.downsample.1", "bn_direct": True,
                                          "follows": (f"bn:{block}.downsample.1", "avgpool2")}  # fmt: skip
    notes["fc"] = {"follows": ()}
    return notes


def default_plan(model):
    # Seed 003: binary weights with a per-output-channel alpha in the blocks; stem, shortcut, fc float.
    return plan_for(model, [f"{b}.conv" for b in block_names()], "binary", 1, per_channel=True, alpha=True)


READER = documented_reader(ARCH, "binarized ResNet18, seed 003", infer_config, annotate, default_plan)
