"""Networks written for the issue 14 end-to-end tests (tests/test_graph_end_to_end.py), in one
plain file usable as `--model-def graph_zoo.py:NAME`: it imports only torch and the standard
library.  Inputs are 1x28x28 (the digits fixture) unless a module sets `input_shape`.

    SigmoidLeNet    the tutorial LeNet-5 under the documented lenet keys c1 c3 c5 f6 output
                    (claimed by the lenet reader), Sigmoid after c1 and c3, 2x2 average pools
    RenamedLeNet    a LeNet under other names, with max pools and a dropout (generic reader)
    NIN(groups=1)   network-in-network style 1x1 convs with BN; groups > 1: grouped 1x1 conv
                    after a channel shuffle written as view / transpose / view
    CNV             BinaryNet-CNV-like: features.{0,4,8} binarized convs (weights and input
                    through the autograd Function BinActive; not the RGB image), BN, Hardtanh,
                    max pools, classifier = BinarizeLinear + affine BatchNorm1d; 3x32x32
    BinActiveNet    seed 003's way: BN -> BinActive.apply (sign) -> plain Conv2d
    ResNet          a stem and two basic blocks (the second with a 1x1 stride-2 downsample), add
    MobileNetV2ish  a stem and two inverted-residual blocks (expand, depthwise, project, ReLU6)
    make_cnn(width=8, classes=10)  a function with keyword arguments returning a Sequential
"""

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (1, 28, 28)


class SigmoidLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)

    def forward(self, x):
        x = F.avg_pool2d(torch.sigmoid(self.c1(x)), 2)
        x = F.avg_pool2d(torch.sigmoid(self.c3(x)), 2)
        x = torch.flatten(self.c5(x), 1)
        return self.output(self.f6(x))


class RenamedLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(1, 6, 3, padding=1)
        self.conv_b = nn.Conv2d(6, 12, 3)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.25)
        self.hidden = nn.Linear(12 * 6 * 6, 32)
        self.logits = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv_a(x)))  # 6 x 14 x 14
        x = self.pool(F.relu(self.conv_b(x)))  # 12 x 6 x 6
        x = self.drop(x.view(x.size(0), -1))
        return self.logits(F.relu(self.hidden(x)))


def channel_shuffle(x, groups):
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


class NIN(nn.Module):
    def __init__(self, groups=1):
        super().__init__()
        self.groups = groups
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 1, groups=groups)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16, 10, 1)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 2)  # 8 x 14 x 14
        if self.groups > 1:
            x = channel_shuffle(x, self.groups)
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.avg_pool2d(self.conv3(x), 2)  # 10 x 7 x 7
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class BinActive(torch.autograd.Function):
    """sign(x) forward, straight-through gradient clipped to |x| <= 1 (seed 003's BinActive)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sign()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class BinarizeConv2d(nn.Conv2d):
    """Binarized weights always; binarized input unless binarize_input=False (the RGB image)."""

    def __init__(self, *args, binarize_input=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.binarize_input = binarize_input

    def forward(self, x):
        if self.binarize_input:
            x = BinActive.apply(x)
        return F.conv2d(x, BinActive.apply(self.weight), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class BinarizeLinear(nn.Linear):
    def forward(self, x):
        return F.linear(BinActive.apply(x), BinActive.apply(self.weight), self.bias)


class CNV(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_shape = (3, 32, 32)
        self.features = nn.Sequential(
            BinarizeConv2d(3, 16, 3, padding=1, bias=False, binarize_input=False),  # 0
            nn.BatchNorm2d(16),  # 1
            nn.Hardtanh(inplace=True),  # 2
            nn.MaxPool2d(2),  # 3: 16 x 16
            BinarizeConv2d(16, 32, 3, padding=1, bias=False),  # 4
            nn.BatchNorm2d(32),  # 5
            nn.Hardtanh(inplace=True),  # 6
            nn.MaxPool2d(2),  # 7: 8 x 8
            BinarizeConv2d(32, 32, 3, bias=False),  # 8: 6 x 6
            nn.BatchNorm2d(32),  # 9
            nn.Hardtanh(inplace=True),  # 10
        )
        self.classifier = nn.Sequential(BinarizeLinear(32 * 6 * 6, 10, bias=False), nn.BatchNorm1d(10))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class BinActiveNet(nn.Module):
    """BN, then BinActive (sign), then a plain conv: the conv's input is binarized by the graph."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16, 16, 3, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.conv2(BinActive.apply(self.bn1(x)))
        x = F.max_pool2d(x, 2)  # 16 x 14 x 14
        x = F.relu(self.conv3(BinActive.apply(self.bn2(x))))  # 16 x 7 x 7
        return self.fc(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + skip)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False)  # 8 x 14 x 14
        self.bn = nn.BatchNorm2d(8)
        self.block1 = BasicBlock(8, 8)
        self.block2 = BasicBlock(8, 16, stride=2)  # 16 x 7 x 7
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.block2(self.block1(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


class InvertedResidual(nn.Module):
    def __init__(self, c, expand=3):
        super().__init__()
        h = c * expand
        self.expand = nn.Conv2d(c, h, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(h)
        self.dw = nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False)
        self.bn2 = nn.BatchNorm2d(h)
        self.project = nn.Conv2d(h, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu6(self.bn1(self.expand(x)))
        y = F.relu6(self.bn2(self.dw(y)))
        return x + self.bn3(self.project(y))


class MobileNetV2ish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False)  # 8 x 14 x 14
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU6(inplace=True)
        self.blocks = nn.Sequential(InvertedResidual(8), InvertedResidual(8, expand=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.blocks(self.act(self.bn(self.stem(x))))
        return self.head(self.pool(x).flatten(1))


def make_cnn(width=8, classes=10):
    """A plain CNN built by a function: 1x28x28 -> conv 3x3 -> 26 -> pool 13 -> conv 3x3 -> 11 -> pool 5."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * 5 * 5, classes),
    )  # fmt: skip
