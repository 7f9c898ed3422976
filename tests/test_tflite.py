"""The tflite int8 profile (qexport/tflite): its integer primitives against exact rational
arithmetic (hypothesis), and every `.tflite` it writes run by the TensorFlow Lite Micro
interpreter (the tflite-micro package), whose output and every intermediate tensor must equal
the profile's reference executor bit for bit: LeNet on real digits (int8 and uint8 input),
MobileNetV1 (depthwise, PAD, global average), a traced ResNet with ADD, a Sigmoid LeNet, and
LOGISTIC / TANH of every int8 code; refusals through the CLI
(one line, exit 1, no file); determinism; top-1 on the held-out digits within 1 pp of float."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LENET, digits_test_split, make_state
from tools import unavailable

from qexport.tflite.arith import (quantize_multiplier, requantize, rounding_divide_by_pot,
                                  saturating_rounding_doubling_high_mul)  # fmt: skip

ZOO = Path(__file__).parent / "graph_zoo.py"
DIGITS = Path(__file__).parent.parent / "fixtures" / "digits_test.npz"
I32 = st.integers(-(1 << 31), (1 << 31) - 1)


def runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime as rt
    except ImportError:
        unavailable("tflite-micro not installed; `pip install -c constraints.txt -e '.[test]'` installs it")
    return rt


def half_up(q: Fraction) -> int:
    return int((q + Fraction(1, 2)).__floor__())


def half_away(q: Fraction) -> int:
    return half_up(q) if q >= 0 else -half_up(-q)


# ---- the integer primitives, against exact rationals (the meaning of TFLM's C code, not a copy of it)


@settings(max_examples=250, deadline=None)
@given(I32, I32)
def test_doubling_high_mul_rounds_a_b_over_2_31_half_up_and_saturates(a, b):
    got = int(saturating_rounding_doubling_high_mul(np.array([a]), np.array([b]))[0])
    want = (1 << 31) - 1 if a == b == -(1 << 31) else half_up(Fraction(a * b, 1 << 31))
    assert got == want


@settings(max_examples=250, deadline=None)
@given(I32, st.integers(0, 31))
def test_divide_by_power_of_two_rounds_half_away_from_zero(x, e):
    assert int(rounding_divide_by_pot(np.array([x]), e)[0]) == half_away(Fraction(x, 1 << e))


@settings(max_examples=250, deadline=None)
@given(st.floats(2.0**-31, 2.0**20, allow_nan=False) | st.sampled_from([0.5, 1.0, 0.25, 1 - 2**-40, 2.0**-31]))
def test_quantize_multiplier_is_the_nearest_q31_significand(real):
    m, shift = (int(v[0]) for v in quantize_multiplier(np.array([real])))
    assert (1 << 30) <= m < (1 << 31)
    assert abs(Fraction(m) * Fraction(2) ** (shift - 31) - Fraction(real)) <= Fraction(2) ** (shift - 32)


def test_quantize_multiplier_zero_and_flushed_tiny_values():
    m, s = quantize_multiplier(np.array([0.0, 2.0**-40, 2.0**-33]))
    assert m.tolist() == [0, 0, 0] and s.tolist() == [0, 0, 0]


@settings(max_examples=250, deadline=None)
@given(st.integers(-(1 << 24), 1 << 24), st.integers(1 << 30, (1 << 31) - 1), st.integers(-31, 6))
def test_requantize_is_the_two_roundings_of_x_m_2_shift_31(x, m, shift):
    left, right = max(shift, 0), max(-shift, 0)
    want = half_away(Fraction(half_up(Fraction(x * (1 << left) * m, 1 << 31)), 1 << right))
    assert int(requantize(np.array([x]), m, shift)[0]) == want


# ---- whole networks through the TFLM interpreter


def export(tmp_path, model, name, **kw):
    from qexport.tflite.command import tflite

    path, tgraph, qmodel, _ = tflite(model, tmp_path / f"{name}.tflite", **kw)
    return path, tgraph, qmodel


def tflm_equals_reference(path: Path, tgraph, pixels: np.ndarray) -> dict:
    """Run every image through TFLM (all tensors preserved); each activation tensor must equal the
    reference executor's exactly.  Returns the reference values."""
    rt = runtime()
    from qexport.tflite.flatbuffer import schema
    from qexport.tflite.reference import model_input, run_tflite

    data = path.read_bytes()
    fb = schema()
    names = [t.name.decode() for t in fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0)).subgraphs[0].tensors]
    ref = run_tflite(tgraph, pixels)
    compared = [(k, name) for k, name in enumerate(names) if name in ref]
    assert {n for _, n in compared} == set(ref)  # every reference tensor is in the file, and compared
    interp = rt.Interpreter.from_bytes(data, intrepreter_config=rt.InterpreterConfig.kPreserveAllTensors)
    x = model_input(tgraph, pixels)
    for i in range(x.shape[0]):
        interp.set_input(x[i:i + 1], 0)
        interp.invoke()
        for k, name in compared:
            got = interp.GetTensor(k, 0)["tensor_data"]
            want = ref[name][i:i + 1]
            assert got.dtype == want.dtype and np.array_equal(got.reshape(want.shape), want), (name, i)
        assert np.array_equal(interp.get_output(0).reshape(-1), ref[tgraph.output][i].reshape(-1))
    return ref


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    x, y = digits_test_split()
    tmp = tmp_path_factory.mktemp("lenet")
    return export(tmp, LENET, "lenet", bits=8, calibration_data=str(DIGITS), calibration_samples=100), x[:, None], y


