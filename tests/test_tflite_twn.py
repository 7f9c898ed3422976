"""The ternary TWN (twn_nin_gc, trained fixture) in the tflite int8 profile: grouped CONV_2D,
channel shuffle as RESHAPE -> TRANSPOSE -> RESHAPE, the last block's sign as two QUANTIZEs.
The TFLM interpreter's output and every intermediate tensor equal the reference executor bit for
bit on 16 real held-out digits; the ternary layers' int8 codes are the fixture's stored ternary
codes (times the sign of the folded BN's gain) with scale alpha_c |gamma_c / sigma_c|, recomputed
here from the fixture's definition; a small grouped NIN with a shuffle through TFLM too; and the
trained MobileNetV1 fixture through TFLM on real digits.
Whole-set accuracy is benchmarks/bench_tflite.py's job."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_tflite import DIGITS, ZOO, digits_test_split, export, tflm_equals_reference

FIXTURES = Path(__file__).parent.parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from trained import checkpoint, held_out, plan_kw, state_arrays, stored_codes, train_digits  # noqa: E402

TERNARY = ("tnn_bin.2", "tnn_bin.3", "tnn_bin.5", "tnn_bin.6", "tnn_bin.7", "tnn_bin.9", "tnn_bin.10")


@pytest.fixture(scope="module")
def twn(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("twn")
    images, _ = train_digits("twn_nin_gc")
    np.save(tmp / "cal.npy", images[::45][:32])  # 32 training digits
    path, tgraph, qmodel = export(tmp, checkpoint("twn_nin_gc", tmp), "twn", calibration_data=str(tmp / "cal.npy"),
                                  **plan_kw("twn_nin_gc"))  # fmt: skip
    return path, tgraph, qmodel


def test_twn_in_tflm_equals_the_reference_on_real_digits(twn):
    path, tgraph, _ = twn
    ops = [o.op for o in tgraph.ops]
    assert ops.count("CONV_2D") == 9 and ops.count("TRANSPOSE") == 6 and ops.count("QUANTIZE") == 2
    x, _ = held_out("twn_nin_gc")
    ref = tflm_equals_reference(path, tgraph, x[::23][:16])  # 16 of the 359 digits, every tensor
    sign = ref["tnn_bin.10.sign"]
    assert set(np.unique(sign)) <= {-64, 0, 64}
    # the sign is exact on the conv's codes: 64 sign(code) of the tensor it reads (scale S_in min S_w)
    assert np.array_equal(sign, 64 * np.sign(ref["tnn_bin.10.tnn_bin_conv"].astype(np.int64)))


def test_ternary_codes_are_the_fixtures_codes_with_scale_alpha_times_bn_gain(twn):
    from qexport.tflite.flatbuffer import schema

    path, _, _ = twn
    fb = schema()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(path.read_bytes(), 0))
    tensors = {t.name.decode(): t for t in model.subgraphs[0].tensors}
    codes, state = stored_codes("twn_nin_gc"), state_arrays("twn_nin_gc")
    with np.load(FIXTURES / "twn_nin_gc_digits.npz") as z:
        alphas = {k: z[f"{k}:alpha"].astype(np.float64) for k in codes}
    for layer in TERNARY:
        key = f"{layer}.tnn_bin_conv.weight"
        gain = state[f"{layer}.bn.weight"].astype(np.float64) / np.sqrt(state[f"{layer}.bn.running_var"].astype(np.float64) + 1e-5)
        t = tensors[key]
        got = np.frombuffer(bytes(model.buffers[t.buffer].data), np.int8).reshape(t.shape)
        want = (codes[key] * np.sign(gain)[:, None, None, None]).transpose(0, 2, 3, 1)  # OIHW -> OHWI
        assert np.array_equal(got, want), layer
        assert np.allclose(t.quantization.scale, alphas[key] * np.abs(gain), rtol=1e-6), layer
        assert set(t.quantization.zeroPoint) == {0}


def test_twn_sign_agrees_with_the_float_networks_sign(twn):
    """The int8 sign is of the requantized accumulator: on real digits it matches the float
    network's sign(BN(conv)) almost everywhere (a margin, not exactness: inputs are int8)."""
    from qexport.graph.execute import run_graph
    from qexport.graph.stage import model_graph
    from qexport.tflite.reference import run_tflite

    _, tgraph, qmodel = twn
    x, _ = held_out("twn_nin_gc")
    x = x[::60][:6]
    graph = model_graph(qmodel.model)
    state = {k: np.asarray(v, np.float64) for k, v in qmodel.model.tensors.items() if np.asarray(v).dtype.kind == "f"}
    want = run_graph(graph, state, x / 255.0)["tnn_bin.10.sign"]
    got = run_tflite(tgraph, x)["tnn_bin.10.sign"].transpose(0, 3, 1, 2) // 64
    assert (got == want).mean() > 0.97, (got == want).mean()


def test_grouped_nin_with_shuffle_in_tflm_equals_the_reference(tmp_path):
    sys.path.insert(0, str(ZOO.parent))
    import graph_zoo

    torch.manual_seed(0)
    torch.save(graph_zoo.NIN(groups=2).state_dict(), tmp_path / "g.pth")
    x, _ = digits_test_split()
    path, tgraph, _ = export(tmp_path, tmp_path / "g.pth", "g", bits=8, fold_bn=True, model_def=f"{ZOO}:NIN(groups=2)",
                             calibration_data=str(DIGITS), calibration_samples=16)  # fmt: skip
    grouped = [o for o in tgraph.ops if o.op == "CONV_2D" and o.arrays["weight"].shape[-1] == 4]
    assert len(grouped) == 1 and [o.op for o in tgraph.ops].count("TRANSPOSE") == 1
    tflm_equals_reference(path, tgraph, x[:8, None])


def test_trained_mobilenet_in_tflm_equals_the_reference_on_real_digits(tmp_path):
    """The trained MobileNetV1 fixture (`--bits 8`, calibrated on 32 training digits): TFLM's output and
    every intermediate tensor equal the reference on 6 held-out digits (the whole set: bench_tflite)."""
    images, _ = train_digits("mobilenet_v1")
    np.save(tmp_path / "cal.npy", images[::45][:32])
    path, tgraph, _ = export(tmp_path, checkpoint("mobilenet_v1", tmp_path), "mnet",
                             calibration_data=str(tmp_path / "cal.npy"), **plan_kw("mobilenet_v1"))  # fmt: skip
    ops = [o.op for o in tgraph.ops]
    assert ops.count("DEPTHWISE_CONV_2D") == 13 and ops.count("CONV_2D") == 14
    x, _ = held_out("mobilenet_v1")
    ref = tflm_equals_reference(path, tgraph, x[::59][:6])
    assert len(np.unique(ref[tgraph.output])) > 3  # the logits are not one saturated code
