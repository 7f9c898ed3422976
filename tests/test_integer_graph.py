"""The integer graph, default profile (qexport.integer: lower + run; contract in qexport/integer/ir.py):
the rounding shift against Python's exact integers, one conv node recomputed by a direct
transcription of the contract with Python ints, the lowering's parameters recomputed from the
plan and calibration, and the whole network against the float network it stands for (real digits
for LeNet; MobileNetV1 node by node)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LENET, digits_test_split, import_file, make_state
from onnx_support import onnx_qmodel, onnx_reference
from qexport.errors import PlanError
from qexport.graph.execute import run_graph
from qexport.integer.calibrate import calibrate, normalised
from qexport.integer.lower import lower, tensor_for
from qexport.integer.network import planned_network
from qexport.integer.run import rshift, run_integer


@settings(max_examples=300, deadline=None)
@given(st.integers(-(1 << 61), (1 << 61)), st.integers(0, 40))
def test_rshift_rounds_half_up_like_exact_integers(v, s):
    want = v if s == 0 else (v + (1 << (s - 1))) // (1 << s)  # Python ints: exact floor division
    assert int(rshift(np.array([v]), s)[0]) == want
    if s > 0 and v % (1 << s) == 1 << (s - 1):  # an exact half goes up
        assert want * (1 << s) - v == 1 << (s - 1)


@pytest.fixture(scope="module")
def lenet_int():
    x, y = digits_test_split()
    qm = onnx_qmodel(LENET, bits=8).quantized
    cal = calibrate(qm, x[:100, None], progress=False)
    return qm, cal, lower(qm, cal), x[:, None], y


def test_lenet_integer_graph_keeps_the_float_accuracy_on_real_digits(lenet_int):
    qm, cal, ig, x, y = lenet_int
    codes = run_integer(ig, x)
    graph, state = planned_network(qm)
    logits = run_graph(graph, state, normalised(x, 0.0, 1.0))[graph.output]
    int_acc, float_acc = (codes[ig.output].argmax(1) == y).mean(), (logits.argmax(1) == y).mean()
    assert float_acc > 0.95 and abs(int_acc - float_acc) <= 0.01, (int_acc, float_acc)
    assert [n.op for n in ig.nodes] == ["conv2d", "avg_pool2d", "conv2d", "avg_pool2d", "conv2d", "reshape",
                                        "linear", "linear"]  # fmt: skip
    assert ig.node("c1").source == ("c1", "Relu") and ig.node("c1").attrs["lo"] == ig.node("c1").out.zero_point


def test_lowered_parameters_follow_the_contract(lenet_int):
    """b_q = round(b / (S_x S_w)), m / 2^s ~ S_x S_w / S_y, output tensor from the calibrated range."""
    qm, cal, ig, _, _ = lenet_int
    node = ig.node("c3")
    q = qm.quant_layer("c3")
    s_x = ig.node("s2").out.scale
    s_w = float(q.params["scale"])
    lo, hi = cal.ranges["Relu_1"]  # the ReLU fused into c3 gives its output range
    s_y = (max(hi, 0) - min(lo, 0)) / 255
    assert node.out.scale == pytest.approx(s_y, rel=1e-12)
    graph, state = planned_network(qm)
    np.testing.assert_array_equal(node.arrays["b_q"], np.round(state["c3.bias"] / (s_x * s_w)).astype(np.int64))
    ratio = node.arrays["m"].astype(np.float64) / 2.0 ** node.arrays["s"]
    np.testing.assert_allclose(ratio, s_x * s_w / s_y, rtol=1e-4)
    w = np.asarray(qm.tensor("c3.weight").data, np.int64) - int(q.params["zero_point"])
    np.testing.assert_array_equal(node.arrays["w_minus_z"], w)


def test_one_conv_node_by_direct_transcription(lenet_int):
    """c1 of one image at a few positions, with Python ints and the contract's formula."""
    qm, cal, ig, x, _ = lenet_int
    node = ig.node("c1")
    got = run_integer(ig, x[:1])["c1"]
    a, w = node.attrs, node.arrays["w_minus_z"]
    img = [[int(v) for v in row] for row in x[0, 0]]
    for o, i, j in ((0, 0, 0), (3, 14, 9), (5, 27, 27), (2, 5, 20)):
        acc = int(node.arrays["b_q"][o])
        for di in range(5):
            for dj in range(5):
                r, c = i + di - 2, j + dj - 2
                xv = img[r][c] if 0 <= r < 28 and 0 <= c < 28 else a["zero_in"]
                acc += (xv - a["zero_in"]) * int(w[o, 0, di, dj])
        m, s = int(node.arrays["m"][o]), int(node.arrays["s"][o])
        y = a["zero_out"] + ((acc * m + (1 << (s - 1))) >> s if s else acc * m)
        assert int(got[0, o, i, j]) == min(max(y, a["lo"]), a["hi"]), (o, i, j)


