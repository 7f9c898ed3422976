"""Building blocks shared by the binarized architectures."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def binarize_activation(x: torch.Tensor) -> torch.Tensor:
    """sign(x), with sign(0) = 0 as torch.sign and ONNX Sign define it (the seeds use x.sign())."""
    return torch.sign(x)


class BinarizeConv2d(nn.Conv2d):
    """Seed 000's BinarizeConv2d: input activations binarized unless the input is the RGB image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(1) != 3:
            x = binarize_activation(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BinarizeLinear(nn.Linear):
    """Seed 000's BinarizeLinear: input binarized unless it is a flattened 28x28 image (784)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(1) != 784:
            x = binarize_activation(x)
        return F.linear(x, self.weight, self.bias)


class Sign(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binarize_activation(x)
