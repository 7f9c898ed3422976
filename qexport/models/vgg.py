"""BinaryNet VGG for CIFAR-10 (seed 000 and its source repo, itayhubara/BinaryNet.pytorch).

infl_ratio r widens the first five convs (1 in the seed text, 3 in the repo); the last conv always
has 512 outputs.  classifier="single": the seed text's BinarizeLinear(8192, n) + BN1d(affine=False);
classifier="three": the repo's 8192 -> hidden -> hidden -> n with BN1d + Hardtanh between.
"""

from __future__ import annotations

from torch import nn

from .common import BinarizeConv2d, BinarizeLinear


class VGGCifar10Binary(nn.Module):
    def __init__(self, num_classes: int = 10, infl_ratio: int = 1, classifier: str = "single", hidden: int = 1024):
        super().__init__()
        r = infl_ratio
        c = [128 * r, 128 * r, 256 * r, 256 * r, 512 * r, 512]

        def conv(cin, cout):
            return BinarizeConv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True)

        self.features = nn.Sequential(
            conv(3, c[0]), nn.BatchNorm2d(c[0]), nn.Hardtanh(inplace=True),
            conv(c[0], c[1]), nn.MaxPool2d(2, 2), nn.BatchNorm2d(c[1]), nn.Hardtanh(inplace=True),
            conv(c[1], c[2]), nn.BatchNorm2d(c[2]), nn.Hardtanh(inplace=True),
            conv(c[2], c[3]), nn.MaxPool2d(2, 2), nn.BatchNorm2d(c[3]), nn.Hardtanh(inplace=True),
            conv(c[3], c[4]), nn.BatchNorm2d(c[4]), nn.Hardtanh(inplace=True),
            conv(c[4], c[5]), nn.MaxPool2d(2, 2), nn.BatchNorm2d(c[5]), nn.Hardtanh(inplace=True),
        )  # fmt: skip
        if classifier == "single":
            self.classifier = nn.Sequential(
                BinarizeLinear(512 * 4 * 4, num_classes, bias=True),
                nn.BatchNorm1d(num_classes, affine=False),
                nn.LogSoftmax(dim=1),
            )
        elif classifier == "three":
            self.classifier = nn.Sequential(
                BinarizeLinear(512 * 4 * 4, hidden, bias=True), nn.BatchNorm1d(hidden), nn.Hardtanh(inplace=True),
                BinarizeLinear(hidden, hidden, bias=True), nn.BatchNorm1d(hidden), nn.Hardtanh(inplace=True),
                BinarizeLinear(hidden, num_classes, bias=True), nn.BatchNorm1d(num_classes, affine=False),
                nn.LogSoftmax(dim=1),
            )  # fmt: skip
        else:
            raise ValueError(f"classifier must be 'single' or 'three', not {classifier!r}")

    def forward(self, x):
        x = self.features(x)
        x = x.reshape(x.size(0), 512 * 4 * 4)
        return self.classifier(x)


def build(num_classes: int = 10, infl_ratio: int = 1, classifier: str = "single", hidden: int = 1024):
    return VGGCifar10Binary(num_classes, infl_ratio, classifier, hidden)
