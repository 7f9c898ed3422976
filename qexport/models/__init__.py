"""The five documented architectures as torch modules, with exactly the state_dict key layout of
README "Models and readers" (checked by tests).

These modules compute with the weights they hold: quantized export loads *dequantized* weights into
them (the ONNX writer and tests do this); they never re-binarize weights in `forward`.  Activation
binarization is `torch.sign` (sign(0) = 0), as in the seed code and ONNX `Sign`.

Importing this package imports torch; nothing on the CLI start-up path does.
"""

from __future__ import annotations

import importlib

# arch id -> (module, builder); builders take the config dict the matching reader inferred.
BUILDERS = {
    "lenet": "qexport.models.lenet:build",
    "vgg_cifar10_binary": "qexport.models.vgg:build",
    "twn_nin_gc": "qexport.models.twn:build",
    "resnet18_bnn": "qexport.models.resnet18_bnn:build",
    "mobilenet_v1": "qexport.models.mobilenet:build",
}

# Input shape (C, H, W) each architecture was written for.
INPUT_SHAPES = {
    "lenet": (1, 28, 28),
    "vgg_cifar10_binary": (3, 32, 32),
    "twn_nin_gc": (3, 32, 32),
    "resnet18_bnn": (3, 32, 32),
    "mobilenet_v1": (3, 32, 32),
}


def build(arch: str, config: dict | None = None, device=None):
    """Instantiate architecture `arch` (eval mode).  `device="meta"` builds it without memory."""
    import torch

    module_name, _, attr = BUILDERS[arch].partition(":")
    builder = getattr(importlib.import_module(module_name), attr)
    with torch.device(device or "cpu"):
        model = builder(**dict(config or {}))
    return model.eval()
