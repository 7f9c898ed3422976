"""Reader for seed 001's ternary network (grouped convs, channel shuffle)."""

from __future__ import annotations

from ..models.twn import BLOCKS, DEFAULT_CFG, TNN_INDICES
from .base import documented_reader, plan_for, shape_of

ARCH = "twn_nin_gc"


def infer_config(state) -> dict:
    cfg = list(DEFAULT_CFG)
    first = shape_of(state, "tnn_bin.0.weight")
    if first:
        cfg[0] = first[0]
    for i, idx in enumerate(TNN_INDICES):
        shape = shape_of(state, f"tnn_bin.{idx}.tnn_bin_conv.weight")
        if shape:
            cfg[i + 1] = shape[0]
    last = shape_of(state, "tnn_bin.11.weight")
    return {"cfg": tuple(cfg), "num_classes": last[0] if last else 10}


def tnn_layers():
    return [f"tnn_bin.{i}.tnn_bin_conv" for i in TNN_INDICES]


def annotate(cfg) -> dict:
    notes = {"tnn_bin.0": {"bn": "tnn_bin.1", "bn_direct": True, "follows": ("bn:tnn_bin.1",)},
             # the last conv takes the sign of the last Tnn block: its input is binarized
             "tnn_bin.11": {"binary_input": True, "bn": "tnn_bin.12", "bn_direct": True,
                            "follows": ("bn:tnn_bin.12", "relu", "avgpool8")}}  # fmt: skip
    for n, (idx, (_k, _p, shuffle, groups)) in enumerate(zip(TNN_INDICES, BLOCKS)):
        bn = f"tnn_bin.{idx}.bn"
        after = ("maxpool2",) if idx in (3, 7) else ()
        sign = ("sign",) if n == len(TNN_INDICES) - 1 else ()
        notes[f"tnn_bin.{idx}.tnn_bin_conv"] = {
            "bn": bn, "bn_direct": True, "channel_shuffle_before": groups if shuffle else 0,
            "follows": (f"bn:{bn}",) + sign + after,
        }  # fmt: skip
    return notes


def default_plan(model):
    # Seed 001 / TWN: per-output-channel ternary on the seven Tnn convs; first and last conv float.
    return plan_for(model, tnn_layers(), "ternary", 2, per_channel=True)


READER = documented_reader(ARCH, "ternary NIN with grouped convs, seed 001", infer_config, annotate, default_plan)
