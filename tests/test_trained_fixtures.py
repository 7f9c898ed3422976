"""The trained fixtures of the four CIFAR architectures (fixtures/make_cifar_fixtures.py): their
held-out set, their compact format, their codes, and the integer graph on real digits.

The integer graph is compared with the float network of its plan on a sample of held-out digits,
calibrated on training digits.  Margin: the two top-1 counts may differ by at most
max(2, 4 % of the sample) images.  The integer graph rounds every activation to 8 bits, so a
digit whose two best logits are close can flip either way; that is expected and small, while a
wrong integer lowering (a scale, a threshold, a zero point) moves accuracy by tens of points.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import FIXTURES, run_cli

sys.path.insert(0, str(FIXTURES))
import trained  # noqa: E402

CIFAR = trained.CIFAR_ARCHS
# (held-out digits, training digits to calibrate on): the numpy graphs of VGG and ResNet18 cost about
# 1 s of CPU per image and pass, so they get few (the whole set is benchmarks/bench_accuracy.py's)
SAMPLE = {"lenet": (48, 64), "mobilenet_v1": (48, 64), "twn_nin_gc": (24, 32), "vgg_cifar10_binary": (8, 8),
          "resnet18_bnn": (8, 8)}


def test_digits32_is_digits_test_enlarged_4x_in_three_channels():
    img28, labels28 = trained.digits28()
    img32, labels32 = trained.digits32()
    # digits_test holds the 8x8 digit enlarged 3x in a 2-pixel border: its 8x8 source, exactly
    img8 = img28[:, 2:26:3, 2:26:3]
    assert np.array_equal(img28[:, 2:26, 2:26], img8.repeat(3, axis=1).repeat(3, axis=2))
    assert not img28[:, :2].any() and not img28[:, 26:].any() and not img28[:, :, :2].any() and not img28[:, :, 26:].any()
    expected = np.broadcast_to(img8.repeat(4, axis=1).repeat(4, axis=2)[:, None], (len(img8), 3, 32, 32))
    assert img32.dtype == np.uint8 and labels32.dtype == np.int64 and img32.shape == (359, 3, 32, 32)
    assert np.array_equal(img32, expected) and np.array_equal(labels32, labels28)


def test_training_split_is_make_fixtures_split_and_disjoint_from_held_out():
    train32, ytrain = trained.train_digits("resnet18_bnn")
    train28, ytrain28 = trained.train_digits("lenet")
    assert len(train32) == 1438 and np.array_equal(ytrain, ytrain28)
    assert np.array_equal(train32[:, 0], train28[:, 2:26:3, 2:26:3].repeat(4, axis=1).repeat(4, axis=2))
    held = {a.tobytes() for a in trained.digits32()[0]}
    assert sum(a.tobytes() in held for a in train32) < 20  # load_digits has a few duplicate images


def test_ternary_packing_round_trips_and_follows_the_documented_codes():
    codes = np.array([0, 1, -1, 1, -1, -1, 0], np.int8)
    packed = trained.pack_ternary(codes)
    # 00 = 0, 01 = +1, 11 = -1, from the low bits: [0, 1, -1, 1] -> 0b01_11_01_00, [-1, -1, 0, pad]
    assert packed.tolist() == [0b01110100, 0b00001111]
    assert np.array_equal(trained.unpack_ternary(packed, 7), codes)


@pytest.mark.parametrize("arch", CIFAR)
def test_checkpoint_is_the_documented_layout_and_read_as_its_architecture(tmp_path, arch):
    import torch

    from qexport.models import build
    from qexport.readers import read_model

    path = trained.checkpoint(arch, tmp_path)
    state = torch.load(path, weights_only=True)
    info = json.loads((FIXTURES / f"{arch}_digits.json").read_text())
    reference = build(arch, info["config"]).state_dict()
    assert list(state) == list(reference)
    with np.load(trained.fixture_path(arch)) as z:  # the fixture stores exactly these tensors
        assert {n.rpartition(":")[0] for n in z.files} == set(reference)
    for key, value in state.items():
        assert value.shape == reference[key].shape, key
        assert value.dtype == (torch.float32 if reference[key].is_floating_point() else reference[key].dtype), key
        assert torch.isfinite(value.float()).all(), key
    model = read_model(path)  # the reader every command uses, detecting from keys and shapes
    assert model.arch == arch and dict(model.config).get("num_classes") == 10


@pytest.mark.parametrize("arch", ["vgg_cifar10_binary", "twn_nin_gc", "resnet18_bnn"])
def test_stored_codes_are_the_codes_qexport_gives(tmp_path, arch):
    from qexport.prepare import prepare

    stored = trained.stored_codes(arch)
    qmodel = prepare(trained.checkpoint(arch, tmp_path), command="npy", plan_kw={"plan": "seed"}).quantized
    layers = {q.weight: q for q in qmodel.layers if q.scheme in ("binary", "ternary")}
    assert set(layers) == set(stored)
    with np.load(trained.fixture_path(arch)) as z:
        for key, q in layers.items():
            codes = qmodel.tensor(key).data
            assert codes.dtype == np.int8 and np.array_equal(codes, stored[key]), key
            if f"{key}:alpha" in z.files:
                assert np.array_equal(q.params["alpha"], z[f"{key}:alpha"]), key
            else:
                assert "alpha" not in q.params, key
            if arch == "twn_nin_gc":
                assert q.scheme == "ternary" and (codes == 0).any() and (codes != 0).any(), key
    # the weights themselves, by the formula: sign * 1, sign * alpha_c, t * alpha_c
    state = trained.state_arrays(arch)
    with np.load(trained.fixture_path(arch)) as z:
        for key, codes in stored.items():
            alpha = z[f"{key}:alpha"] if f"{key}:alpha" in z.files else np.ones(len(codes), np.float32)
            for c in (0, len(codes) - 1):
                assert np.array_equal(state[key][c], codes[c].astype(np.float32) * alpha[c]), key


def test_int8_weights_follow_the_documented_formula():
    """`k:q8` + `k:scale`: scale_c = max|w_c| / 127 (1 for an all-zero channel), codes round half to
    even; MobileNetV1's conv/linear weights are stored so and state_arrays gives codes * scale_c."""
    codes, scale = trained.quantize_int8(np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]], np.float32))
    assert codes.dtype == np.int8 and scale.dtype == np.float32
    assert codes.tolist() == [[64, -127, 32], [0, 0, 0]]  # 0.5 * 127 = 63.5 -> 64, 31.75 -> 32
    assert scale.tolist() == [np.float32(1.0) / np.float32(127), 1.0]
    state = trained.state_arrays("mobilenet_v1")
    with np.load(trained.fixture_path("mobilenet_v1")) as z:
        stored = [n.rpartition(":")[0] for n in z.files if n.endswith(":q8")]
        weights = [k for k, v in state.items() if k.endswith(".weight") and v.ndim >= 2]
        assert stored == weights and len(stored) == 28 and not any(f"{k}:f16" in z.files for k in stored)
        for key in stored:
            q, s = z[f"{key}:q8"], z[f"{key}:scale"]
            assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (state[key].shape[0],)
            peak = np.abs(q.reshape(len(s), -1).astype(np.int64)).max(axis=1)
            assert ((peak == 127) | ((peak == 0) & (s == 1))).all(), key
            want = q.reshape(len(s), -1).astype(np.float64) * s[:, None].astype(np.float64)
            np.testing.assert_allclose(state[key].reshape(len(s), -1), want, rtol=2 ** -23, atol=0, err_msg=key)


