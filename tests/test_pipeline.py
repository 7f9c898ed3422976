"""Quantization stage end to end: plans, the LeNet integer pass on real data, seed-002
compatibility, integer scales, BN folding and BNN thresholds, report, layouts and packing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import LENET, digits_test_split, run_cli
from qexport.errors import PlanError, UsageError
from qexport.export import load_model, plan_options_from, quantize
from qexport.encode import pack
from qexport.encode.arrange import arrange
from qexport.encode.options import encode_options_from
from qexport.quantize.reference import lenet_forward_int
from references import seed002_quantize_tensor  # seed 002's torch code, shared with test_quant_affine.py


def q(path, **kw):
    """The arrays a writer receives for these options (quantized, then arranged)."""
    if kw.get("bits") is None:
        kw.setdefault("plan", "seed")  # these tests check the architectures' seed plans
    return arrange(quantize(load_model(path), plan_options_from(**kw)), encode_options_from(**kw))


def float_lenet_accuracy() -> float:
    from qexport.models import build

    model = build("lenet")
    model.load_state_dict(torch.load(LENET, weights_only=True))
    x, y = digits_test_split()
    with torch.no_grad():
        pred = model(torch.from_numpy(x).float().unsqueeze(1) / 256).argmax(1).numpy()
    return float((pred == y).mean())


def test_lenet_integer_pass_keeps_accuracy():
    x, y = digits_test_split()
    acts = lenet_forward_int(q(LENET).quantized, x)
    int_acc = float((acts["output"].argmax(1) == y).mean())
    float_acc = float_lenet_accuracy()
    print(f"LeNet digits held-out accuracy: float {float_acc:.4f}, integer pass {int_acc:.4f}")
    assert float_acc > 0.95  # the fixture is a real, trained model
    assert abs(int_acc - float_acc) <= 0.01


def test_lenet_integer_pass_matches_dequantized_float_model():
    """The integer pass approximates the float model with dequantized weights: logits agree to a
    few 1/G units (rounding of requantization and pooling only)."""
    from qexport.models import build
    from qexport.quantize.dequantize import dequantize

    qm = q(LENET)
    model = build("lenet")
    state = {}
    for ql in qm.layers:
        w = qm.tensor(ql.weight).data
        state[ql.weight] = torch.from_numpy(dequantize(w, ql.params["scale"], ql.params["zero_point"]))
        m, s, g = (int(ql.params[k]) for k in ("multiplier", "shift", "input_gain"))
        state[ql.bias] = torch.from_numpy(qm.tensor(ql.bias).data.astype(np.float64) * (m / 2**s) / g).float()
    model.load_state_dict(state)
    x, _ = digits_test_split()
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:64]).float().unsqueeze(1) / 256).numpy() * 256
    out = lenet_forward_int(qm.quantized, x[:64])["output"]
    assert np.max(np.abs(out - ref)) < 0.05 * np.max(np.abs(ref))


def test_seed002_truncate_mode_reproduces_original_codes():
    state = torch.load(LENET, weights_only=True)
    qm = q(LENET, zero_point="truncate")
    for ql in qm.layers:
        codes, scale, zp = seed002_quantize_tensor(state[ql.weight].clone())
        np.testing.assert_array_equal(qm.tensor(ql.weight).data.astype(np.int64), codes.numpy().astype(np.int64))
        assert int(ql.params["zero_point"]) == zp
        assert np.float32(ql.params["scale"]) == np.float32(scale.item())


def test_scale_shift_override_reproduces_a_hand_table():
    """Seed 002's hand-picked table: c1 23>>12, c3 13>>12, c5 3>>11, f6 13>>13, output 13>>12."""
    table = {"c1": (23, 12), "c3": (13, 12), "c5": (3, 11), "f6": (13, 13), "output": (13, 12)}
    qm = q(LENET, scale_shift=table)
    for name, (m, s) in table.items():
        ql = qm.quant_layer(name)
        assert (int(ql.params["multiplier"]), int(ql.params["shift"])) == (m, s)
        scale = float(ql.params["scale"])
        assert float(ql.params["scale_error"]) == pytest.approx(abs(m / 2**s - scale) / scale)
        # the bias is quantized with the overridden pair
        b = torch.load(LENET, weights_only=True)[f"{name}.bias"].double().numpy()
        np.testing.assert_array_equal(qm.tensor(f"{name}.bias").data, np.rint(b * 256 / (m / 2**s)).astype(np.int32))


