"""MobileNetV1 of seed 004 (CIFAR-sized: stride-1 entry conv, global average pool)."""

from __future__ import annotations

from torch import nn

# (in, out, stride) of each depthwise-separable block, per stage
STAGES = {
    "stage1": ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1)),
    "stage2": ((256, 512, 2),) + ((512, 512, 1),) * 5,
    "stage3": ((512, 1024, 2), (1024, 1024, 1)),
}


class DSCconv(nn.Module):
    def __init__(self, in_ch, out_ch, stride=1):
        super().__init__()
        self.depthConv = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, kernel_size=3, stride=stride, padding=1, groups=in_ch, bias=False),
            nn.BatchNorm2d(in_ch),
            nn.ReLU6(inplace=True),
        )
        self.pointConv = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )

    def forward(self, x):
        return self.pointConv(self.depthConv(x))


class MobileNetV1(nn.Module):
    def __init__(self, input_channel: int = 3, num_classes: int = 100):
        super().__init__()
        self.num_classes = num_classes
        self.entry = nn.Sequential(
            nn.Conv2d(input_channel, 32, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU6(inplace=True),
        )
        for name, blocks in STAGES.items():
            setattr(self, name, nn.Sequential(*(DSCconv(i, o, s) for i, o, s in blocks)))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(1024, num_classes)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        x = self.stage3(self.stage2(self.stage1(self.entry(x))))
        x = self.avgpool(x).flatten(1)
        return self.softmax(self.linear(x))


def build(input_channel: int = 3, num_classes: int = 100):
    return MobileNetV1(input_channel, num_classes)
