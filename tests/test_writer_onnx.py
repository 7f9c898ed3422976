"""`qexport onnx`: every documented architecture, float and each scheme its plan allows, checked by
onnx.checker (full check) and run in onnxruntime against qexport's torch module carrying the same
dequantized weights (built in tests/onnx_support.py from the QuantizedModel computed in the test);
the integer initializers are compared exactly with the quantized codes.

Every output comparison goes through Sign (binarized activations) or thresholds in the binary
networks, so the torch reference runs in float64 (onnx_support.onnx_torch_run: the module in
.double(), float64 inputs, the same dequantized weights), never in float32, whose rounding near
zero flips a Sign differently depending on which float kernels the machine picks."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from conftest import ARCHS, LENET, VGG_REPO, digits_test_split, run_cli
from onnx_support import (onnx_cli_args, onnx_close, onnx_dequantized, onnx_expected_codes, onnx_initializers,
                          onnx_qmodel, onnx_reference, onnx_run, onnx_session, onnx_torch_run, onnx_write)  # fmt: skip
from qexport import __version__
from qexport.errors import UsageError
from qexport.models import INPUT_SHAPES

VGG_THREE_SMALL = {"infl_ratio": 1, "classifier": "three", "hidden": 64}
FLOAT = {"keep_float": ("*",)}
SEED = {"plan": "seed"}  # the architecture's own plan (without it, exports are as trained)

# (arch, checkpoint config or None for the conftest default, plan options)
CASES = [
    ("lenet", None, FLOAT),
    ("lenet", None, SEED),  # affine uint8 per tensor, int32 biases
    ("lenet", None, {"bits": 8, "per_channel": True}),
    ("lenet", None, {"bits": 4, "layout": "ohwi"}),
    ("lenet", None, {"bits": 12}),  # uint16 codes: opset 21
    ("vgg_cifar10_binary", None, FLOAT),
    ("vgg_cifar10_binary", None, SEED),  # binary, no alpha, BN float
    ("vgg_cifar10_binary", None, {**SEED, "fold_bn": True}),  # BN + sign as integer thresholds
    ("vgg_cifar10_binary", None, {"bits": 8}),
    ("vgg_cifar10_binary", VGG_THREE_SMALL, SEED),
    ("vgg_cifar10_binary", VGG_REPO, {**SEED, "fold_bn": True}),  # the source repo's r = 3, three classifiers
    ("twn_nin_gc", None, FLOAT),
    ("twn_nin_gc", None, SEED),  # ternary per channel
    ("twn_nin_gc", None, {"bits": 1}),  # binary with alpha
    ("twn_nin_gc", None, {"bits": 2, "per_channel": False, "pack": True, "layout": "ohwi"}),
    ("twn_nin_gc", None, {"bits": 8}),
    ("resnet18_bnn", None, FLOAT),
    ("resnet18_bnn", None, SEED),  # binary with per-channel alpha
    ("resnet18_bnn", None, {"bits": 8, "per_channel": True}),
    ("mobilenet_v1", None, FLOAT),
    ("mobilenet_v1", None, SEED),  # affine uint8 after BN folding, depthwise per channel
    ("mobilenet_v1", None, {"bits": 8, "per_channel": False, "fold_bn": False}),
    ("mobilenet_v1", None, {"bits": 4, "per_channel": True}),
]
CLI_CASES = [c for c in CASES if c[2] == SEED and c[1] is None] + [CASES[2], CASES[7]]
SIGNS = {"vgg_cifar10_binary": None, "twn_nin_gc": 1, "resnet18_bnn": 16, "lenet": 0, "mobilenet_v1": 0}


def case_id(case):
    arch, cfg, kw = case
    label = "float" if kw == FLOAT else ("-".join(f"{k}={v}" for k, v in kw.items()) or "default")
    return f"{arch}{'-r' + str(cfg['infl_ratio']) + '-three' if cfg else ''}-{label}"


def random_input(arch, n=8, seed=1):
    return np.random.default_rng(seed).standard_normal((n,) + INPUT_SHAPES[arch]).astype(np.float32)


def nodes_by_output(proto):
    return {o: n for n in proto.graph.node for o in n.output}


def check_integers(proto, qm):
    """Every quantized weight (and int32 bias, threshold, flip) is an integer initializer equal to the
    QuantizedModel's arrays, feeding DequantizeLinear (or Cast); no float copy of it remains."""
    inits = onnx_initializers(proto)
    producer = nodes_by_output(proto)
    expected_dq = 0
    for q in qm.layers:
        codes = onnx_expected_codes(qm, q)
        got = inits[f"{q.weight}_quantized"]
        if q.scheme == "affine":
            assert got.dtype == (np.uint8 if q.bits <= 8 else np.uint16)
            scale, zp = np.asarray(q.params["scale"], np.float32), np.asarray(q.params["zero_point"])
        else:
            assert q.scheme in ("binary", "ternary") and got.dtype == np.int8
            scale = np.asarray(q.params.get("alpha", np.float32(1.0)), np.float32)
            zp = np.zeros(scale.shape, np.int8)
        assert np.array_equal(got, codes) and got.shape == codes.shape
        assert np.array_equal(codes.astype(np.int64), got.astype(np.int64))
        assert np.array_equal(inits[f"{q.weight}_scale"], scale) and inits[f"{q.weight}_scale"].dtype == np.float32
        z = inits[f"{q.weight}_zero_point"]
        assert z.dtype == got.dtype and np.array_equal(z.astype(np.int64), zp.astype(np.int64))
        assert q.weight not in inits  # the float weight is not stored
        node = producer[q.weight]
        assert node.op_type == "DequantizeLinear"
        assert list(node.input) == [f"{q.weight}_quantized", f"{q.weight}_scale", f"{q.weight}_zero_point"]
        axis = {a.name: a.i for a in node.attribute}.get("axis", 1)
        if scale.ndim:
            assert axis == 0
        expected_dq += 1
        bias = qm.tensor(q.bias) if q.bias else None
        if bias is not None and bias.scheme == "int32":
            b = inits[f"{q.bias}_quantized"]
            assert b.dtype == np.int32 and np.array_equal(b, bias.data)
            bz, bs = inits[f"{q.bias}_zero_point"], inits[f"{q.bias}_scale"]
            assert bz.dtype == np.int32 and bz.shape == bs.shape and not bz.any() and bs.dtype == np.float32
            _, deq_b = onnx_dequantized(qm, q)
            assert np.array_equal(b.astype(np.float32) * inits[f"{q.bias}_scale"], deq_b)
            assert producer[q.bias].op_type == "DequantizeLinear" and q.bias not in inits
            expected_dq += 1
        if "threshold" in q.params:
            tau, flip = inits[f"{q.name}.threshold"], inits[f"{q.name}.flip"]
            assert tau.dtype == np.int32 and np.array_equal(tau.reshape(-1), q.params["threshold"])
            assert flip.dtype == np.uint8 and np.array_equal(flip.reshape(-1), q.params["flip"])
            ints = (f"{q.name}.threshold", f"{q.name}.flip")
            casts = [n for n in proto.graph.node if n.op_type == "Cast" and n.input[0] in ints]
            assert len(casts) == 2
    assert sum(n.op_type == "DequantizeLinear" for n in proto.graph.node) == expected_dq
    return inits


