"""`qexport golden`: per-layer golden vectors.

LeNet: every stage equals the Python integer reference (lenet_forward_int) exactly, read back from
.npy, from .mem by Icarus Verilog and from golden.h by a C program; the last layer's argmax is the
prediction, and the accuracy over the digits test split is reported.
Binary layers (VGG, ResNet): the popcount outputs equal the +-1 integer dot computed independently
in the test with torch (float64 convolutions of the binarized activations captured from the float
model carrying the dequantized weights)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import LENET, digits_test_split, run_cli
from mem_formats import iverilog_dump, sign_extend
from qexport.export import load_model, plan_options_from, quantize
from qexport.quantize import pack
from qexport.quantize.reference import LENET_STAGES, lenet_forward_int
from tools import require_tool

LENET_FILES = ("input",) + LENET_STAGES + ("prediction",)


def lenet_q(**kw):
    if kw.get("bits") is None:
        kw.setdefault("plan", "seed")  # what `qexport golden` uses without --bits/--plan
    return quantize(load_model(LENET), plan_options_from(**kw))


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


def test_lenet_golden_equals_reference_on_the_test_split(tmp_path):
    out = tmp_path / "g"
    r = golden_cli(LENET, "--samples", "100000", "-o", out)
    x, y = digits_test_split()
    ref = lenet_forward_int(lenet_q(), x)
    got, manifest = load_npy_folder(out)
    assert np.array_equal(got["input"], x[:, None]) and got["input"].dtype == np.uint8
    for stage in LENET_STAGES:
        assert got[stage].dtype == np.int64 and np.array_equal(got[stage], ref[stage]), stage
    pred = ref["output"].argmax(axis=1)
    assert np.array_equal(got["prediction"], pred)
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
    ref = lenet_forward_int(lenet_q(), x[:3])
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
    ref = lenet_forward_int(lenet_q(), x[:2])
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
    ref = lenet_forward_int(lenet_q(), x[:6])
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
    ref = lenet_forward_int(lenet_q(bits=6, per_channel=True), x[:5])
    for stage in LENET_STAGES:
        assert np.array_equal(got[stage], ref[stage]), stage
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


def _capture(net, names, images, gain=256):
    seen_in, seen_out = {n: [] for n in names}, {n: [] for n in names}
    hooks = []
    for n in names:
        mod = net.get_submodule(n)
        hooks.append(mod.register_forward_pre_hook(lambda m, a, n=n: seen_in[n].append(a[0].clone())))
        hooks.append(mod.register_forward_hook(lambda m, a, o, n=n: seen_out[n].append(o.clone())))
    with torch.no_grad():
        logits = net(torch.from_numpy(images.astype(np.float32) / gain))
    for h in hooks:
        h.remove()
    return {n: seen_in[n][0] for n in names}, {n: seen_out[n][0] for n in names}, logits.argmax(1).numpy()


def _check_binary_layer(qm, name, got, x_float, y_float):
    layer = qm.model.layer(name)
    q = qm.quant_layer(name)
    t = qm.tensor(q.weight)
    opts = qm.plan.options
    codes = pack.from_layout(t.data, t.layout if t.layout in ("oihw", "ohwi") else "oihw",
                             qm.model.tensors[q.weight].shape)  # fmt: skip
    pm1 = torch.where(x_float > 0, 1.0, -1.0).double()
    assert int((x_float == 0).sum()) == 0  # no activation exactly 0: the float model saw +-1 only
    assert np.array_equal(got[f"{name}.input"], pm1.numpy().astype(np.int8).reshape(got[f"{name}.input"].shape))
    w = torch.from_numpy(codes.astype(np.float64))
    bias = qm.model.tensors.get(layer.bias) if layer.bias else None
    alpha = np.asarray(q.params["alpha"], np.float64) if "alpha" in q.params else None
    if codes.ndim == 4:
        ph, pw = layer.attrs["padding"]
        stride = tuple(layer.attrs["stride"])
        acc = F.conv2d(pm1, w, stride=stride, padding=(ph, pw))
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
        pop = acc
        back = pack.unpack_binary(got[f"{name}.input_packed"], codes.shape[1], (pm1.shape[0], codes.shape[1]))
        assert np.array_equal(back, pm1.reshape(pm1.shape[0], -1).numpy().astype(np.int8))
        chan = (1, -1)
    assert got[f"{name}.popcount"].dtype == np.int64
    assert np.array_equal(got[f"{name}.popcount"], pop.numpy().astype(np.int64))
    assert np.array_equal(got[f"{name}.acc"], acc.numpy().astype(np.int64))
    # the float model's layer output is alpha * acc + bias (float32 rounding only)
    expect = acc.numpy() * (alpha.reshape(chan) if alpha is not None else 1.0)
    if bias is not None:
        expect = expect + np.asarray(bias, np.float64).reshape(chan)
    np.testing.assert_allclose(y_float.numpy(), expect, rtol=1e-5, atol=1e-3)


def _rgb(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # NHWC, like CIFAR arrays


@pytest.mark.slow
def test_vgg_binary_golden_popcount(tmp_path, checkpoint):
    ckpt = checkpoint("vgg_cifar10_binary")
    np.save(tmp_path / "x.npy", _rgb(2))
    out = tmp_path / "g"
    golden_cli(ckpt, "-i", tmp_path / "x.npy", "-o", out)
    got, manifest = load_npy_folder(out)
    qm = quantize(load_model(ckpt), plan_options_from(plan="seed", pack=False))
    names = ["features.3", "features.7", "features.10", "features.14", "features.17", "classifier.0"]
    assert [s["layer"] for s in manifest["stages"] if s["name"].endswith(".popcount")] == names
    net = _float_model(qm)
    images = _rgb(2).transpose(0, 3, 1, 2)
    xs, ys, pred = _capture(net, names, images)
    assert np.array_equal(got["input"], images)
    for name in names:
        _check_binary_layer(qm, name, got, xs[name], ys[name])
    assert np.array_equal(got["prediction"], pred)


@pytest.mark.slow
def test_vgg_thresholds_reproduce_the_float_models_next_binarized_input(tmp_path, checkpoint):
    """--fold-bn: BN + sign become integer thresholds; each layer's thresholded output (after the
    2x2 max-pool where the graph has one) equals the next binary layer's input, which the golden
    vectors take from the float model."""
    ckpt = checkpoint("vgg_cifar10_binary")
    np.save(tmp_path / "x.npy", _rgb(2, seed=3))
    out = tmp_path / "g"
    golden_cli(ckpt, "-i", tmp_path / "x.npy", "--fold-bn", "-o", out)
    got, _ = load_npy_folder(out)
    chain = ["features.3", "features.7", "features.10", "features.14", "features.17", "classifier.0"]
    for layer, nxt in zip(chain, chain[1:]):
        produced = got[f"{layer}.output"]
        assert produced.dtype == np.int8
        n = produced.shape[0]
        assert np.array_equal(produced.reshape(n, -1), got[f"{nxt}.input"].reshape(n, -1)), layer
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
    qm = quantize(load_model(ckpt), plan_options_from(plan="seed", word_bits=64, layout="ohwi", pack=True))
    net = _float_model(qm)
    images = _rgb(2, seed=1).transpose(0, 3, 1, 2)
    xs, ys, pred = _capture(net, names, images)
    for name in names:
        _check_binary_layer(qm, name, got, xs[name], ys[name])
    assert np.array_equal(got["prediction"], pred)


def test_binary_golden_mem_format(tmp_path, checkpoint):
    """Packed activations and popcount outputs as .mem words, read back by Icarus Verilog."""
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
    packed activations, the +-1 inputs and the popcounts back, equal to the .npy golden vectors."""
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