def test_lenet_in_tflm_equals_the_reference_on_real_digits(lenet):
    (path, tgraph, _), x, _ = lenet
    assert [o.op for o in tgraph.ops] == ["CONV_2D", "AVERAGE_POOL_2D", "CONV_2D", "AVERAGE_POOL_2D", "CONV_2D",
                                          "RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED"]  # fmt: skip
    tflm_equals_reference(path, tgraph, x[::6])  # 60 of the 359 digits, every tensor


def test_lenet_int8_top1_within_1pp_of_float_on_held_out_digits(lenet):
    from qexport.graph.execute import run_graph
    from qexport.graph.stage import model_graph
    from qexport.integer.calibrate import normalised
    from qexport.tflite.reference import run_tflite

    (_, tgraph, qmodel), x, y = lenet
    graph = model_graph(qmodel.model)
    state = {k: np.asarray(v, np.float64) for k, v in qmodel.model.tensors.items()}
    float_top1 = (run_graph(graph, state, normalised(x, 0.0, 1.0))[graph.output].argmax(1) == y).mean()
    int8_top1 = (run_tflite(tgraph, x)[tgraph.output].argmax(1) == y).mean()
    print(f"LeNet on {len(y)} digits: float {100 * float_top1:.2f} %, tflite int8 {100 * int8_top1:.2f} %")
    assert float_top1 > 0.95 and abs(int8_top1 - float_top1) <= 0.01, (float_top1, int8_top1)


def test_lenet_uint8_input_goes_through_quantize(tmp_path):
    x, _ = digits_test_split()
    path, tgraph, _ = export(tmp_path, LENET, "u8", bits=8, input_type="uint8", calibration_data=str(DIGITS),
                             calibration_samples=64)  # fmt: skip
    assert tgraph.ops[0].op == "QUANTIZE" and tgraph.tensors[tgraph.input].dtype == "uint8"
    ref = tflm_equals_reference(path, tgraph, x[:12, None])
    assert np.array_equal(ref["input"].astype(np.int16), x[:12, :, :, None].astype(np.int16) - 128)