def check_float_tensors(inits, qm):
    """Every float initializer is a checkpoint tensor carried over bit for bit."""
    owned = set()
    for q in qm.layers:
        owned |= {f"{q.weight}_scale"} | ({f"{q.bias}_scale"} if q.bias else set())
    floats = [name for name, a in inits.items() if a.dtype == np.float32 and name not in owned]
    for name in floats:
        assert name in qm.model.tensors, name
        assert np.array_equal(inits[name], np.asarray(qm.model.tensors[name], np.float32)), name
    return floats


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_onnx_export_matches_torch(case, checkpoint, tmp_path):
    arch, cfg, plan_kw = case
    ckpt = checkpoint(arch, config=cfg)
    out = tmp_path / "model.onnx"
    if case in CLI_CASES:  # the real CLI for the default plans; the library call it makes for the rest
        r = run_cli("onnx", ckpt, "-o", out, *onnx_cli_args(plan_kw))
        assert r.returncode == 0, r.stderr
        assert r.stderr.strip().splitlines()[-1] == f"qexport: wrote {out}"
    else:
        onnx_write(ckpt, out, **plan_kw)

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    opset = {o.domain: o.version for o in proto.opset_import}[""]
    assert opset == (21 if plan_kw.get("bits", 8) > 8 else 17)
    assert proto.ir_version <= 13
    (inp,), (outp,) = proto.graph.input, proto.graph.output
    assert inp.name == "input" and outp.name == "output"
    assert inp.type.tensor_type.elem_type == TensorProto.FLOAT
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == list(INPUT_SHAPES[arch])
    assert outp.type.tensor_type.shape.dim[0].dim_param == "batch"

    qm = onnx_qmodel(ckpt, **plan_kw)
    if plan_kw == FLOAT:
        assert qm.layers == ()
    inits = check_integers(proto, qm)
    if plan_kw.get("layout") == "ohwi":  # codes are stored OHWI by the plan, transposed back to OIHW
        assert any(qm.tensor(q.weight).layout == "ohwi" for q in qm.layers)
    packed = {t.name for t in qm.tensors if t.role == "packed"}
    assert bool(packed) == bool(plan_kw.get("pack")) and not packed & set(inits)  # packed words are not ONNX
    floats = check_float_tensors(inits, qm)
    if plan_kw == FLOAT:
        assert not [n for n in proto.graph.node if n.op_type in ("DequantizeLinear", "Cast") and n.input[0] in inits]
        assert len(floats) == len(inits)
    signs = sum(n.op_type == "Sign" for n in proto.graph.node)
    expected_signs = SIGNS[arch] if SIGNS[arch] is not None else 5 + (3 if cfg and cfg["classifier"] == "three" else 1)
    assert signs == expected_signs  # binarized activations are ONNX Sign (sign(0) = 0, as torch.sign)

    x = random_input(arch)
    want = onnx_torch_run(onnx_reference(qm), x)  # float64 reference (Sign inputs near 0: see module docstring)
    got = onnx_run(out, x)
    ok, err, bound = onnx_close(got, want)
    assert ok, f"max |onnx - torch| = {err:.3g} > {bound:.3g}"
    assert np.array_equal(got.argmax(1), want.argmax(1))
    assert np.isfinite(got).all() and got.shape == (8, want.shape[1])