def test_mobilenet_node_by_node_against_the_float_network(tmp_path):
    torch.save(make_state("mobilenet_v1", {"num_classes": 10}), tmp_path / "m.pth")
    qm = onnx_qmodel(tmp_path / "m.pth", plan="seed").quantized
    x = np.random.default_rng(0).integers(0, 256, (12, 3, 32, 32)).astype(np.uint8)
    cal = calibrate(qm, x, mean=(0.5,), std=(0.25,), progress=False)
    ig = lower(qm, cal)
    assert ig.input.zero_point == 128 and ig.input.scale == pytest.approx(1 / (255 * 0.25))
    codes = run_integer(ig, x)
    graph, state = planned_network(qm)
    ref = run_graph(graph, state, normalised(x, 0.5, 0.25))
    assert "batch_norm" not in graph.ops and [n.op for n in ig.nodes].count("conv2d") == 27
    for node in ig.nodes:
        real, want = node.out.real(codes[node.name]), ref[node.source[-1] if node.source else node.name]
        span = np.ptp(want) + 1e-12
        assert np.abs(real - want).max() <= 0.03 * span, node.name  # a few steps of 1/255 of the range
    assert (codes[ig.output].reshape(12, -1).argmax(1) == ref[graph.output].argmax(1)).mean() >= 0.9


def test_tensor_parameters_always_hold_zero_exactly():
    for lo, hi in ((-1.0, 3.0), (0.5, 2.0), (-4.0, -1.0), (0.0, 0.0)):
        t = tensor_for(lo, hi)
        assert 0 <= t.zero_point <= 255 and t.real(np.array([t.zero_point]))[0] == 0.0


def test_what_the_default_profile_cannot_compute_is_refused_naming_the_node(tmp_path, lenet_int):
    qm = onnx_qmodel(LENET, keep_float=("f6",), bits=8).quantized
    cal = calibrate(qm, lenet_int[3][:8], progress=False)
    with pytest.raises(PlanError, match=r"node f6 \(linear\): the plan keeps it float"):
        lower(qm, cal)
    torch.save(make_state("twn_nin_gc", {}), tmp_path / "t.pth")  # the seed plan keeps the first conv float
    qt = onnx_qmodel(tmp_path / "t.pth", plan="seed").quantized
    calt = calibrate(qt, np.zeros((2, 3, 32, 32), np.uint8), progress=False)
    with pytest.raises(PlanError, match=r"node tnn_bin.0 \(conv2d\): the plan keeps it float.*--only '\*'"):
        lower(qt, calt)


