"""ResNet18 for CIFAR with every BasicBlock replaced by two seed-003 blocks
BN -> sign -> conv3x3 (pad 1) -> (+ residual) -> PReLU, downsample "v1" (1x1 conv, BN, AvgPool2).

Stem: conv3x3(3->64) + BN + ReLU (CIFAR ResNet18, no max-pool); head: global average pool + fc.
"""

from __future__ import annotations

from torch import nn

from .common import binarize_activation

WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_LAYER = 4  # two seed blocks per original BasicBlock, two BasicBlocks per layer


class BinBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None, conv_bias=True):
        super().__init__()
        self.bn = nn.BatchNorm2d(inplanes)
        self.conv = nn.Conv2d(inplanes, planes, 3, stride, padding=1, bias=conv_bias)
        self.prelu = nn.PReLU(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv(binarize_activation(self.bn(x)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + residual)


class ResNet18BNN(nn.Module):
    def __init__(self, num_classes: int = 10, conv_bias: bool = True, widths=WIDTHS):
        super().__init__()
        w0 = widths[0]
        self.conv1 = nn.Conv2d(3, w0, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w0)
        self.relu = nn.ReLU(inplace=True)
        inplanes = w0
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(BLOCKS_PER_LAYER):
                downsample = None
                if j == 0 and (stride != 1 or inplanes != planes):
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes, kernel_size=1, stride=1, bias=False),
                        nn.BatchNorm2d(planes),
                        nn.AvgPool2d(kernel_size=2, stride=2),
                    )
                blocks.append(BinBlock(inplanes, planes, stride if j == 0 else 1, downsample, conv_bias))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


def build(num_classes: int = 10, conv_bias: bool = True, widths=WIDTHS):
    return ResNet18BNN(num_classes, conv_bias, tuple(widths))