def test_dynamic_batch_and_no_ort_optimisations(checkpoint, tmp_path):
    """The batch axis is dynamic (1 and 5 samples), and the result does not depend on onnxruntime's
    graph optimisations (which could otherwise fold or fuse the DequantizeLinear pattern)."""
    ckpt = checkpoint("resnet18_bnn")
    out = tmp_path / "r.onnx"
    qm = onnx_write(ckpt, out, plan="seed")
    ref = onnx_reference(qm)
    for n in (1, 5):
        x = random_input("resnet18_bnn", n, seed=n)
        want = onnx_torch_run(ref, x)
        for optimize in (True, False):
            got = onnx_run(out, x, optimize=optimize)
            assert onnx_close(got, want)[0] and np.array_equal(got.argmax(1), want.argmax(1))


def test_lenet_digits_accuracy_bits8(tmp_path, capsys):
    images, labels = digits_test_split()
    x = (images.astype(np.float32) / 256.0)[:, None, :, :]  # the fixture's input: uint8 code / 256

    from qexport.models import build

    float_model = build("lenet")
    float_model.load_state_dict(torch.load(LENET, weights_only=True, map_location="cpu"))
    float_acc = float(np.mean(onnx_torch_run(float_model.eval(), x).argmax(1) == labels))

    out = tmp_path / "lenet8.onnx"
    r = run_cli("onnx", LENET, "-o", out, "--bits", "8")
    assert r.returncode == 0, r.stderr
    onnx_acc = float(np.mean(onnx_run(out, x).argmax(1) == labels))
    with capsys.disabled():
        print(f"\nLeNet digits held-out ({len(labels)} images): float PyTorch {float_acc:.4%}, "
              f"ONNX --bits 8 in onnxruntime {onnx_acc:.4%}")
    assert float_acc > 0.95  # the fixture is a real trained model
    assert abs(onnx_acc - float_acc) <= 0.01


def test_byte_identical_across_runs(checkpoint, tmp_path):
    ckpt = checkpoint("vgg_cifar10_binary")
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    for path in (a, b):  # two processes
        r = run_cli("onnx", ckpt, "-o", path, "--plan", "seed", "--fold-bn")
        assert r.returncode == 0, r.stderr
    data = a.read_bytes()
    assert data == b.read_bytes()
    assert str(tmp_path).encode() not in data and str(ckpt.parent).encode() not in data
    # in one process, one export after another: the exporter's global state does not leak between runs
    for arch, kw in (("twn_nin_gc", SEED), ("lenet", {"bits": 12})):
        c, d = tmp_path / f"{arch}_c.onnx", tmp_path / f"{arch}_d.onnx"
        onnx_write(checkpoint(arch), c, **kw)
        onnx_write(checkpoint(arch), d, **kw)
        assert c.read_bytes() == d.read_bytes()