def test_scale_error_above_limit_is_an_error():
    with pytest.raises(PlanError, match=r"layer c1: scale .* relative error .* > --max-scale-error"):
        q(LENET, mult_bits=2)
    r = run_cli("inspect", LENET, "--plan", "seed", "--mult-bits", "2", "-v")
    assert r.returncode == 1 and "layer c1" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_plans_and_overrides(checkpoint):
    def schemes(qm):
        return {ql.name: (ql.scheme, ql.bits, ql.per_channel, bool(ql.params.get("alpha") is not None)) for ql in qm.layers}

    assert set(schemes(q(LENET))) == {"c1", "c3", "c5", "f6", "output"}
    assert {v[0] for v in schemes(q(LENET, bits=2)).values()} == {"ternary"}
    assert list(schemes(q(LENET, only=("c1",)))) == ["c1"]
    assert list(schemes(q(LENET, keep_float=("c*",)))) == ["f6", "output"]
    assert all(v[2] for v in schemes(q(LENET, per_channel=True)).values())
    twn = schemes(q(checkpoint("twn_nin_gc"), bits=1))
    assert len(twn) == 7 and all(v[0] == "binary" and v[3] for v in twn.values())
    vgg = schemes(q(checkpoint("vgg_cifar10_binary")))
    assert len(vgg) == 7 and all(v[0] == "binary" and not v[3] for v in vgg.values())
    res = schemes(q(checkpoint("resnet18_bnn")))
    assert len(res) == 16 and all(k.endswith(".conv") and v[3] and v[2] for k, v in res.items())
    mob = q(checkpoint("mobilenet_v1"))
    dw = [ql for ql in mob.layers if ql.kind == "dwconv"]
    assert len(dw) == 13 and all(ql.per_channel for ql in dw)
    assert all(ql.attrs.get("folded_bn") for ql in mob.layers if ql.kind != "linear")
    assert not any(t.name.endswith("running_mean") for t in mob.tensors)  # BN absorbed


def test_generic_reader_needs_bits(tmp_path):
    torch.save({"a.weight": torch.randn(4, 3), "a.bias": torch.randn(4)}, tmp_path / "g.pt")
    assert q(tmp_path / "g.pt", plan=None).layers == ()  # as trained
    with pytest.raises(UsageError, match="no seed plan"):  # --plan seed is not silently "nothing"
        q(tmp_path / "g.pt")
    qm = q(tmp_path / "g.pt", bits=4)
    assert qm.quant_layer("a").bits == 4 and qm.tensor("a.weight").data.max() <= 15


def test_integer_code_checkpoint_refuses_requantization(tmp_path):
    state = torch.load(LENET, weights_only=True)
    state = {k: (torch.randint(0, 256, v.shape, dtype=torch.int32) if k.endswith("weight") else v) for k, v in state.items()}
    torch.save(state, tmp_path / "quant_model.pth")
    qm = q(tmp_path / "quant_model.pth")
    np.testing.assert_array_equal(qm.tensor("c1.weight").data, state["c1.weight"].numpy())
    assert {ql.scheme for ql in qm.layers} == {"passthrough"}
    with pytest.raises(UsageError, match="already integer codes; --bits"):
        q(tmp_path / "quant_model.pth", bits=8)
    r = run_cli("inspect", tmp_path / "quant_model.pth", "--bits", "8")
    assert r.returncode == 2 and "already integer codes" in r.stderr


def test_bn_folding_preserves_the_float_function(checkpoint):
    """Folded W', b' in a module whose BNs are Identity compute what conv+BN computed."""
    from torch import nn

    from qexport.models import build
    from qexport.quantize.bn import fold_bn

    model = load_model(checkpoint("mobilenet_v1"))
    ref = build("mobilenet_v1", dict(model.config))
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.tensors.items()})
    folded = build("mobilenet_v1", dict(model.config))
    folded.load_state_dict(ref.state_dict())
    for layer in model.layers:
        if layer.kind in ("conv", "dwconv") and layer.attrs.get("bn"):
            bn = model.layer(layer.attrs["bn"])
            t = model.tensors
            w, b = fold_bn(t[layer.weight], None, t[f"{bn.name}.weight"], t[f"{bn.name}.bias"],
                           t[f"{bn.name}.running_mean"], t[f"{bn.name}.running_var"], bn.attrs["eps"])  # fmt: skip
            conv = folded.get_submodule(layer.name)
            conv.weight.data = torch.from_numpy(w)
            conv.bias = nn.Parameter(torch.from_numpy(b))
            parent, _, leaf = bn.name.rpartition(".")
            setattr(folded.get_submodule(parent), leaf, nn.Identity())
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), ref(x).numpy(), rtol=1e-4, atol=1e-6)