def test_weights_bias_and_activations_follow_the_int8_spec(lenet):
    """Recomputed from the plan's float weights and the calibrated ranges: symmetric int8 per
    channel (conv) / per tensor (fully connected), zero points 0, bias scale S_in * S_w."""
    from qexport.integer.network import planned_network
    from qexport.tflite.flatbuffer import schema

    (path, tgraph, qmodel), _, _ = lenet
    fb = schema()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(path.read_bytes(), 0))
    tensors = {t.name.decode(): t for t in model.subgraphs[0].tensors}
    _, state = planned_network(qmodel)
    for layer, per_channel in (("c1", True), ("c3", True), ("f6", False)):
        w = state[f"{layer}.weight"]
        wt, bt = tensors[f"{layer}.weight"], tensors[f"{layer}.bias"]
        peak = np.abs(w.reshape(w.shape[0], -1)).max(1) if per_channel else np.array([np.abs(w).max()])
        assert np.allclose(wt.quantization.scale, peak / 127, rtol=1e-6) and set(wt.quantization.zeroPoint) == {0}
        codes = np.frombuffer(bytes(model.buffers[wt.buffer].data), np.int8)
        assert codes.min() >= -127 and np.abs(codes).max() == 127
        s_in = tgraph.tensors[next(o for o in tgraph.ops if layer in o.source).inputs[0]].scale
        assert np.allclose(bt.quantization.scale, np.float64(s_in) * np.asarray(wt.quantization.scale), rtol=1e-6)
    assert "lenet_digits.pth" in model.description.decode() and qmodel.model.source.sha256 in model.description.decode()
    meta = {m.name.decode(): m.buffer for m in model.metadata}
    assert json.loads(bytes(model.buffers[meta["qexport_provenance"]].data)) == qmodel.provenance()


def test_mobilenet_v1_in_tflm_equals_the_reference(tmp_path):
    torch.save(make_state("mobilenet_v1", {"num_classes": 10}), tmp_path / "m.pth")
    x = np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32)).astype(np.uint8)
    np.save(tmp_path / "cal.npy", x)
    path, tgraph, _ = export(tmp_path, tmp_path / "m.pth", "m", plan="seed", calibration_data=str(tmp_path / "cal.npy"),
                             mean="0.5", std="0.25")  # fmt: skip
    ops = [o.op for o in tgraph.ops]
    assert ops.count("DEPTHWISE_CONV_2D") == 13 and ops.count("CONV_2D") == 14 and "PAD" in ops
    tflm_equals_reference(path, tgraph, x[:3])


def _zoo_state(cls_name: str, seed: int = 0) -> dict:
    sys.path.insert(0, str(ZOO.parent))
    import graph_zoo

    torch.manual_seed(seed)
    state = getattr(graph_zoo, cls_name)().state_dict()
    gen = torch.Generator().manual_seed(seed + 1)
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.copy_(torch.randn(value.shape, generator=gen) * 0.1)
        elif key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
    return state


def test_traced_resnet_with_add_in_tflm_equals_the_reference(tmp_path):
    torch.save(_zoo_state("ResNet"), tmp_path / "r.pth")
    x, _ = digits_test_split()
    path, tgraph, _ = export(tmp_path, tmp_path / "r.pth", "r", bits=8, model_def=f"{ZOO}:ResNet",
                             calibration_data=str(DIGITS), calibration_samples=64)  # fmt: skip
    ops = [o.op for o in tgraph.ops]
    assert ops.count("ADD") == 2 and all(o.attrs["activation"] == "RELU" for o in tgraph.ops if o.op == "ADD")
    tflm_equals_reference(path, tgraph, x[:8, None])


def test_max_pool_network_in_tflm_equals_the_reference(tmp_path):
    sys.path.insert(0, str(ZOO.parent))
    import graph_zoo

    torch.manual_seed(3)
    torch.save(graph_zoo.RenamedLeNet().state_dict(), tmp_path / "n.pth")
    x, _ = digits_test_split()
    path, tgraph, _ = export(tmp_path, tmp_path / "n.pth", "n", bits=8, model_def=f"{ZOO}:RenamedLeNet",
                             calibration_data=str(DIGITS), calibration_samples=64)  # fmt: skip
    assert [o.op for o in tgraph.ops].count("MAX_POOL_2D") == 2
    tflm_equals_reference(path, tgraph, x[:8, None])


def test_sigmoid_lenet_in_tflm_equals_the_reference(tmp_path):
    sys.path.insert(0, str(ZOO.parent))
    import graph_zoo

    torch.manual_seed(0)
    torch.save(graph_zoo.SigmoidLeNet().state_dict(), tmp_path / "s.pth")
    x, _ = digits_test_split()
    path, tgraph, _ = export(tmp_path, tmp_path / "s.pth", "s", bits=8, model_def=f"{ZOO}:SigmoidLeNet",
                             calibration_data=str(DIGITS), calibration_samples=64)  # fmt: skip
    assert [o.op for o in tgraph.ops].count("LOGISTIC") == 2
    assert all((tgraph.tensors[o.output].scale, tgraph.tensors[o.output].zero_point) == (1 / 256, -128)
               for o in tgraph.ops if o.op == "LOGISTIC")  # fmt: skip
    tflm_equals_reference(path, tgraph, x[:8, None])


