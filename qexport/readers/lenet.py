"""Reader for seed 002's LeNet-5 (c1, c3, c5 convs; f6, output linears)."""

from __future__ import annotations

from .base import documented_reader, plan_for, weighted_layers

ARCH = "lenet"
ANNOTATE = {
    "c1": {"follows": ("relu", "avgpool2")},
    "c3": {"follows": ("relu", "avgpool2")},
    "c5": {"follows": ("flatten",)},
    "f6": {"follows": ()},
    "output": {"follows": ()},
}


def default_plan(model):
    # Seed 002: unsigned 8-bit affine, one scale per tensor, on all five layers.
    return plan_for(model, weighted_layers(model), "affine", 8)


READER = documented_reader(ARCH, "LeNet-5, seed 002", lambda state: {}, lambda config: ANNOTATE, default_plan)