def test_bnn_thresholds_reproduce_bn_sign_on_real_accumulators(checkpoint):
    """VGG --fold-bn: for a binary-input layer, acc >= tau (or <= when flipped) equals
    sign(BN(acc + b)) >= 0 computed by torch's BatchNorm, on real popcount-domain accumulators."""
    qm = q(checkpoint("vgg_cifar10_binary"), fold_bn=True)
    ql = qm.quant_layer("features.7")
    tau, flip = ql.params["threshold"].astype(np.int64), ql.params["flip"].astype(bool)
    state = load_model(checkpoint("vgg_cifar10_binary")).tensors
    codes = qm.tensor("features.7.weight").data.astype(np.int64)  # (256, 128, 3, 3), +-1
    gen = np.random.default_rng(0)
    a = np.where(gen.random((8, 128, 6, 6)) < 0.5, -1, 1)
    acc = torch.nn.functional.conv2d(torch.from_numpy(a).double(), torch.from_numpy(codes).double(), padding=1)
    bn = torch.nn.BatchNorm2d(256).double().eval()
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(bn, name).data = torch.from_numpy(np.array(state[f"features.8.{name}"])).double()
    with torch.no_grad():
        expected = (bn(acc + torch.from_numpy(np.array(state["features.7.bias"])).double().view(1, -1, 1, 1)) >= 0).numpy()
    acc = acc.numpy().astype(np.int64)
    t, f = tau.reshape(1, -1, 1, 1), flip.reshape(1, -1, 1, 1)
    got = np.where(f, acc <= t, acc >= t)
    assert np.array_equal(got, expected)
    assert "features.7.bias" not in [t.name for t in qm.tensors]  # absorbed in the thresholds
    # the first layer's input is the float image: its BN stays float, with a note saying why
    assert "threshold" not in qm.quant_layer("features.0").params
    assert any("features.0" in n and "kept float" in n for n in qm.notes)


def test_report_counts_exact_zeros_and_empty_ternary_channels(tmp_path):
    w = torch.randn(4, 3, 3, 3)
    w[0] = 0.0  # an all-zero channel: binary maps its zeros to -1, ternary keeps it empty
    w[1, 0, 0, 0] = 0.0
    torch.save({"x.weight": w}, tmp_path / "z.pt")
    rb = q(tmp_path / "z.pt", bits=1).report[0]
    assert rb.binary_exact_zeros == 28 and rb.zero_alpha_channels == 1
    rt = q(tmp_path / "z.pt", bits=2).report[0]
    assert rt.empty_ternary_channels == 1 and rt.zero_alpha_channels == 1
    assert np.isfinite(rt.sqnr_db) and np.isfinite(rb.sqnr_db)


def test_report_from_cli(tmp_path):
    r = run_cli("inspect", LENET, "--plan", "seed", "-v", "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert "SQNR dB" in r.stderr and "c5" in r.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert [row["layer"] for row in data["layers"]] == ["c1", "c3", "c5", "f6", "output"]
    assert all(row["sqnr_db"] > 30 and row["scale_error"] < 1e-4 for row in data["layers"])
    assert data["provenance"]["source_sha256"] == __import__("hashlib").sha256(LENET.read_bytes()).hexdigest()


def test_layout_and_packing_in_the_pipeline(checkpoint):
    path = checkpoint("vgg_cifar10_binary")
    base = q(path)
    for layout in ("oihw", "ohwi"):
        for word in (8, 64):
            qm = q(path, layout=layout, pack=True, word_bits=word)
            codes = qm.tensor("features.3.weight").data
            ref = base.tensor("features.3.weight").data
            assert np.array_equal(codes, ref.transpose(0, 2, 3, 1) if layout == "ohwi" else ref)
            packed = qm.tensor("features.3.weight.packed")
            assert packed.attrs["n"] == 128 * 9 and packed.data.dtype == np.dtype(f"uint{word}")
            back = pack.unpack_binary(packed.data, packed.attrs["n"], ref.shape, layout)
            assert np.array_equal(back, ref)
    qm = q(checkpoint("twn_nin_gc"), pack=True, ternary_pack="base3")
    t = qm.tensor("tnn_bin.5.tnn_bin_conv.weight.base3")
    assert t.data.dtype == np.uint8 and t.data.shape == (512, -(-16 * 9 // 5)) and t.data.max() <= 242


def test_tiny_channel_scales_are_widened_not_overflowed(tmp_path):
    """A dead channel (weights ~1e-12, bias 0.5) would need b_q = 0.5*256/S >> 2^31: its scale is
    raised until m >> s and the int32 bias hold, and the report says so."""
    state = torch.load(LENET, weights_only=True)
    state["c3.weight"][3] *= 1e-10
    state["c3.bias"][3] = 0.5
    torch.save(state, tmp_path / "dead.pth")
    qm = q(tmp_path / "dead.pth", per_channel=True)
    ql = qm.quant_layer("c3")
    report = {r.layer: r for r in qm.report}["c3"]
    assert report.widened_channels == 1
    scale = ql.params["scale"].astype(np.float64)
    m, s = ql.params["multiplier"].astype(np.float64), ql.params["shift"].astype(np.float64)
    assert np.all(np.abs(m / 2**s - scale) / scale <= 0.01)
    bq = qm.tensor("c3.bias").data
    assert bq.dtype == np.int32 and abs(int(bq[3])) < 2**31 - 1
    w = state["c3.weight"].numpy()
    deq = (qm.tensor("c3.weight").data.astype(np.float64) - ql.params["zero_point"].reshape(-1, 1, 1, 1)) * scale.reshape(-1, 1, 1, 1)
    assert np.all(np.abs(deq - w) <= scale.reshape(-1, 1, 1, 1) / 2 * (1 + 1e-6))
    assert any("c3: 1 channel scale(s) raised" in n for n in qm.notes)
