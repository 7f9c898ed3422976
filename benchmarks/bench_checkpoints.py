"""The realistic checkpoints benchmarks/run.py measures on (generated outside every timing):
ResNet18-BNN, the BinaryNet VGG (qexport.models.build, random initialisation with non-trivial BN
statistics) and a synthetic state_dict of large convs and linears, saved with torch.save."""

from __future__ import annotations

import sys
import time
from pathlib import Path

MiB = 1 << 20


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_checkpoints(folder: Path, sizes: dict) -> dict[str, dict]:
    import torch

    from qexport.models import build

    torch.manual_seed(0)
    ckpts = {}

    def trained_like(model):
        """The module's state_dict with non-trivial BatchNorm statistics and affine parameters."""
        gen = torch.Generator().manual_seed(1)
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
                if module.affine:
                    module.weight.data.copy_(torch.randn(module.weight.shape, generator=gen) * 0.5 + 1.0)
                    module.bias.data.copy_(torch.randn(module.bias.shape, generator=gen) * 0.5)
        return model.state_dict()

    def save(key, label, state):
        path = folder / f"{key}.pth"
        torch.save(state, path)
        params = int(sum(t.numel() for t in state.values()))
        ckpts[key] = {"label": label, "path": str(path), "params": params, "file_bytes": path.stat().st_size}
        log(f"checkpoint {key}: {params:,} parameters, {path.stat().st_size / MiB:.1f} MiB")

    save("resnet18", "ResNet18-BNN", trained_like(build("resnet18_bnn", sizes["resnet18"])))
    vgg = sizes["vgg"]
    save("vgg", f"BinaryNet VGG r={vgg['infl_ratio']}", trained_like(build("vgg_cifar10_binary", vgg)))
    syn = sizes["synthetic"]
    gen = torch.Generator().manual_seed(0)
    state = {}
    for i in range(syn["convs"]):
        state[f"features.{i}.weight"] = torch.randn(syn["conv"], generator=gen) * 0.02
        state[f"features.{i}.bias"] = torch.randn(syn["conv"][0], generator=gen) * 0.01
    for i in range(syn["linears"]):
        state[f"classifier.{i}.weight"] = torch.randn(syn["linear"], generator=gen) * 0.02
        state[f"classifier.{i}.bias"] = torch.randn(syn["linear"][0], generator=gen) * 0.01
    save("synthetic", "synthetic state_dict", state)
    return ckpts
