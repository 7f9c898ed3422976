"""Foundation: every container variant of every documented architecture is detected as the right
architecture with the right layer graph; forced --arch mismatches name the keys."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ARCHS, CONTAINERS, VGG_REPO
from qexport.errors import ArchMismatchError
from qexport.readers import read_model

# README "Models and readers" key layouts, spelled out independently of qexport.models (a sample of keys per arch).
SPEC_KEYS = {
    "lenet": {"c1.weight": (6, 1, 5, 5), "c3.weight": (16, 6, 5, 5), "c5.weight": (120, 16, 5, 5),
              "f6.weight": (84, 120), "output.weight": (10, 84), "output.bias": (10,)},
    "vgg_cifar10_binary": {"features.0.weight": (128, 3, 3, 3), "features.3.weight": (128, 128, 3, 3),
                           "features.7.weight": (256, 128, 3, 3), "features.10.weight": (256, 256, 3, 3),
                           "features.14.weight": (512, 256, 3, 3), "features.17.weight": (512, 512, 3, 3),
                           "features.19.running_var": (512,), "classifier.0.weight": (10, 8192),
                           "classifier.1.running_mean": (10,)},
    "twn_nin_gc": {"tnn_bin.0.weight": (256, 3, 5, 5), "tnn_bin.1.weight": (256,),
                   "tnn_bin.2.tnn_bin_conv.weight": (256, 128, 1, 1), "tnn_bin.5.tnn_bin_conv.weight": (512, 16, 3, 3),
                   "tnn_bin.9.tnn_bin_conv.weight": (1024, 16, 3, 3), "tnn_bin.10.bn.running_var": (1024,),
                   "tnn_bin.11.weight": (10, 1024, 1, 1), "tnn_bin.12.running_mean": (10,)},
    "resnet18_bnn": {"conv1.weight": (64, 3, 3, 3), "bn1.weight": (64,), "layer1.0.bn.weight": (64,),
                     "layer1.3.conv.weight": (64, 64, 3, 3), "layer2.0.conv.weight": (128, 64, 3, 3),
                     "layer2.0.downsample.0.weight": (128, 64, 1, 1), "layer2.0.downsample.1.running_var": (128,),
                     "layer4.3.prelu.weight": (512,), "fc.weight": (10, 512)},
    "mobilenet_v1": {"entry.0.weight": (32, 3, 3, 3), "entry.1.weight": (32,),
                     "stage1.0.depthConv.0.weight": (32, 1, 3, 3), "stage1.0.pointConv.0.weight": (64, 32, 1, 1),
                     "stage2.5.pointConv.1.running_var": (512,), "stage3.1.depthConv.0.weight": (1024, 1, 3, 3),
                     "linear.weight": (10, 1024)},
}  # fmt: skip


@pytest.mark.parametrize("arch", list(ARCHS))
def test_models_have_the_spec_key_layout(arch, states):
    state = states(arch)
    for key, shape in SPEC_KEYS[arch].items():
        assert tuple(state[key].shape) == shape, key
    # no key outside the documented prefixes
    prefixes = {"lenet": ("c1.", "c3.", "c5.", "f6.", "output."), "vgg_cifar10_binary": ("features.", "classifier."),
                "twn_nin_gc": ("tnn_bin.",), "resnet18_bnn": ("conv1.", "bn1.", "layer", "fc."),
                "mobilenet_v1": ("entry.", "stage1.", "stage2.", "stage3.", "linear.")}[arch]  # fmt: skip
    assert all(k.startswith(prefixes) for k in state)


@pytest.mark.parametrize("variant", CONTAINERS)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_container_is_detected(arch, variant, checkpoint, states):
    path = checkpoint(arch, variant)
    model = read_model(path)
    assert model.arch == arch
    state = states(arch)
    expected_keys = [k for k in state if not (variant == "no_nbt" and k.endswith("num_batches_tracked"))]
    assert list(model.tensors) == expected_keys
    for key in expected_keys:
        np.testing.assert_array_equal(model.tensors[key], state[key].numpy())
    if variant == "binarynet":
        assert model.metadata["epoch"] == 42 and model.metadata["best_prec1"] == 88.5
    if variant == "micronet":
        assert model.metadata["best_acc"] == 91.25
    if variant == "net_acc":
        assert model.metadata["acc"] == 90.5 and model.metadata["epoch"] == 7
    if variant == "module_prefix":
        assert any("module." in note for note in model.notes)


def test_vgg_source_repo_variant(checkpoint):
    model = read_model(checkpoint("vgg_cifar10_binary", "raw", VGG_REPO))
    assert model.arch == "vgg_cifar10_binary"
    assert model.config["infl_ratio"] == 3 and model.config["classifier"] == "three"
    assert model.tensors["features.0.weight"].shape == (384, 3, 3, 3)
    assert model.tensors["features.17.weight"].shape == (512, 1536, 3, 3)
    linears = [l.name for l in model.layers if l.kind == "linear"]
    assert linears == ["classifier.0", "classifier.3", "classifier.6"]
    assert model.layer("classifier.7").attrs["affine"] is False


def _graph(model):
    return {l.name: l for l in model.layers}


def test_lenet_graph():
    from conftest import LENET

    g = _graph(read_model(LENET))
    assert [n for n in g] == ["c1", "c3", "c5", "f6", "output"]
    assert g["c1"].attrs["padding"] == (2, 2) and g["c3"].attrs["padding"] == (0, 0)
    assert g["c1"].follows == ("relu", "avgpool2") and g["c5"].follows == ("flatten",)
    assert g["f6"].kind == "linear" and g["f6"].attrs["in_features"] == 120


def test_vgg_graph(checkpoint):
    g = _graph(read_model(checkpoint("vgg_cifar10_binary")))
    convs = [n for n, l in g.items() if l.kind == "conv"]
    assert convs == ["features.0", "features.3", "features.7", "features.10", "features.14", "features.17"]
    assert not g["features.0"].attrs["binary_input"] and g["features.3"].attrs["binary_input"]
    assert g["features.3"].follows[:2] == ("maxpool2", "bn:features.5")
    assert g["features.0"].attrs["bn"] == "features.1" and g["features.17"].attrs["bn"] == "features.19"
    assert g["classifier.1"].attrs["affine"] is False


def test_twn_graph(checkpoint):
    g = _graph(read_model(checkpoint("twn_nin_gc")))
    tnn = [l for l in g.values() if l.name.endswith("tnn_bin_conv")]
    assert [l.attrs["groups"] for l in tnn] == [2, 2, 16, 4, 4, 32, 8]
    assert [l.attrs["channel_shuffle_before"] for l in tnn] == [0, 2, 2, 16, 4, 4, 32]
    assert tnn[-1].follows[-1] == "sign"
    assert g["tnn_bin.0"].attrs["groups"] == 1 and g["tnn_bin.11"].attrs["kernel"] == (1, 1)


def test_resnet_graph(checkpoint):
    g = _graph(read_model(checkpoint("resnet18_bnn")))
    block_convs = [n for n in g if n.endswith(".conv")]
    assert len(block_convs) == 16
    assert all(g[n].attrs["binary_input"] and g[n].attrs["padding"] == (1, 1) for n in block_convs)
    assert g["layer2.0.conv"].attrs["stride"] == (2, 2) and g["layer2.1.conv"].attrs["stride"] == (1, 1)
    assert {n for n in g if "downsample" in n} == {f"layer{i}.0.downsample.{j}" for i in (2, 3, 4) for j in (0, 1)}
    assert g["layer3.0.downsample.0"].follows[-1] == "avgpool2"
    assert g["layer1.0.prelu"].kind == "prelu" and g["layer1.0.prelu"].attrs["num_parameters"] == 64


def test_mobilenet_graph(checkpoint):
    g = _graph(read_model(checkpoint("mobilenet_v1")))
    dw = [l for l in g.values() if l.kind == "dwconv"]
    assert len(dw) == 13 and all(l.attrs["groups"] == l.attrs["in_channels"] for l in dw)
    assert [l.attrs["stride"][0] for l in dw] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert all(g[l.name].attrs["bn"] == l.name[:-1] + "1" for l in dw)
    assert g["linear"].attrs["out_features"] == 10


def test_exactly_one_reader_claims_each_layout(checkpoint):
    from qexport.readers import detect_all
    from qexport.checkpoint import load_checkpoint

    for arch in ARCHS:
        state = load_checkpoint(checkpoint(arch)).state
        claims = [name for name, d in detect_all(state) if d.matches]
        assert claims == [arch]


@pytest.mark.parametrize("forced", ["mobilenet_v1", "resnet18_bnn", "vgg_cifar10_binary", "twn_nin_gc"])
def test_forced_arch_mismatch_names_the_keys(forced):
    from conftest import LENET

    with pytest.raises(ArchMismatchError) as info:
        read_model(LENET, arch=forced)
    msg = str(info.value)
    assert "lenet_digits.pth" in msg and f"--arch {forced}" in msg
    assert "missing keys:" in msg and "unexpected keys: c1.weight" in msg


def test_forced_arch_wrong_shapes(states, tmp_path):
    import torch

    state = dict(states("mobilenet_v1"))
    state["linear.weight"] = torch.zeros(10, 512)
    path = tmp_path / "m.pth"
    torch.save(state, path)
    with pytest.raises(ArchMismatchError, match=r"linear.weight: got \(10, 512\), expected \(10, 1024\)"):
        read_model(path, arch="mobilenet_v1")
    # undetected, it falls back to generic with a note naming the closest architecture
    model = read_model(path)
    assert model.arch == "generic" and any("closest is mobilenet_v1" in n for n in model.notes)


def test_generic_reader(tmp_path):
    import torch

    state = {"enc.proj.weight": torch.randn(8, 4), "enc.proj.bias": torch.randn(8), "emb.weight": torch.randn(3, 2, 2, 2),
             "scale": torch.tensor(2.0)}  # fmt: skip
    torch.save(state, tmp_path / "x.pt")
    model = read_model(tmp_path / "x.pt")
    assert model.arch == "generic" and not model.has_graph
    assert [(l.name, l.kind, l.bias) for l in model.layers] == [("enc.proj", "linear", "enc.proj.bias"), ("emb", "conv", None)]


def test_integer_codes_pass_through(tmp_path):
    """Seed 002's quant_model.pth: int32 codes 0..255 in place of weights, float biases."""
    import torch

    from conftest import LENET

    state = torch.load(LENET, weights_only=True)
    for k in list(state):
        if k.endswith("weight"):
            state[k] = torch.randint(0, 256, state[k].shape, dtype=torch.int32)
    torch.save(state, tmp_path / "quant_model.pth")
    model = read_model(tmp_path / "quant_model.pth")
    assert model.arch == "lenet" and model.integer_codes
    assert any("already integer codes" in n for n in model.notes)
    np.testing.assert_array_equal(model.tensors["c1.weight"], state["c1.weight"].numpy())
