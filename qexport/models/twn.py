"""The ternary NIN-style network with grouped convs and channel shuffle of seed 001
(666DZY666/model-compression, TWN).  tnn_bin.0 and tnn_bin.11 are float convs; the seven
Tnn_Bin_Conv2d blocks carry the ternary (or binary) weights.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import binarize_activation

DEFAULT_CFG = (256, 256, 256, 512, 512, 512, 1024, 1024)
GROUPS = (2, 2, 16, 4, 4, 32, 8)
# per Tnn block: kernel, padding, channel_shuffle, shuffle_groups (seed 001's Net)
BLOCKS = ((1, 0, 0, 1), (1, 0, 1, 2), (3, 1, 1, 2), (1, 0, 1, 16), (1, 0, 1, 4), (3, 1, 1, 4), (1, 0, 1, 32))
# position of each Tnn block inside tnn_bin
TNN_INDICES = (2, 3, 5, 6, 7, 9, 10)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.size()
    x = x.reshape(b, groups, c // groups, h, w).transpose(1, 2)
    return x.reshape(b, c, h, w)


class TnnBinConv2d(nn.Module):
    def __init__(self, cin, cout, kernel_size, padding, groups, shuffle, shuffle_groups, last_bin=False):
        super().__init__()
        self.channel_shuffle_flag = shuffle
        self.shuffle_groups = shuffle_groups
        self.last_bin = last_bin
        self.tnn_bin_conv = nn.Conv2d(cin, cout, kernel_size, stride=1, padding=padding, groups=groups)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        if self.channel_shuffle_flag:
            x = channel_shuffle(x, self.shuffle_groups)
        x = self.bn(self.tnn_bin_conv(x))
        if self.last_bin:
            x = binarize_activation(x)
        return x


class TwnNet(nn.Module):
    def __init__(self, cfg=DEFAULT_CFG, num_classes: int = 10):
        super().__init__()
        cfg = tuple(cfg)
        blocks = []
        for i, ((k, p, shuf, sg), g) in enumerate(zip(BLOCKS, GROUPS)):
            blocks.append(TnnBinConv2d(cfg[i], cfg[i + 1], k, p, g, bool(shuf), sg, last_bin=(i == 6)))
        self.tnn_bin = nn.Sequential(
            nn.Conv2d(3, cfg[0], kernel_size=5, stride=1, padding=2),
            nn.BatchNorm2d(cfg[0]),
            blocks[0], blocks[1],
            nn.MaxPool2d(2, 2),
            blocks[2], blocks[3], blocks[4],
            nn.MaxPool2d(2, 2),
            blocks[5], blocks[6],
            nn.Conv2d(cfg[7], num_classes, kernel_size=1, stride=1, padding=0),
            nn.BatchNorm2d(num_classes),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(kernel_size=8, stride=1, padding=0),
        )  # fmt: skip

    def forward(self, x):
        x = self.tnn_bin(x)
        return x.reshape(x.size(0), -1)


def build(cfg=DEFAULT_CFG, num_classes: int = 10):
    return TwnNet(cfg, num_classes)
