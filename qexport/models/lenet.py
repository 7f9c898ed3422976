"""LeNet-5 of seed 002: ReLU instead of sigmoid, average pooling, 28x28 single-channel input."""

from __future__ import annotations

from torch import nn


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.Relu = nn.ReLU()
        self.s2 = nn.AvgPool2d(kernel_size=2, stride=2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.s4 = nn.AvgPool2d(kernel_size=2, stride=2)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.flatten = nn.Flatten()
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)

    def forward(self, x):
        x = self.s2(self.Relu(self.c1(x)))
        x = self.s4(self.Relu(self.c3(x)))
        x = self.flatten(self.c5(x))
        return self.output(self.f6(x))


def build() -> LeNet:
    return LeNet()
