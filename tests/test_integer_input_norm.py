"""Per-channel --mean/--std folded into the layers that read the input (qexport.integer.fold_input,
README "Integer inference"), with CIFAR's normalisation on small RGB nets (tests/norm_nets.py):

* the folded float weights equal W / std_c computed here per input channel (plain and grouped
  conv), and the plan's integer weights are of the folded layer (within half a weight step);
* every integer node against a float64 torch run of the normalised float network as trained
  (x = (p / 255 - mean_c) / std_c, zero padding), within 4 % of the node's calibrated range, on
  calibration images (no clamping at the range's ends);
* the first conv's output at every position (borders included) from a transcription of the
  contract with Python ints and padding q = 0 (p = Z_c);
* the C source (gcc, the harness of tests/test_csource.py) bit-exact with run_integer;
* the command line: the half-step note naming the channels, a wrong count of values (usage
  error, exit 2), a max pool reading the input (exit 1, one line naming the node), nothing written;
* one mean/std for all channels keeps the old path (the same QuantizedModel, a scalar zero point).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from click.testing import CliRunner

from qexport.cli import cli
from qexport.errors import PlanError
from qexport.integer.calibrate import calibrate
from qexport.integer.fold_input import fold_input_std
from qexport.integer.lower import lower
from qexport.integer.run import run_integer
from qexport.prepare import load_model, plan_options_from, quantize

sys.path.insert(0, str(Path(__file__).parent))
import norm_nets  # noqa: E402

NETS = Path(__file__).with_name("norm_nets.py")
MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10
STD = (0.247, 0.243, 0.261)
NODE_TOLERANCE = 0.04  # of the node's calibrated range: 8-bit weights and activations, half-step input


def _images(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 8, 8)).astype(np.uint8)


def _build(tmp_path_factory, name: str):
    torch.manual_seed(1)
    module = getattr(norm_nets, name)().double().eval()
    path = tmp_path_factory.mktemp(name) / f"{name}.pth"
    torch.save({k: v.float() for k, v in module.state_dict().items()}, path)
    model = load_model(path, needs_graph=True, command="csource", model_def=f"{NETS}:{name}")
    qm = quantize(model, plan_options_from(bits=8, only=("*",)))
    folded, std = fold_input_std(qm, STD)
    cal = calibrate(folded, _images(0, 32), MEAN, std, progress=False)
    return module, path, qm, folded, cal, lower(folded, cal)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    return _build(tmp_path_factory, "RGBNet")


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    return _build(tmp_path_factory, "GroupedRGB")


def _std_of_weight(shape, groups: int) -> np.ndarray:
    """std of the input channel each weight element reads, by hand for the two nets' layouts."""
    if groups == 1:
        return np.asarray(STD).reshape(1, 3, 1, 1)
    per_out = np.repeat(np.asarray(STD), shape[0] // 3)  # groups 3: outputs 2c, 2c + 1 read channel c
    return per_out.reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("net", ["rgb", "grouped"])
def test_folded_weights_are_w_over_std_per_input_channel(net, request):
    module, _, qm, folded, _, ig = request.getfixturevalue(net)
    w = module.c1.weight.detach().numpy()  # float64 of the float32 checkpoint values
    want = (w.astype(np.float32).astype(np.float64) / _std_of_weight(w.shape, module.c1.groups)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(folded.model.tensors["c1.weight"]), want)
    np.testing.assert_array_equal(np.asarray(folded.model.tensors["c2.weight" if net == "rgb" else "fc.weight"]),
                                  np.asarray(qm.model.tensors["c2.weight" if net == "rgb" else "fc.weight"]))
    q = folded.quant_layer("c1")
    step = np.asarray(q.params["scale"], np.float64).reshape(-1, 1, 1, 1) if np.ndim(q.params["scale"]) else \
        float(q.params["scale"])  # fmt: skip
    integer = ig.node("c1").arrays["w_minus_z"].astype(np.float64) * step
    assert np.all(np.abs(integer - want) <= step / 2 * (1 + 1e-6) + 1e-12)
    assert ig.input.scale == 1 / 255 and ig.input.zero_point == (125, 123, 114)  # round(255 mean_c)


def _float_reference(module, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The normalised float network as trained, in float64 torch (zero padding)."""
    x = (torch.from_numpy(pixels.astype(np.float64)) / 255 - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) \
        / torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)  # fmt: skip
    m = module
    with torch.no_grad():
        if isinstance(m, norm_nets.RGBNet):
            c1 = torch.relu(m.c1(x))
            c2 = torch.relu(m.c2(c1))
            g = torch.nn.functional.adaptive_avg_pool2d(c2, 1)
            return {"c1": c1, "c2": c2, "adaptive_avg_pool2d": g, "fc": m.fc(torch.flatten(g, 1))}
        c1 = torch.relu(m.c1(x))
        return {"c1": c1, "fc": m.fc(torch.flatten(c1, 1))}


@pytest.mark.parametrize("net", ["rgb", "grouped"])
def test_integer_nodes_follow_the_normalised_float_network(net, request):
    module, _, _, _, cal, ig = request.getfixturevalue(net)
    pixels = _images(0, 32)[::4]  # calibration images: no value outside the calibrated ranges (clamped)
    codes = run_integer(ig, pixels)
    ref = _float_reference(module, pixels)
    for name, want in ref.items():
        node = ig.node(name)
        got = node.out.real(codes[name]).reshape(want.shape)
        lo, hi = cal.ranges[node.source[-1] if node.source else name]
        err = np.abs(got - want.numpy()).max()
        assert err <= NODE_TOLERANCE * (hi - lo), (name, err, hi - lo)


def test_first_conv_with_padding_by_python_ints(rgb):
    """c1 (3x3, padding 1) at every position: acc = sum over in-bounds taps of (p - Z_c) w + b_q;
    a tap on the padding would hold p = Z_c, so it adds 0 (the float model's zero padding)."""
    _, _, _, _, _, ig = rgb
    node = ig.node("c1")
    pixels = _images(7, 2)
    pixels[0, :, 0, :] = 255  # saturated borders
    pixels[1, :, :, -1] = 0
    got = run_integer(ig, pixels)["c1"]
    zc = [125, 123, 114]
    w = node.arrays["w_minus_z"].astype(object)
    b, m, s = (node.arrays[k].astype(object) for k in ("b_q", "m", "s"))
    a = node.attrs
    xz = pixels.astype(object) - np.asarray(zc, object).reshape(1, 3, 1, 1)
    padded = np.zeros((2, 3, 10, 10), object)  # q = 0 on the border: p = Z_c
    padded[:, :, 1:9, 1:9] = xz
    acc = np.zeros((2, 6, 8, 8), object) + b.reshape(1, 6, 1, 1)
    for ky in range(3):
        for kx in range(3):
            tap = padded[:, None, :, ky:ky + 8, kx:kx + 8] * w[None, :, :, ky, kx, None, None]
            acc = acc + tap.sum(axis=2)
    prod = acc * m.reshape(1, 6, 1, 1)
    sh = s.reshape(1, 6, 1, 1)
    half = np.vectorize(lambda v: 0 if v == 0 else 1 << (v - 1), otypes=[object])(sh)
    y = a["zero_out"] + (prod + half) // np.vectorize(lambda v: 1 << v, otypes=[object])(sh)
    want = np.minimum(np.maximum(y, a["lo"]), a["hi"]).astype(np.int64)
    np.testing.assert_array_equal(got.astype(np.int64), want)


@pytest.mark.parametrize("net", ["rgb", "grouped"])
def test_c_source_is_bit_exact_with_the_reference(net, request, tmp_path):
    from test_csource import _host_run, assert_bit_exact

    ig = request.getfixturevalue(net)[-1]
    pixels = _images(9, 3)
    assert_bit_exact(ig, pixels, _host_run(ig, "norm", pixels, tmp_path, "gcc"))
    c = (tmp_path / "norm_inference.c").read_text()
    assert "qx_n0_zi[3] = {\n    125, 123, 114\n};" in c and "_zc(&qx_n0_g, qx_n0_zi, " in c


def test_one_value_for_every_channel_keeps_the_scalar_path(rgb):
    _, _, qm, _, _, _ = rgb
    assert fold_input_std(qm, (0.25, 0.25, 0.25))[0] is qm
    cal = calibrate(qm, _images(0, 8), (0.5,) * 3, (0.25,) * 3, progress=False)
    ig = lower(qm, cal)
    assert ig.input.zero_point == 128 and ig.input.scale == 1 / (255 * 0.25)
    assert ig.node("c1").attrs["zero_in"] == 128 and len(ig.notes) == 1  # 127.5: the half-step note


def _cli(tmp_path, model: str, ckpt: Path, *norm: str):
    """`qexport csource` in this process (CliRunner: the exit code and stderr of the command)."""
    np.save(tmp_path / "imgs.npy", _images(0, 8))
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["csource", str(ckpt), "--model-def", f"{NETS}:{model}", "--bits", "8", "--only",
                                   "*", "--calibrate", str(tmp_path / "imgs.npy"), *norm, "-o", str(out)])  # fmt: skip
    res.returncode = res.exit_code
    return res, out


def test_cli_note_count_error_and_refusal(rgb, tmp_path):
    res, out = _cli(tmp_path, "RGBNet", rgb[1], "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)))
    assert res.returncode == 0, res.stderr
    assert "note: input channel 0, 1, 2: 255 x mean (125.307, 122.961, 113.858) is not a whole code" in res.stderr
    res, out = _cli(tmp_path, "RGBNet", rgb[1], "--mean", "0.5,0.5", "--std", "0.25")
    assert res.returncode == 2 and "--mean 0.5,0.5: 2 values for 3 channels; give 1 value or 3" in res.stderr
    torch.manual_seed(0)
    pool = tmp_path / "pool.pth"
    torch.save(norm_nets.PoolFirst().state_dict(), pool)
    for norm in (("--std", "0.2,0.3,0.25"), ("--mean", "0.2,0.3,0.4")):
        target = tmp_path / "refused"
        res, _ = _cli(tmp_path, "PoolFirst", pool, *norm)
        errors = [ln for ln in res.stderr.splitlines() if not ln.startswith("qexport: --model-def")]
        assert res.returncode == 1 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
        assert errors[0].startswith("Error: node max_pool2d (max_pool2d) reads the input directly") and \
            norm[0] in errors[0]  # fmt: skip
        assert not target.exists() and not (tmp_path / "out").joinpath("pool_inference.c").exists()


def test_c_source_per_channel_zero_in_sign_mode_and_linear(tmp_path):
    """The _zc kernels the nets above do not reach: a pooled BN + sign conv and a linear reading
    per-channel (per-feature) input zero points, bit for bit with run_integer (gcc)."""
    from test_csource import _host_run, assert_bit_exact

    from qexport.integer.ir import IntGraph, IntNode, QTensor
    from qexport.integer.weighted import SIGN

    rng = np.random.default_rng(3)
    zc = (0, 255, 114)
    conv = IntNode("s", "conv2d", ("input",), (4, 3, 3), SIGN,
                   {"zero_in": zc, "acc_bits": 32, "mode": "sign", "stride": (1, 1), "padding": (1, 1),
                    "dilation": (1, 1), "groups": 1, "pool_kernel": (2, 2), "pool_stride": (2, 2)},
                   {"w_minus_z": rng.integers(-1, 2, (4, 3, 3, 3)).astype(np.int32),
                    "tau": np.array([-50, 0, 30, 400], np.int64),
                    "flip": np.array([0, 1, 0, 1], np.uint8)})  # fmt: skip
    features = (7, 200, 0, 255, 31)
    lin = IntNode("l", "linear", ("input",), (3,), QTensor(0.05, 9),
                  {"zero_in": features, "acc_bits": 32, "mode": "requantize", "zero_out": 9, "lo": 0, "hi": 255},
                  {"w_minus_z": rng.integers(-255, 256, (3, 5)).astype(np.int32), "b_q": np.array([5, -7, 0]),
                   "m": np.array([1 << 15, 3, (1 << 16) - 1]), "s": np.array([20, 1, 23])})  # fmt: skip
    for k, (node, shape, z) in enumerate(((conv, (3, 6, 6), zc), (lin, (5,), features))):
        ig = IntGraph((node,), shape, QTensor(1 / 255, z), node.name)
        pixels = _images(11, 4).reshape(4, -1)[:, :int(np.prod(shape))].reshape((4, *shape))
        folder = tmp_path / str(k)
        folder.mkdir()
        assert_bit_exact(ig, pixels, _host_run(ig, "zc", pixels, folder, "gcc"))


def test_a_linear_reading_the_input_is_refused(tmp_path_factory):
    """The integer graph takes images; a linear reading a (features,) input has no channels to fold."""
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("mlp") / "mlp.pth"
    torch.save(norm_nets.MLP().state_dict(), path)
    model = load_model(path, needs_graph=True, command="csource", model_def=f"{NETS}:MLP")
    with pytest.raises(PlanError, match=r"^node fc1 \(linear\) reads the input directly, so the per-channel --std"):
        fold_input_std(quantize(model, plan_options_from(bits=8, only=("*",))), STD)