def test_eval_command_on_real_digits(tmp_path):
    from conftest import FIXTURES, run_cli

    import json

    r = run_cli("eval", LENET, "--data", FIXTURES / "digits_test.npz", "--bits", "8", "--calibration-samples", "100",
                "--report", tmp_path / "eval.json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    head, _, table = r.stdout.partition("\n\n")
    rows = dict(line.split(":", 1) for line in head.splitlines())
    data = json.loads((tmp_path / "eval.json").read_text())
    names = [line.split()[0] for line in table.splitlines()[1:]]
    assert names == [n["node"] for n in data["nodes"]] == ["c1", "s2", "c3", "s4", "c5", "flatten", "f6", "output"]
    assert all(n["sqnr_db"] > 30 for n in data["nodes"]), data["nodes"]  # 8-bit activations: ~40 dB
    assert data["integer"] == pytest.approx(float(rows["integer graph"].split()[0]) / 100, abs=1e-4)
    pct = {k.strip(): float(v.strip().split()[0]) for k, v in rows.items() if k != "images"}
    assert rows["images"].strip() == "359 (calibrated on 100)"
    assert pct["float (as trained)"] > 95 and abs(pct["integer graph"] - pct["float (plan)"]) <= 1.0, r.stdout
    assert "assumed seed 002's LeNet" in r.stderr and "calibrated on the first 100 images" in r.stderr


SIG = '''
import torch
from torch import nn

class SigNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.avg_pool2d(torch.sigmoid(self.c1(x)), 2)
        x = nn.functional.avg_pool2d(torch.tanh(self.c3(x)), 2)
        return self.output(self.f6(torch.flatten(self.c5(x), 1)))
'''


def test_sigmoid_and_tanh_through_tables_follow_the_float_network(tmp_path, lenet_int):
    """Your module (--model-def) with Sigmoid and Tanh: the integer graph's tables, node by node."""
    from qexport.prepare import prepare

    (tmp_path / "sig.py").write_text(SIG)
    torch.manual_seed(0)
    mod = import_file(tmp_path / "sig.py", "sig_for_test")
    torch.save(mod.SigNet().state_dict(), tmp_path / "sig.pth")
    qm = prepare(tmp_path / "sig.pth", command="eval", plan_kw={"bits": 8, "model_def": f"{tmp_path / 'sig.py'}:SigNet"}).quantized
    x = lenet_int[3][:64]
    cal = calibrate(qm, x, progress=False)
    ig = lower(qm, cal)
    assert [n.op for n in ig.nodes][:3] == ["conv2d", "table", "avg_pool2d"]
    table = ig.node("sigmoid").arrays["table"]
    assert table.dtype == np.uint8 and np.all(np.diff(table.astype(int)) >= 0)  # monotone, like sigmoid
    codes = run_integer(ig, x)
    graph, state = planned_network(qm)
    ref = run_graph(graph, state, normalised(x, 0.0, 1.0))
    for node in ig.nodes:
        real, want = node.out.real(codes[node.name]), ref[node.source[-1] if node.source else node.name]
        assert np.abs(real - want).max() <= 0.03 * (np.ptp(want) + 1e-12), node.name


def test_golden_vectors_of_every_integer_node(tmp_path):
    """`golden --calibrate`: one uint8 stage per integer node with its scale and zero point; each
    stage's value S (q - Z) follows the module's own float64 outputs (forward hooks on the test's
    torch transcription with the dequantized weights), and the prediction is the output's argmax."""
    import json

    from conftest import FIXTURES, run_cli

    out = tmp_path / "g"
    r = run_cli("golden", LENET, "-i", FIXTURES / "digits_test.npz", "-n", "16", "--bits", "8",
                "--calibrate", FIXTURES / "digits_test.npz", "--calibration-samples", "64", "-o", out)
    assert r.returncode == 0, r.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "integer-graph" and "--calibrate digits_test.npz" in man["provenance"]["options"]
    stages = {s["name"]: s for s in man["stages"]}
    assert [s["name"] for s in man["stages"]] == ["input", "c1", "s2", "c3", "s4", "c5", "flatten", "f6", "output",
                                                   "prediction", "label"]  # fmt: skip
    qm = onnx_qmodel(LENET, bits=8)
    ref = onnx_reference(qm).double().eval()
    x, _ = digits_test_split()
    want = {}
    for name in ("c1", "s2", "c3", "s4", "c5", "f6", "output"):
        ref.get_submodule(name).register_forward_hook(lambda m, a, o, n=name: want.__setitem__(n, o.numpy()))
    with torch.no_grad():
        ref(torch.from_numpy(normalised(x[:16, None], 0.0, 1.0)))
    want["c1"], want["c3"] = np.maximum(want["c1"], 0), np.maximum(want["c3"], 0)  # the fused ReLUs
    for name, expected in want.items():
        a = np.load(out / stages[name]["file"])
        assert a.dtype == np.uint8 and a.shape == expected.shape, name
        real = stages[name]["attrs"]["scale"] * (a.astype(np.float64) - stages[name]["attrs"]["zero_point"])
        assert np.abs(real - expected).max() <= 0.03 * np.ptp(expected), name
    pred = np.load(out / stages["prediction"]["file"])
    np.testing.assert_array_equal(pred, np.load(out / stages["output"]["file"]).argmax(axis=1))


def test_csource_command_writes_compilable_c_or_nothing(tmp_path):
    import subprocess

    from conftest import FIXTURES, run_cli

    out = tmp_path / "c"
    r = run_cli("csource", LENET, "--bits", "8", "--calibrate", FIXTURES / "digits_test.npz",
                "--calibration-samples", "64", "-o", out, "--name", "lenet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["lenet.h", "lenet_inference.c", "lenet_inference.h"]
    cc = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c",
                         str(out / "lenet_inference.c"), "-o", str(tmp_path / "l.o")], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    r = run_cli("csource", LENET, "--bits", "8", "-o", tmp_path / "none")
    assert r.returncode == 2 and "--calibrate DATA" in r.stderr and not (tmp_path / "none").exists()
    r = run_cli("csource", LENET, "--bits", "8", "--keep-float", "f6", "--calibrate", FIXTURES / "digits_test.npz",
                "-o", tmp_path / "kept")  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr and not (tmp_path / "kept").exists()
    assert "node f6 (linear): the plan keeps it float" in r.stderr.strip().splitlines()[-1]


def test_cat_leaky_relu_and_max_pool_of_a_traced_module(tmp_path):
    """An Inception-like module (two branches joined by cat, leaky ReLU, max pool) given as
    --model-def: every integer node follows the float network."""
    from qexport.prepare import prepare

    (tmp_path / "inc.py").write_text(INCEPTION)
    mod = import_file(tmp_path / "inc.py", "inc_for_test")
    torch.manual_seed(1)
    torch.save(mod.Inc().state_dict(), tmp_path / "inc.pth")
    qm = prepare(tmp_path / "inc.pth", command="eval", plan_kw={"bits": 8, "model_def": f"{tmp_path / 'inc.py'}:Inc"}).quantized
    x = np.random.default_rng(2).integers(0, 256, (16, 3, 12, 12)).astype(np.uint8)
    ig = lower(qm, calibrate(qm, x, progress=False))
    assert {"cat", "prelu", "max_pool2d"} <= {n.op for n in ig.nodes}
    codes = run_integer(ig, x)
    graph, state = planned_network(qm)
    ref = run_graph(graph, state, normalised(x, 0.0, 1.0))
    for node in ig.nodes:
        real, want = node.out.real(codes[node.name]), ref[node.source[-1] if node.source else node.name]
        assert np.abs(real - want).max() <= 0.03 * (np.ptp(want) + 1e-12), node.name


INCEPTION = '''
import torch
from torch import nn

INPUT_SHAPE = (3, 12, 12)

class Inc(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(10 * 6 * 6, 5)

    def forward(self, x):
        y = torch.cat([self.a(x), self.act(self.b(x))], dim=1)
        return self.fc(torch.flatten(self.pool(y), 1))
'''
