"""`qexport golden`: per-layer golden vectors.

LeNet: the golden code computes its stages with qexport.quantize.reference.lenet_forward_int, so
comparing them with that function would compare the code with itself.  The independent checks are:
- the C program tests/c/lenet_int.c, compiled with gcc on the header `qexport cheader` writes for the
  same plan, run on the same images: every stage equal (the C pass is the independent integer
  implementation; tests/test_cheader.py checks it on the header side);
- `lenet_int_transcription` below, the README's "Numerics" formulas written out in numpy here:
  y = ((sum x*(w_q - Z) + b_q) * m) >> s in int64 with a floor shift, ReLU, 2x2 pool (a+b+c+d+2) >> 2;
read back from .npy, from .mem by Icarus Verilog and from golden.h by a C program; the last layer's
argmax is the prediction, and the accuracy over the digits test split is reported.
Binary layers (VGG, ResNet): the popcount outputs equal the +-1 integer dot computed independently
in the test with torch (float64 convolutions of the golden +-1 inputs), and those inputs are the
signs of the float model carrying the dequantized weights, evaluated here in float64 (see
`assert_signs_match` for why and where a float32 kernel may legitimately differ)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cheader_support import C_LENET_STAGES, run_lenet_c
from conftest import LENET, digits_test_split, run_cli
from mem_formats import iverilog_dump, sign_extend
from qexport.export import load_model, plan_options_from, quantize
from qexport.encode import pack
from qexport.encode.arrange import arrange
from qexport.encode.options import encode_options_from
from tools import require_tool

LENET_STAGES = C_LENET_STAGES  # c1 s2 c3 s4 c5 f6 output (README "Golden vectors")
LENET_FILES = ("input",) + LENET_STAGES + ("prediction",)


def lenet_q(**kw):
    if kw.get("bits") is None:
        kw.setdefault("plan", "seed")  # what `qexport golden` uses without --bits/--plan
    return arrange(quantize(load_model(LENET), plan_options_from(**kw)), encode_options_from(**kw))


def golden_cli(*args, ok=True):
    r = run_cli("golden", *args)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def load_npy_folder(folder: Path) -> tuple[dict, dict]:
    manifest = json.loads((folder / "manifest.json").read_text())
    arrays = {s["name"]: np.load(folder / s["file"], allow_pickle=False) for s in manifest["stages"]}
    return arrays, manifest


# ------------------------------------------------------------------------------------------------
# LeNet: integer reference pass

# seed 002's LeNet (README "Models"): 5x5 convs, stride 1, c1 padded by 2; ReLU + 2x2 average pool
# after c1 and c3; c5, f6, output without ReLU.
LENET_CONVS = (("c1", 2, "s2"), ("c3", 0, "s4"), ("c5", 0, None))


def _layer_ints(qm, name):
    """(w_q - Z as int64 in OIHW/OI order, b_q, m, s) of one layer, from the QuantizedModel."""
    ql = qm.quant_layer(name)
    t = qm.tensor(ql.weight)
    codes = np.asarray(t.data).astype(np.int64)
    if t.layout == "ohwi" and codes.ndim == 4:
        codes = codes.transpose(0, 3, 1, 2)
    col = (-1,) + (1,) * (codes.ndim - 1)
    z = np.asarray(ql.params["zero_point"], np.int64)
    m = np.asarray(ql.params["multiplier"], np.int64)
    s = np.asarray(ql.params["shift"], np.int64)
    b = np.asarray(qm.tensor(ql.bias).data, np.int64)
    return codes - (z.reshape(col) if z.ndim else z), b, m, s


def _requantize(acc, m, s):
    """y = (acc * m) >> s: 64-bit product, floor shift (numpy's >> on int64 is arithmetic)."""
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    m = m.reshape(shape) if m.ndim else m
    s = s.reshape(shape) if s.ndim else s
    assert (np.abs(acc) < 2**62 // max(1, int(np.max(m)))).all()  # the product fits int64
    return (acc * m) >> s


def lenet_int_transcription(qm, images) -> dict[str, np.ndarray]:
    """README "Numerics" (integer forward pass, seed 002), written out here in numpy, int64:
    acc = sum x*(w_q - Z) + b_q; y = (acc*m) >> s; ReLU; 2x2 pool (a+b+c+d+2) >> 2."""
    x = np.asarray(images).astype(np.int64)[:, None]  # (N, 1, 28, 28) pixel codes
    out = {}
    for name, pad, pool in LENET_CONVS:
        w, b, m, s = _layer_ints(qm, name)
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        win = np.lib.stride_tricks.sliding_window_view(xp, w.shape[2:], axis=(2, 3))  # N C H W kh kw
        acc = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2) + b.reshape(1, -1, 1, 1)
        x = out[name] = _requantize(acc, m, s)
        if pool:
            r = np.maximum(x, 0)
            x = out[pool] = (r[:, :, 0::2, 0::2] + r[:, :, 0::2, 1::2] + r[:, :, 1::2, 0::2] + r[:, :, 1::2, 1::2] + 2) >> 2
    x = x.reshape(x.shape[0], -1)
    for name in ("f6", "output"):
        w, b, m, s = _layer_ints(qm, name)
        x = out[name] = _requantize(x @ w.T + b, m, s)
    return out


def lenet_c(tmp_path, images, *cheader_args):
    """Every stage from tests/c/lenet_int.c built with gcc on `qexport cheader` for the same plan."""
    header = tmp_path / "c" / "lenet.h"
    header.parent.mkdir()
    r = run_cli("cheader", LENET, "-o", header, *(cheader_args or ("--plan", "seed")))  # golden's default plan
    assert r.returncode == 0, r.stderr
    return run_lenet_c(header, images)


def test_lenet_golden_equals_reference_on_the_test_split(tmp_path):
    out = tmp_path / "g"
    r = golden_cli(LENET, "--samples", "100000", "-o", out)
    x, y = digits_test_split()
    ref = lenet_int_transcription(lenet_q(), x)
    c_stages, c_pred = lenet_c(tmp_path, x)  # the independent C implementation (gcc)
    got, manifest = load_npy_folder(out)
    assert np.array_equal(got["input"], x[:, None]) and got["input"].dtype == np.uint8
    for stage in LENET_STAGES:
        assert got[stage].dtype == np.int64 and np.array_equal(got[stage], ref[stage]), stage
        assert np.array_equal(got[stage].reshape(len(x), -1), c_stages[stage]), stage
    pred = ref["output"].argmax(axis=1)
    assert np.array_equal(got["prediction"], pred) and np.array_equal(got["prediction"], c_pred)
    assert np.array_equal(got["label"], y)
    accuracy = float((pred == y).mean())
    print(f"LeNet digits golden (integer pass): accuracy {accuracy:.4f} over {len(y)} test images")
    assert manifest["accuracy"] == accuracy and accuracy > 0.95
    assert f"accuracy {accuracy:.4f}" in r.stderr
    assert manifest["count"] == len(y) and manifest["inputs"] == ["digits_test.npz"]
    # the integer prediction agrees with the float model on nearly every image
    from qexport.models import build

    net = build("lenet")
    net.load_state_dict(torch.load(LENET, weights_only=True))
    with torch.no_grad():
        float_pred = net(torch.from_numpy(x).float().unsqueeze(1) / 256).argmax(1).numpy()
    agreement = float((float_pred == pred).mean())
    print(f"integer vs float prediction agreement: {agreement:.4f}")
    assert agreement > 0.97


def test_lenet_golden_mem_read_by_iverilog(tmp_path):
    require_tool("iverilog")
    out = tmp_path / "g"
    golden_cli(LENET, "--samples", "3", "--format", "mem", "-o", out)
    manifest = json.loads((out / "manifest.json").read_text())
    x, _ = digits_test_split()
    ref = lenet_int_transcription(lenet_q(), x[:3])
    ref = {**ref, "input": x[:3], "prediction": ref["output"].argmax(axis=1)}
    stages = {s["name"]: s for s in manifest["stages"]}
    files = [(out / stages[n]["file"], stages[n]["width"], stages[n]["depth"]) for n in LENET_FILES]
    dumped = iverilog_dump(files, tmp_path)
    for name, words in zip(LENET_FILES, dumped):
        s = stages[name]
        expected = ref[name].reshape(-1).tolist()
        if s["signed"]:
            expected = [v % (1 << s["width"]) for v in expected]
        assert s["width"] == (8 if name == "input" else 32)
        assert words == expected, name


def test_lenet_golden_cheader_compiled_and_printed(tmp_path):
    gcc = require_tool("gcc")
    out = tmp_path / "g"
    golden_cli(LENET, "--samples", "2", "--format", "cheader", "-o", out)
    prog = tmp_path / "p.c"
    loop = '  for (i = 0; i < GOLDEN_{N}_COUNT; i++) printf("{n} %lld\\n", (long long)golden_{n}[i]);\n'
    body = "".join(loop.format(N=n.upper(), n=n) for n in LENET_FILES)
    prog.write_text(f'#include <stdio.h>\n#include "golden.h"\nint main(void) {{\n  int i;\n{body}  return 0;\n}}\n')
    exe = tmp_path / "p"
    subprocess.run([gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", str(out), "-o", str(exe),
                    str(prog)], check=True, capture_output=True, text=True)  # fmt: skip
    printed: dict[str, list[int]] = {n: [] for n in LENET_FILES}
    for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines():
        name, value = line.split()
        printed[name].append(int(value))
    x, _ = digits_test_split()
    ref = lenet_int_transcription(lenet_q(), x[:2])
    ref = {**ref, "input": x[:2], "prediction": ref["output"].argmax(axis=1)}
    for n in LENET_FILES:
        assert printed[n] == ref[n].reshape(-1).tolist(), n
    text = (out / "golden.h").read_text()
    assert "#define GOLDEN_C1_DIM1 6" in text and "static const int32_t golden_c1[" in text


def _pgm(path: Path, img: np.ndarray) -> None:
    path.write_bytes(b"P5\n%d %d\n255\n" % (img.shape[1], img.shape[0]) + img.tobytes())


def test_image_and_npy_inputs(tmp_path):
    from PIL import Image

    x, _ = digits_test_split()
    Image.fromarray(x[0]).save(tmp_path / "a.png")
    Image.fromarray(np.repeat(x[1][:, :, None], 3, axis=2)).save(tmp_path / "b.bmp")  # RGB -> L
    _pgm(tmp_path / "c.pgm", x[2])
    np.save(tmp_path / "d.npy", x[3:6])
    out = tmp_path / "g"
    golden_cli(LENET, "-i", tmp_path / "a.png", "-i", tmp_path / "b.bmp", "-i", tmp_path / "c.pgm",
               "-i", tmp_path / "d.npy", "-o", out)  # fmt: skip
    got, manifest = load_npy_folder(out)
    ref = lenet_int_transcription(lenet_q(), x[:6])
    assert np.array_equal(got["input"][:, 0], x[:6])
    for stage in LENET_STAGES:
        assert np.array_equal(got[stage], ref[stage]), stage
    assert manifest["inputs"] == ["a.png", "b.bmp", "c.pgm", "d.npy"] and "label" not in got
    # --samples takes the first N of the given inputs
    golden_cli(LENET, "-i", tmp_path / "d.npy", "--samples", "2", "-o", tmp_path / "h")
    got, _ = load_npy_folder(tmp_path / "h")
    assert np.array_equal(got["output"], ref["output"][3:5])


def test_plan_options_reach_the_integer_pass(tmp_path):
    out = tmp_path / "g"
    golden_cli(LENET, "--samples", "5", "--bits", "6", "--per-channel", "-o", out)
    got, manifest = load_npy_folder(out)
    x, _ = digits_test_split()
    ref = lenet_int_transcription(lenet_q(bits=6, per_channel=True), x[:5])
    c_stages, _ = lenet_c(tmp_path, x[:5], "--bits", "6", "--per-channel")  # per-channel m, s, Z in C too
    for stage in LENET_STAGES:
        assert np.array_equal(got[stage], ref[stage]), stage
        assert np.array_equal(got[stage].reshape(5, -1), c_stages[stage]), stage
    assert "--bits 6" in manifest["provenance"]["options"]


# ------------------------------------------------------------------------------------------------
# Binary layers: XNOR / popcount


def _float_model(qm):
    """The architecture's torch module with the QuantizedModel's binary codes (x alpha) as weights."""
    from qexport.models import build

    net = build(qm.arch, dict(qm.model.config))
    state = {k: torch.from_numpy(np.array(v)) for k, v in qm.model.tensors.items()}
    for q in qm.layers:
        assert q.scheme == "binary"
        t = qm.tensor(q.weight)
        codes = pack.from_layout(t.data, t.layout if t.layout in ("oihw", "ohwi") else "oihw",
                                 qm.model.tensors[q.weight].shape)  # fmt: skip
        w = torch.from_numpy(codes.astype(np.float32))
        if "alpha" in q.params:
            alpha = torch.from_numpy(np.asarray(q.params["alpha"], np.float32))
            w = w * alpha.reshape((-1,) + (1,) * (w.ndim - 1))
        state[q.weight] = w
    net.load_state_dict(state, strict=False)
    return net


# Kernel independence: the golden command runs the float model in float32, whose rounding can put an
# input of Sign that lies within float32 error of 0 on either side depending on the kernels a
# machine picks (and one flip moves everything after it a little).  The test's reference runs the
# same network in float64 (`_capture`); golden +-1 inputs must equal its signs everywhere except
# where the float64 pre-sign value is near 0 (NEAR_ZERO of the layer's largest magnitude), and only
# at a handful of such places.  Everything the golden vectors compute from their +-1 inputs
# (patches, popcounts, accumulators) is integer arithmetic, checked exactly from those inputs.
NEAR_ZERO = 1e-3


def _capture(net, names, images, gain=256):
    """Run the float model in float64 (module .double(), float64 input); per layer: its input, its
    output and the value whose sign is its +-1 input (the layer's input for the Binarize* layers of
    VGG, the output of the block's BN for ResNet's conv, which gets sign(bn(x)))."""
    net = net.double()
    seen_in, seen_out, seen_pre = {n: [] for n in names}, {n: [] for n in names}, {n: [] for n in names}
    hooks = []
    for n in names:
        mod = net.get_submodule(n)
        hooks.append(mod.register_forward_pre_hook(lambda m, a, n=n: seen_in[n].append(a[0].clone())))
        hooks.append(mod.register_forward_hook(lambda m, a, o, n=n: seen_out[n].append(o.clone())))
        if type(mod).__name__.startswith("Binarize"):
            hooks.append(mod.register_forward_pre_hook(lambda m, a, n=n: seen_pre[n].append(a[0].clone())))
        else:
            bn = net.get_submodule(n.rsplit(".", 1)[0] + ".bn")
            hooks.append(bn.register_forward_hook(lambda m, a, o, n=n: seen_pre[n].append(o.clone())))
    with torch.no_grad():
        logits = net(torch.from_numpy(images.astype(np.float64) / gain))
    for h in hooks:
        h.remove()
    first = lambda d: {n: d[n][0] for n in names}  # noqa: E731
    return first(seen_in), first(seen_out), first(seen_pre), logits.numpy()


def assert_signs_match(got: np.ndarray, pre: np.ndarray, name: str) -> None:
    """Golden +-1 inputs (from the float32 model) against the signs of the float64 pre-sign values:
    equal away from 0; where they differ the float64 value is near 0, and that happens rarely."""
    pre = np.asarray(pre, np.float64).reshape(got.shape)
    ref = np.where(pre > 0, 1, -1)
    differ = ref != got
    near = np.abs(pre) <= NEAR_ZERO * np.abs(pre).max()
    assert not (differ & ~near).any(), f"{name}: {int((differ & ~near).sum())} +-1 inputs differ from float64 signs"
    assert int(differ.sum()) <= max(8, got.size // 1000), f"{name}: {int(differ.sum())} inputs differ"
    assert set(np.unique(got).tolist()) <= {-1, 1}


def assert_predictions(pred: np.ndarray, logits64: np.ndarray) -> None:
    """The golden prediction (float32 argmax) equals the float64 argmax wherever the top two logits
    are clearly apart (1 % of the logits' spread), and that is the case for at least one sample."""
    top2 = np.sort(logits64, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.01 * (logits64.max(axis=1) - logits64.min(axis=1))
    assert clear.any()
    assert np.array_equal(pred[clear], logits64.argmax(axis=1)[clear])


def _check_binary_layer(qm, name, got, x_float, y_float, pre_sign):
    layer = qm.model.layer(name)
    q = qm.quant_layer(name)
    t = qm.tensor(q.weight)
    opts = qm.encoding  # the word size and layout the golden command was given
    codes = pack.from_layout(t.data, t.layout if t.layout in ("oihw", "ohwi") else "oihw",
                             qm.model.tensors[q.weight].shape)  # fmt: skip
    assert x_float.dtype == torch.float64  # the reference ran in float64
    pm1_ref = torch.where(x_float > 0, 1.0, -1.0).double()  # the float64 model's +-1 input
    assert int((x_float == 0).sum()) == 0  # no activation exactly 0: the float model saw +-1 only
    g_in = got[f"{name}.input"]
    assert g_in.dtype == np.int8
    assert_signs_match(g_in.reshape(pm1_ref.shape), pre_sign.numpy(), name)
    pm1 = torch.from_numpy(g_in.astype(np.float64).reshape(pm1_ref.shape))  # the golden +-1 input
    w = torch.from_numpy(codes.astype(np.float64))
    bias = qm.model.tensors.get(layer.bias) if layer.bias else None
    alpha = np.asarray(q.params["alpha"], np.float64) if "alpha" in q.params else None
    if codes.ndim == 4:
        ph, pw = layer.attrs["padding"]
        stride = tuple(layer.attrs["stride"])
        acc = F.conv2d(pm1, w, stride=stride, padding=(ph, pw))
        acc_ref = F.conv2d(pm1_ref, w, stride=stride, padding=(ph, pw))
        pop = F.conv2d(F.pad(pm1, (pw, pw, ph, ph), value=-1.0), w, stride=stride)
        # the packed patches unpack to the -1-padded im2col rows (order of the weights' layout)
        unfold = F.unfold(F.pad(pm1, (pw, pw, ph, ph), value=-1.0), codes.shape[2:], stride=stride)  # (N, C*kh*kw, L)
        n_, _, ho, wo = acc.shape
        rows = unfold.transpose(1, 2).reshape(n_ * ho * wo, *codes.shape[1:])  # (rows, C, kh, kw)
        words = got[f"{name}.input_packed"]
        assert words.shape[:3] == (n_, ho, wo)
        back = pack.unpack_binary(words.reshape(n_ * ho * wo, -1), int(np.prod(codes.shape[1:])),
                                  (n_ * ho * wo,) + codes.shape[1:], opts.layout)  # fmt: skip
        assert np.array_equal(back, rows.numpy().astype(np.int8))
        chan = (1, -1, 1, 1)
    else:
        acc = pm1.reshape(pm1.shape[0], -1) @ w.T
        acc_ref = pm1_ref.reshape(pm1_ref.shape[0], -1) @ w.T
        pop = acc
        back = pack.unpack_binary(got[f"{name}.input_packed"], codes.shape[1], (pm1.shape[0], codes.shape[1]))
        assert np.array_equal(back, pm1.reshape(pm1.shape[0], -1).numpy().astype(np.int8))
        chan = (1, -1)
    assert got[f"{name}.popcount"].dtype == np.int64
    assert np.array_equal(got[f"{name}.popcount"], pop.numpy().astype(np.int64))
    assert np.array_equal(got[f"{name}.acc"], acc.numpy().astype(np.int64))
    # the (float64) reference's layer output is alpha * acc + bias of its own +-1 input
    expect = acc_ref.numpy() * (alpha.reshape(chan) if alpha is not None else 1.0)
    if bias is not None:
        expect = expect + np.asarray(bias, np.float64).reshape(chan)
    np.testing.assert_allclose(y_float.numpy(), expect, rtol=1e-9, atol=1e-9)


def _rgb(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # NHWC, like CIFAR arrays


@pytest.mark.slow
def test_vgg_binary_golden_popcount(tmp_path, checkpoint):
    ckpt = checkpoint("vgg_cifar10_binary")
    np.save(tmp_path / "x.npy", _rgb(2))
    out = tmp_path / "g"
    golden_cli(ckpt, "-i", tmp_path / "x.npy", "-o", out)
    got, manifest = load_npy_folder(out)
    qm = arrange(quantize(load_model(ckpt), plan_options_from(plan="seed")), encode_options_from())
    names = ["features.3", "features.7", "features.10", "features.14", "features.17", "classifier.0"]
    assert [s["layer"] for s in manifest["stages"] if s["name"].endswith(".popcount")] == names
    net = _float_model(qm)
    images = _rgb(2).transpose(0, 3, 1, 2)
    xs, ys, pre, logits = _capture(net, names, images)
    assert np.array_equal(got["input"], images)
    for name in names:
        _check_binary_layer(qm, name, got, xs[name], ys[name], pre[name])
    assert_predictions(got["prediction"], logits)


@pytest.mark.slow
def test_vgg_thresholds_reproduce_the_float_models_next_binarized_input(tmp_path, checkpoint):
    """--fold-bn: BN + sign become integer thresholds; each layer's thresholded output (after the
    2x2 max-pool where the graph has one) equals the next binary layer's input, which the golden
    vectors take from the float model, and equals the sign of the float64 evaluation of that input.

    Kernel independence, by margin: in this VGG every value that reaches a Sign is BN of an exact
    sum (+-1 weights times multiples of 1/256 or +-1 inputs: exact in float32), so the values form
    a small per-channel set, and the smallest |value| is checked here to stay far above float32
    rounding (MARGIN of the largest): no float kernel can move one across 0."""
    ckpt = checkpoint("vgg_cifar10_binary")
    images = _rgb(2, seed=3)
    np.save(tmp_path / "x.npy", images)
    out = tmp_path / "g"
    golden_cli(ckpt, "-i", tmp_path / "x.npy", "--fold-bn", "-o", out)
    got, _ = load_npy_folder(out)
    chain = ["features.3", "features.7", "features.10", "features.14", "features.17", "classifier.0"]
    qm = quantize(load_model(ckpt), plan_options_from(plan="seed", fold_bn=True))
    _, _, pre, _ = _capture(_float_model(qm), chain, images.transpose(0, 3, 1, 2))  # float64, BN as BN
    margin = 1e-5
    for layer, nxt in zip(chain, chain[1:]):
        produced = got[f"{layer}.output"]
        assert produced.dtype == np.int8
        n = produced.shape[0]
        assert np.array_equal(produced.reshape(n, -1), got[f"{nxt}.input"].reshape(n, -1)), layer
        x = pre[nxt].numpy().reshape(n, -1)
        assert np.abs(x).min() > margin * np.abs(x).max(), nxt  # the inputs have the margin
        assert np.array_equal(produced.reshape(n, -1), np.where(x > 0, 1, -1)), layer
    assert "classifier.0.output" not in got  # its BN feeds log-softmax, not a sign


@pytest.mark.slow
def test_resnet_binary_golden_alpha_ohwi_64(tmp_path, checkpoint):
    ckpt = checkpoint("resnet18_bnn")
    np.save(tmp_path / "x.npy", _rgb(2, seed=1))
    out = tmp_path / "g"
    names = ["layer1.0.conv", "layer3.0.conv", "layer4.3.conv"]
    golden_cli(ckpt, "-i", tmp_path / "x.npy", "--layer", "layer1.0.*", "--layer", "layer3.0.conv",
               "--layer", "layer4.3.conv", "--word-bits", "64", "--layout", "ohwi", "-o", out)  # fmt: skip
    got, manifest = load_npy_folder(out)
    assert got["layer3.0.conv.input_packed"].dtype == np.uint64
    qm = arrange(quantize(load_model(ckpt), plan_options_from(plan="seed")),
                 encode_options_from(word_bits=64, layout="ohwi", pack=True))
    net = _float_model(qm)
    images = _rgb(2, seed=1).transpose(0, 3, 1, 2)
    xs, ys, pre, logits = _capture(net, names, images)
    for name in names:
        _check_binary_layer(qm, name, got, xs[name], ys[name], pre[name])
    assert_predictions(got["prediction"], logits)


def test_binary_golden_mem_format(tmp_path, checkpoint):
    """Packed activations and popcount outputs as .mem words, read back by Icarus Verilog.  (The .npy
    run is only the expected words of the same export; VGG's Sign inputs have a margin far above
    float32 rounding, see the thresholds test, so both runs binarize alike on any machine.)"""
    require_tool("iverilog")
    ckpt = checkpoint("vgg_cifar10_binary")
    np.save(tmp_path / "x.npy", _rgb(1, seed=2))
    golden_cli(ckpt, "-i", tmp_path / "x.npy", "--layer", "classifier.0", "--layer", "features.17",
               "--format", "npy", "-o", tmp_path / "n")  # fmt: skip
    golden_cli(ckpt, "-i", tmp_path / "x.npy", "--layer", "classifier.0", "--layer", "features.17",
               "--format", "mem", "-o", tmp_path / "m")  # fmt: skip
    ref, _ = load_npy_folder(tmp_path / "n")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    stages = [s for s in manifest["stages"] if s["name"] != "input"]
    dumped = iverilog_dump([(tmp_path / "m" / s["file"], s["width"], s["depth"]) for s in stages], tmp_path)
    for s, words in zip(stages, dumped):
        a = ref[s["name"]].reshape(-1)
        if s["name"].endswith(".input"):
            expected = [(v + 1) // 2 for v in a.tolist()]
            assert s["width"] == 1
        elif s["name"].endswith(".input_packed"):
            expected = a.tolist()
            assert s["width"] == 32
        else:
            expected = sign_extend([v % (1 << 64) for v in a.tolist()], 64, s["width"])
            assert s["width"] == 32
        assert words == expected, s["name"]


def test_binary_golden_cheader(tmp_path, checkpoint):
    """golden.h of binary layers: compiles with gcc, g++ and arm-none-eabi-gcc; a C program prints the
    packed activations, the +-1 inputs and the popcounts back, equal to the .npy golden vectors
    (the same export in another format; VGG's Sign inputs have a margin, see the thresholds test)."""
    gcc, gxx, arm = require_tool("gcc"), require_tool("g++"), require_tool("arm-none-eabi-gcc")
    ckpt = checkpoint("vgg_cifar10_binary")
    np.save(tmp_path / "x.npy", _rgb(1, seed=4))
    args = ["-i", tmp_path / "x.npy", "--layer", "features.17", "--layer", "classifier.0"]
    golden_cli(ckpt, *args, "-o", tmp_path / "n")
    golden_cli(ckpt, *args, "--format", "cheader", "-o", tmp_path / "h")
    ref, _ = load_npy_folder(tmp_path / "n")
    names = {"features.17.input_packed": ("golden_features_17_input_packed", "%llu", "unsigned long long"),
             "features.17.input": ("golden_features_17_input", "%lld", "long long"),
             "classifier.0.popcount": ("golden_classifier_0_popcount", "%lld", "long long"),
             "features.17.acc": ("golden_features_17_acc", "%lld", "long long")}  # fmt: skip
    body = "".join(f'  for (i = 0; i < sizeof {c} / sizeof {c}[0]; i++) printf("{n} {f}\\n", ({t}){c}[i]);\n'
                   for n, (c, f, t) in names.items())  # fmt: skip
    prog = tmp_path / "p.c"
    prog.write_text(f'#include <stdio.h>\n#include "golden.h"\nint main(void) {{\n  size_t i;\n{body}  return 0;\n}}\n')
    flags = ["-Wall", "-Wextra", "-Werror", "-I", str(tmp_path / "h")]
    subprocess.run([gcc, "-std=c99", "-pedantic", *flags, "-o", str(tmp_path / "p"), str(prog)], check=True)
    subprocess.run([gxx, "-std=c++11", *flags, "-x", "c++", "-o", str(tmp_path / "q"), str(prog)], check=True)
    subprocess.run([arm, "-std=c99", "-pedantic", "-mcpu=cortex-m4", "-mthumb", *flags, "-c", "-o",
                    str(tmp_path / "p.o"), str(prog)], check=True)  # fmt: skip
    printed: dict[str, list[int]] = {n: [] for n in names}
    for line in subprocess.run([str(tmp_path / "p")], check=True, capture_output=True, text=True).stdout.splitlines():
        name, value = line.split()
        printed[name].append(int(value))
    for n in names:
        assert printed[n] == ref[n].reshape(-1).tolist(), n


# ------------------------------------------------------------------------------------------------
# Determinism and errors


def test_deterministic(tmp_path):
    """Same input and options, two runs (library entry point), every format: byte-identical folders."""
    from qexport.golden import golden

    for fmt in ("npy", "mem", "cheader"):
        trees = []
        for name in ("a", "b"):
            out, g, _ = golden(LENET, (), tmp_path / f"{fmt}_{name}", fmt, samples=3)
            trees.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
        assert trees[0] == trees[1] and len(trees[0]) > 1
        assert str(tmp_path).encode() not in b"".join(trees[0].values())
        assert str(LENET.parent).encode() not in b"".join(trees[0].values())


def _generic(tmp_path):
    path = tmp_path / "generic.pth"
    torch.save({"enc.weight": torch.randn(4, 3), "dec.weight": torch.randn(3, 4)}, path)
    return path


def _bad_png(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    return tmp_path / "bad.png"


def _big_png(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    return tmp_path / "big.png"


def _float_npy(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((2, 28, 28), np.float32))
    return tmp_path / "f.npy"


def _rgb_npy(tmp_path):
    np.save(tmp_path / "rgb.npy", _rgb(1))
    return tmp_path / "rgb.npy"


def _txt(tmp_path):
    (tmp_path / "t.txt").write_text("1 2 3")
    return tmp_path / "t.txt"


# (model, input maker or None, extra args, exit code, words the one-line message must contain)
ERROR_CASES = {
    "generic_reader": ("generic", None, ["--samples", "2"], 1, ["generic"]),
    "float_only_plan": ("lenet", None, ["--samples", "2", "--keep-float", "*"], 1, ["affine", "c1"]),
    "not_an_image": ("lenet", _bad_png, [], 1, ["bad.png"]),
    "missing_input": ("lenet", lambda p: p / "none.png", [], 1, ["none.png"]),
    "wrong_size": ("lenet", _big_png, [], 1, ["big.png", "28x28"]),
    "float_npy": ("lenet", _float_npy, [], 1, ["f.npy", "uint8"]),
    "unknown_type": ("lenet", _txt, [], 1, ["t.txt"]),
    "ternary_twn": ("twn_nin_gc", _rgb_npy, [], 1, ["binary"]),
    "mobilenet": ("mobilenet_v1", _rgb_npy, [], 1, ["mobilenet_v1"]),
    "lenet_layer_glob": ("lenet", None, ["--samples", "2", "--layer", "c1"], 2, ["--layer"]),
    "no_input": ("lenet", None, [], 2, ["--input"]),
    "samples_need_digits": ("vgg_cifar10_binary", None, ["--samples", "2"], 2, ["--input"]),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors(tmp_path, checkpoint, case):
    model, make_input, extra, code, needles = ERROR_CASES[case]
    ckpt = LENET if model == "lenet" else _generic(tmp_path) if model == "generic" else checkpoint(model)
    args = ["-i", make_input(tmp_path)] if make_input else []
    r = golden_cli(ckpt, *args, *extra, "-o", tmp_path / "o", ok=False)
    assert r.returncode == code, (r.returncode, r.stderr)
    if code == 1:
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