@pytest.mark.parametrize("arch", ["mobilenet_v1"])
def test_recorded_accuracies_are_those_of_the_stored_checkpoints(arch):
    """Recompute the float top-1 of the stored checkpoint on all held-out digits and compare with
    the JSON, within 2 images (float32 like the JSON's: a near-tie may flip on another CPU).  The others cost too
    much CPU here; benchmarks/bench_accuracy.py recomputes all five (float64 numpy graph)."""
    import torch

    from qexport.models import build

    images, labels = trained.digits32()
    info = json.loads((FIXTURES / f"{arch}_digits.json").read_text())
    model = build(arch, info["config"])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in trained.state_arrays(arch).items()})
    step = 64
    with torch.no_grad():
        pred = np.concatenate([model(torch.from_numpy(images[i : i + step]).float() / 255).argmax(1).numpy()
                               for i in range(0, len(images), step)])  # fmt: skip
    assert abs(int((pred == labels).sum()) - round(info["float_test_accuracy"] * len(labels))) <= 2, arch
    assert info["test_samples"] == len(labels) and info["input"] == "uint8 pixel / 255 (no mean/std)"


def _sample(arch: str, n: int):
    """Every k-th held-out digit: n images spread over the whole set (and all classes)."""
    images, labels = trained.held_out(arch)
    idx = np.linspace(0, len(images) - 1, n).round().astype(int)
    return images[idx], labels[idx]


@pytest.mark.parametrize("arch", trained.ARCHS)
def test_integer_graph_agrees_with_the_plans_float_network(tmp_path, arch):
    from qexport.integer.command import evaluate

    n, calibration = SAMPLE[arch]
    images, labels = _sample(arch, n)
    np.savez(tmp_path / "heldout.npz", images=images, labels=labels)
    train_images, train_labels = trained.train_digits(arch)
    np.savez(tmp_path / "train.npz", images=train_images[:calibration], labels=train_labels[:calibration])
    result = evaluate(trained.checkpoint(arch, tmp_path), data=tmp_path / "heldout.npz",
                      calibration_data=tmp_path / "train.npz", calibration_samples=calibration,
                      **trained.plan_kw(arch))  # fmt: skip
    assert result["samples"] == n and result["calibration_samples"] == calibration
    planned, integer = round(result["planned"] * n), round(result["integer"] * n)
    margin = max(2, int(0.04 * n))
    assert abs(integer - planned) <= margin, (arch, result["float"], result["planned"], result["integer"])
    assert result["float"] >= 0.8, (arch, result["float"])  # the fixture is trained
