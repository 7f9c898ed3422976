"""Reader for the BinaryNet VGG of seed 000: infl_ratio and classifier variant inferred from shapes."""

from __future__ import annotations

from .base import documented_reader, plan_for, shape_of, weighted_layers

ARCH = "vgg_cifar10_binary"
CONVS = ("features.0", "features.3", "features.7", "features.10", "features.14", "features.17")
BNS = ("features.1", "features.5", "features.8", "features.12", "features.15", "features.19")
POOLED = {"features.3", "features.10", "features.17"}  # MaxPool2d between conv and BN


def infer_config(state) -> dict:
    cfg = {"infl_ratio": 1, "classifier": "single", "num_classes": 10, "hidden": 1024}
    first = shape_of(state, "features.0.weight")
    if first and first[0] % 128 == 0 and first[0] >= 128:
        cfg["infl_ratio"] = first[0] // 128
    if "classifier.6.weight" in state:
        cfg["classifier"] = "three"
        cfg["num_classes"] = shape_of(state, "classifier.6.weight")[0]
        cfg["hidden"] = shape_of(state, "classifier.0.weight")[0]
    elif shape_of(state, "classifier.0.weight"):
        cfg["num_classes"] = shape_of(state, "classifier.0.weight")[0]
    return cfg


def annotate(cfg) -> dict:
    notes = {}
    for i, (conv, bn) in enumerate(zip(CONVS, BNS)):
        pool = ("maxpool2",) if conv in POOLED else ()
        notes[conv] = {"binary_input": i > 0, "bn": bn, "bn_direct": conv not in POOLED,
                       "follows": pool + (f"bn:{bn}", "hardtanh", "sign")}  # fmt: skip
    if cfg["classifier"] == "single":
        linears, bns = ("classifier.0",), ("classifier.1",)
    else:
        linears, bns = ("classifier.0", "classifier.3", "classifier.6"), ("classifier.1", "classifier.4", "classifier.7")
    for i, (lin, bn) in enumerate(zip(linears, bns)):
        last = i == len(linears) - 1
        notes[lin] = {"binary_input": True, "bn": bn, "bn_direct": True,
                      "follows": (f"bn:{bn}", "logsoftmax") if last else (f"bn:{bn}", "hardtanh", "sign")}  # fmt: skip
    return notes


def default_plan(model):
    # Seed 000: deterministic binarization, no alpha, of every conv and linear (the first one too).
    return plan_for(model, weighted_layers(model), "binary", 1)


READER = documented_reader(ARCH, "BinaryNet VGG for CIFAR-10, seed 000", infer_config, annotate, default_plan)