# (scale, zero point) of the int8 input: typical, tiny and large scales, zero points at both ends
TABLE_INPUTS = ((0.05, 0), (0.0123, -128), (0.2, 40), (1 / 255, -128), (0.5, 127), (0.003, 5), (0.09, -20), (2.0, 0))


@pytest.mark.parametrize("op", ["LOGISTIC", "TANH"])
def test_logistic_and_tanh_of_every_int8_code_equal_tflm(op):
    """All 256 input codes at once through a one-operator model, for several input scales."""
    rt = runtime()
    from qexport.tflite.arith import f32
    from qexport.tflite.fixedpoint import LOGISTIC_OUT, TANH_OUT, logistic_table, tanh_table
    from qexport.tflite.flatbuffer import tflite_bytes
    from qexport.tflite.ir import TflGraph, TflOp, TflTensor

    (out_scale, out_zero), table, f = {"LOGISTIC": (LOGISTIC_OUT, logistic_table, lambda v: 1 / (1 + np.exp(-v))),
                                       "TANH": (TANH_OUT, tanh_table, np.tanh)}[op]  # fmt: skip
    codes = np.arange(-128, 128)
    for scale, zero in TABLE_INPUTS:
        x, y = TflTensor("input", (256,), f32(scale), zero), TflTensor("y", (256,), f32(out_scale), out_zero)
        model = tflite_bytes(TflGraph({"input": x, "y": y}, (TflOp(op, ("input",), "y"),), "input", "y"), {})
        interp = rt.Interpreter.from_bytes(model)
        interp.set_input(codes.astype(np.int8).reshape(1, 256), 0)
        interp.invoke()
        want = table(x.scale, zero)
        assert np.array_equal(interp.get_output(0).reshape(-1), want), (op, scale, zero)
        # and the fixed-point result is the function itself, in float64, within one output step
        exact = np.clip(np.round(f(x.scale * (codes - zero)) / out_scale) + out_zero, -128, 127)
        assert np.abs(want.astype(np.int64) - exact).max() <= 1, (op, scale, zero)


