"""Reader for seed 002's LeNet-5 (c1, c3, c5 convs; f6, output linears)."""

from __future__ import annotations

from .base import ReaderPlugin, build_model, compare_keys, expected_shapes, plan_for, weighted_layers

ARCH = "lenet"
ANNOTATE = {
    "c1": {"follows": ("relu", "avgpool2")},
    "c3": {"follows": ("relu", "avgpool2")},
    "c5": {"follows": ("flatten",)},
    "f6": {"follows": ()},
    "output": {"follows": ()},
}


def detect(state):
    return compare_keys(ARCH, state, expected_shapes(ARCH, {}), {})


def build(checkpoint, detection):
    return build_model(ARCH, checkpoint, detection, ANNOTATE)


def default_plan(model):
    # Seed 002: unsigned 8-bit affine, one scale per tensor, on all five layers.
    return plan_for(model, weighted_layers(model), "affine", 8)


READER = ReaderPlugin(ARCH, "LeNet-5, seed 002", detect, build, default_plan)