def test_metadata(checkpoint, tmp_path):
    ckpt = checkpoint("mobilenet_v1")
    out = tmp_path / "m.onnx"
    r = run_cli("onnx", ckpt, "-o", out, "--bits", "8", "--per-channel")
    assert r.returncode == 0, r.stderr
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert proto.producer_name == "qexport" and proto.producer_version == __version__
    assert meta["qexport.source"] == ckpt.name
    assert meta["qexport.source_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["qexport.arch"] == "mobilenet_v1" and meta["qexport.version"] == __version__
    assert "--bits 8" in meta["qexport.options"] and "--per-channel" in meta["qexport.options"]
    assert meta["qexport.generator"] == f"qexport {__version__}"
    import json

    plan = json.loads(meta["qexport.plan"])
    assert [p["layer"] for p in plan] == [q.name for q in onnx_qmodel(ckpt, bits=8, per_channel=True).layers]
    assert all(p["scheme"] == "affine" and p["bits"] == 8 and p["per_channel"] for p in plan)
    assert "Sign(0) = 0" in meta["qexport.sign"]
    assert str(tmp_path) not in proto.doc_string and "/" not in proto.doc_string
    assert not [n.doc_string for n in proto.graph.node if n.doc_string and not n.doc_string.startswith("qexport:")]


def test_opset_option(checkpoint, tmp_path):
    ckpt = checkpoint("mobilenet_v1")
    out = tmp_path / "m13.onnx"
    r = run_cli("onnx", ckpt, "-o", out, "--plan", "seed", "--opset", "13")  # per-axis DequantizeLinear exists from 13
    assert r.returncode == 0, r.stderr
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 13
    qm = onnx_qmodel(ckpt, plan="seed")
    check_integers(proto, qm)
    x = random_input("mobilenet_v1", 4)
    want, got = onnx_torch_run(onnx_reference(qm), x), onnx_run(out, x)
    assert onnx_close(got, want)[0] and np.array_equal(got.argmax(1), want.argmax(1))
    assert "--opset 13" in {p.key: p.value for p in proto.metadata_props}["qexport.options"]

    r = run_cli("onnx", LENET, "-o", tmp_path / "x.onnx", "--bits", "12", "--opset", "17")
    assert r.returncode == 2 and not (tmp_path / "x.onnx").exists()
    line = r.stderr.strip().splitlines()[-1]
    assert "--opset 17" in line and "uint16" in line and "21" in line
    r = run_cli("onnx", LENET, "-o", tmp_path / "x.onnx", "--opset", "12")
    assert r.returncode == 2


def test_generic_reader_refused(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.proj.weight": torch.randn(8, 4), "encoder.proj.bias": torch.randn(8)}, path)
    out = tmp_path / "mystery.onnx"
    r = run_cli("onnx", path, "-o", out)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "mystery.pth" in lines[0] and "npy" in lines[0] and "h5" in lines[0] and "generic" in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["mystery.pth"]


def test_integer_code_checkpoint_refused(tmp_path):
    state = torch.load(LENET, weights_only=True, map_location="cpu")
    codes = {k: (v.clamp(-1, 1) * 127 + 128).round().to(torch.int32) if k.endswith("weight") else v
             for k, v in state.items()}  # fmt: skip
    path = tmp_path / "quant_model.pth"
    torch.save(codes, path)
    r = run_cli("onnx", path, "-o", tmp_path / "q.onnx")
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "quant_model.pth" in line and "integer codes" in line and "Traceback" not in r.stderr
    assert not (tmp_path / "q.onnx").exists()


def test_unwritable_output_leaves_nothing(tmp_path):
    r = run_cli("onnx", LENET, "-o", tmp_path / "missing" / "x.onnx")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "missing" in r.stderr
    good = tmp_path / "good.onnx"
    onnx_write(LENET, good)
    before = good.read_bytes()
    with pytest.raises(UsageError):  # fails in the writer: the good file survives, no temporary is left
        onnx_write(LENET, good, opset=13, bits=12)
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.onnx"]


def test_default_model_and_output_name(tmp_path):
    (tmp_path / "digits.pth").write_bytes(LENET.read_bytes())
    r = run_cli("onnx", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "digits.pth" in r.stderr and (tmp_path / "digits.onnx").is_file()
    session = onnx_session(tmp_path / "digits.onnx")
    assert [i.name for i in session.get_inputs()] == ["input"] and session.get_inputs()[0].shape[1:] == [1, 28, 28]


def test_arch_list_covers_conftest():
    assert {c[0] for c in CASES} == set(ARCHS)