def cli(*args, cwd, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "qexport.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)  # fmt: skip


def test_binary_vgg_is_refused_naming_the_sign_node(tmp_path):
    torch.save(make_state("vgg_cifar10_binary", {"infl_ratio": 1, "classifier": "single"}), tmp_path / "v.pth")
    np.save(tmp_path / "cal.npy", np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32)).astype(np.uint8))
    r = cli("tflite", "v.pth", "--calibrate", "cal.npy", "-o", "v.tflite", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("Error: node features.2 (hardtanh): binarized activations (sign: features.3"), err
    assert not (tmp_path / "v.tflite").exists() and not list(tmp_path.glob(".qexport-tmp-*"))


def test_cli_output_is_byte_identical_across_runs_and_bad_usage_exits_2(tmp_path):
    runs = []
    for k, seed in enumerate(("1", "77")):
        (tmp_path / str(k)).mkdir()
        r = cli("tflite", "--bits", "8", LENET, "--calibrate", DIGITS, "--calibration-samples", "32", "-o", "l.tflite",
                cwd=tmp_path / str(k), env_extra={"PYTHONHASHSEED": seed})  # fmt: skip
        assert r.returncode == 0, r.stderr
        runs.append((tmp_path / str(k) / "l.tflite").read_bytes())
    assert runs[0] == runs[1] and runs[0][4:8] == b"TFL3"
    r = cli("tflite", "--bits", "8", LENET, "-o", "x.tflite", cwd=tmp_path)  # no --calibrate
    assert r.returncode == 2 and "--calibrate" in r.stderr and not (tmp_path / "x.tflite").exists()


def test_eval_with_the_tflite_arithmetic_on_real_digits(tmp_path):
    """`qexport eval --arithmetic tflite`: top-1 from the reference executor, SQNR per operator
    against the plan's float network (RenamedLeNet flattens 12 x 6 x 6: HWC order mapped back)."""
    from qexport.integer.command import evaluate

    sys.path.insert(0, str(ZOO.parent))
    import graph_zoo

    torch.manual_seed(3)
    torch.save(graph_zoo.RenamedLeNet().state_dict(), tmp_path / "n.pth")
    r = evaluate(tmp_path / "n.pth", data=str(DIGITS), calibration_samples=64, samples=64, arithmetic="tflite",
                 bits=8, model_def=f"{ZOO}:RenamedLeNet")  # fmt: skip
    flat = next(row for row in r["nodes"] if row["op"] == "RESHAPE")
    assert flat["sqnr_db"] is not None and flat["sqnr_db"] > 25, r["nodes"]
    assert all(row["sqnr_db"] is None or row["sqnr_db"] > 15 for row in r["nodes"]), r["nodes"]


PADDED = '''
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (1, 28, 28)


class Padded(nn.Module):
    def __init__(self):
        super().__init__()
        self.dilated = nn.Conv2d(1, 4, 3, padding=2, dilation=2)   # SAME in TFLite
        self.odd = nn.Conv2d(4, 6, 4, padding=1)                   # even kernel: PAD + VALID
        self.fc = nn.Linear(6 * 13 * 13, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu6(self.dilated(x)), 3, 1, 1)       # max pool with SAME padding
        x = F.max_pool2d(F.relu(self.odd(x)), 2)
        return self.fc(x.flatten(1))
'''


def test_same_padding_dilation_and_explicit_pad_in_tflm_equal_the_reference(tmp_path):
    (tmp_path / "padded.py").write_text(PADDED)
    sys.path.insert(0, str(tmp_path))
    import padded

    torch.manual_seed(5)
    torch.save(padded.Padded().state_dict(), tmp_path / "p.pth")
    x, _ = digits_test_split()
    path, tgraph, _ = export(tmp_path, tmp_path / "p.pth", "p", bits=8, model_def=f"{tmp_path / 'padded.py'}:Padded",
                             calibration_data=str(DIGITS), calibration_samples=32)  # fmt: skip
    by_source = {o.source[0]: o for o in tgraph.ops if o.source}
    assert by_source["dilated"].attrs["padding"] == "SAME" and by_source["dilated"].attrs["activation"] == "RELU6"
    assert by_source["odd"].attrs["padding"] == "VALID" and tgraph.ops[by_source_index(tgraph, "odd") - 1].op == "PAD"
    assert [o.attrs["padding"] for o in tgraph.ops if o.op == "MAX_POOL_2D"] == ["SAME", "VALID"]
    tflm_equals_reference(path, tgraph, x[:6, None])


def by_source_index(tgraph, name: str) -> int:
    return next(i for i, o in enumerate(tgraph.ops) if o.source and o.source[0] == name)


BRANCHES = '''
import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (1, 28, 28)


class Branches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(1, 3, 5, padding=2)
        self.mix = nn.Conv2d(7, 8, 3, stride=2)
        self.fc = nn.Linear(8 * 13 * 13, 10)

    def forward(self, x):
        x = torch.cat([F.relu(self.a(x)), self.b(x)], 1)   # different ranges: requantized before the copy
        return self.fc(torch.flatten(F.relu(self.mix(x)), 1))
'''


def test_concatenation_of_branches_in_tflm_equals_the_reference(tmp_path):
    (tmp_path / "branches.py").write_text(BRANCHES)
    torch.manual_seed(7)
    sys.path.insert(0, str(tmp_path))
    import branches

    torch.save(branches.Branches().state_dict(), tmp_path / "b.pth")
    x, _ = digits_test_split()
    path, tgraph, _ = export(tmp_path, tmp_path / "b.pth", "b", bits=8, model_def=f"{tmp_path / 'branches.py'}:Branches",
                             calibration_data=str(DIGITS), calibration_samples=32)  # fmt: skip
    ops = [o.op for o in tgraph.ops]
    assert ops.count("CONCATENATION") == 1 and ops.count("QUANTIZE") == 2
    tflm_equals_reference(path, tgraph, x[:6, None])
