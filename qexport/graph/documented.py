"""Graphs of the five documented architectures, traced from qexport's own modules
(`qexport.models.build`) through the same code path as a `--model-def` module (README "The
network graph", "Documented architectures").  What qexport assumed about the network that
trained the checkpoint is the architecture's `ASSUMPTIONS` text, shown by `inspect --graph`.
"""

from __future__ import annotations

_OWN = "; give --model-def FILE.py:NAME to use your own module"
ASSUMPTIONS = {
    "lenet": "assumed seed 002's LeNet (qexport.models.lenet): ReLU after c1 and c3, average pooling, "
             "no activation after c5 and f6" + _OWN,
    "vgg_cifar10_binary": "assumed seed 000's BinaryNet VGG (qexport.models.vgg): BinarizeConv2d/BinarizeLinear "
                          "binarize their input except the RGB image, weights used as stored, BN + Hardtanh, "
                          "LogSoftmax at the end" + _OWN,
    "twn_nin_gc": "assumed seed 001's TWN NIN (qexport.models.twn): grouped convs, channel shuffle before Tnn "
                  "blocks 2-7, sign after the last Tnn block, ReLU and 8x8 average pool at the end" + _OWN,
    "resnet18_bnn": "assumed ResNet18 with seed 003's blocks (qexport.models.resnet18_bnn): BN -> sign -> conv3x3 "
                    "-> + residual -> PReLU, downsample 1x1 conv + BN + AvgPool2" + _OWN,
    "mobilenet_v1": "assumed seed 004's MobileNetV1 (qexport.models.mobilenet): depthwise-separable blocks with "
                    "BN + ReLU6, global average pool, linear, softmax" + _OWN,
}  # fmt: skip


def graph_for_documented(arch: str, config=None):
    """The Graph of documented architecture `arch` built with `config` (the reader's config)."""
    from ..errors import GraphError
    from ..models import BUILDERS, INPUT_SHAPES, build
    from .trace import trace_module

    if arch not in BUILDERS:
        raise GraphError(f"{arch}: not a documented architecture (documented: {', '.join(BUILDERS)}); "
                         f"give --model-def FILE.py:NAME for the module that defines it")  # fmt: skip
    module = build(arch, dict(config or {}))
    label = f"documented {arch}" + (f" {dict(config)}" if config else "")
    return trace_module(module, INPUT_SHAPES[arch], origin=label, assumption=ASSUMPTIONS[arch], where=arch)
