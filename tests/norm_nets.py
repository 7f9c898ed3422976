"""Small RGB networks for the per-channel input normalisation tests
(tests/test_integer_input_norm.py), usable as `--model-def norm_nets.py:NAME`; torch only.

    RGBNet      conv 3x3 pad 1 -> ReLU -> conv 3x3 stride 2 pad 1 -> ReLU -> global average -> linear
    GroupedRGB  a grouped first conv (groups 3, 2 filters per channel, pad 2) read by the input
    PoolFirst   a max pool reading the input (refused with per-channel mean/std)
    MLP         linear layers on a (3,) input (refused: no channels to fold)
"""

import torch
from torch import nn

INPUT_SHAPE = (3, 8, 8)


class RGBNet(nn.Module):
    input_shape = INPUT_SHAPE

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class GroupedRGB(nn.Module):
    input_shape = INPUT_SHAPE

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=2, groups=3)
        self.fc = nn.Linear(6 * 10 * 10, 4)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.c1(x)), 1))


class PoolFirst(nn.Module):
    input_shape = INPUT_SHAPE

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 2 * 2, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.c1(nn.functional.max_pool2d(x, 2)), 1))


class MLP(nn.Module):
    input_shape = (3,)  # one "channel" per feature

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))
