"""Shared fixtures: checkpoints of every documented architecture at full size (random init, fixed
seed, non-trivial BN statistics), saved in every container variant README "Models and readers" lists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
LENET = FIXTURES / "lenet_digits.pth"

ARCHS = {
    "lenet": {},
    "vgg_cifar10_binary": {"infl_ratio": 1, "classifier": "single"},
    "twn_nin_gc": {},
    "resnet18_bnn": {"num_classes": 10},
    "mobilenet_v1": {"num_classes": 10},
}
VGG_REPO = {"infl_ratio": 3, "classifier": "three"}  # the source repo's variant

CONTAINERS = ("raw", "binarynet", "micronet", "net_acc", "module_prefix", "cuda", "no_nbt", "legacy")


def make_state(arch: str, config: dict | None = None, seed: int = 0) -> dict:
    """A state_dict of qexport's module for `arch`: fixed-seed init, randomised BN statistics."""
    import torch

    from qexport.models import build

    torch.manual_seed(seed)
    model = build(arch, config if config is not None else ARCHS[arch])
    state = model.state_dict()
    gen = torch.Generator().manual_seed(seed + 1)
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.copy_(torch.randn(value.shape, generator=gen) * 0.1)
        elif key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
        elif key.endswith("num_batches_tracked"):
            value.fill_(1234)
        elif key.split(".")[-1] in ("weight", "bias") and value.ndim == 1 and "bn" in _bn_hint(model, key):
            value.copy_(torch.randn(value.shape, generator=gen) * 0.5 + (1.0 if key.endswith("weight") else 0.0))
    return {k: v.clone() for k, v in state.items()}


def _bn_hint(model, key: str) -> str:
    from torch import nn

    module = model.get_submodule(key.rsplit(".", 1)[0])
    return "bn" if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) else ""


def save_container(state: dict, variant: str, path: Path) -> Path:
    """Save `state` the way a given training script would."""
    import torch
    import torch.serialization as ser

    if variant == "raw":
        torch.save(state, path)
    elif variant == "binarynet":
        regime = {0: {"optimizer": "Adam", "betas": (0.9, 0.999), "lr": 5e-3}, 40: {"lr": 1e-3}}
        torch.save({"epoch": 42, "model": "vgg_cifar10_binary", "config": "", "state_dict": state,
                    "best_prec1": 88.5, "regime": regime}, path)  # fmt: skip
    elif variant == "micronet":
        torch.save({"best_acc": 91.25, "state_dict": state}, path)
    elif variant == "net_acc":
        torch.save({"net": state, "acc": 90.5, "epoch": 7}, path)
    elif variant == "module_prefix":
        torch.save({"module." + k: v for k, v in state.items()}, path)
    elif variant == "cuda":
        # What a GPU-trained file looks like: storages tagged "cuda:0" (loaded with map_location="cpu").
        original = ser.location_tag
        ser.location_tag = lambda storage: "cuda:0"
        try:
            torch.save(state, path)
        finally:
            ser.location_tag = original
    elif variant == "no_nbt":
        torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    elif variant == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        raise ValueError(variant)
    return path


@pytest.fixture(scope="session")
def states():
    cache: dict = {}

    def get(arch: str, config: dict | None = None, seed: int = 0) -> dict:
        key = (arch, repr(sorted((config or {}).items())), seed)
        if key not in cache:
            cache[key] = make_state(arch, config, seed)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, states):
    """checkpoint(arch, variant="raw", config=None) -> path of a saved checkpoint (cached)."""
    folder = tmp_path_factory.mktemp("ckpt")
    made: dict = {}

    def get(arch: str, variant: str = "raw", config: dict | None = None, seed: int = 0) -> Path:
        key = (arch, variant, repr(sorted((config or {}).items())), seed)
        if key not in made:
            name = f"{arch}_{variant}_{len(made)}.pth"
            made[key] = save_container(states(arch, config, seed), variant, folder / name)
        return made[key]

    return get


def run_cli(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (not CliRunner): exit codes, stderr and signals as users see them."""
    return subprocess.run([sys.executable, "-m", "qexport.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def digits_test_split():
    data = np.load(FIXTURES / "digits_test.npz")
    return data["images"], data["labels"]


def import_file(path, name: str):
    """The module a Python file defines (a --model-def file a test wrote, a benchmark script), as `name`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
