"""`qexport mem`: FPGA memory files read back by Icarus Verilog ($readmemh) and by strict COE/MIF
parsers, compared word for word with words computed independently (Python integers) from the
QuantizedModel arrays of the same checkpoint and options."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import LENET, run_cli
from mem_formats import (FormatError, element_values, expected_words, iverilog_dump, parse_coe, parse_mem,
                         parse_mif, sign_extend)  # fmt: skip
from qexport.export import load_model, plan_options_from, quantize
from qexport.encode import pack
from qexport.encode.records import iter_arrays, param_items
from qexport.encode.arrange import arrange
from qexport.encode.options import encode_options_from
from tools import require_tool

PLAN_KEYS = ("bits", "plan", "per_channel", "word_bits", "layout", "ternary_pack", "pack", "fold_bn", "alpha")


def seed(kw: dict) -> dict:
    """These tests check the architectures' seed plans: --plan seed unless --bits is given."""
    return kw if kw.get("bits") is not None else {"plan": "seed", **kw}


def qmodel_for(path, **kw):
    plan = {k: v for k, v in seed(kw).items() if k in PLAN_KEYS}
    plan.setdefault("pack", True)  # the mem writer packs by default
    return arrange(quantize(load_model(path), plan_options_from(**plan)), encode_options_from(**plan))


def cli_args(kw: dict) -> list[str]:
    args = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            args.append(flag)
        elif v is False:
            args.append("--no-" + k.replace("_", "-"))
        else:
            args += [flag, str(v)]
    return args


def export(tmp_path: Path, ckpt, fmt="mem", name=None, **kw) -> tuple[Path, dict]:
    out = tmp_path / (name or f"out_{fmt}")
    r = run_cli("mem", ckpt, "-o", out, "--format", fmt, *cli_args(seed(kw)))
    assert r.returncode == 0, r.stderr
    return out, json.loads((out / "manifest.json").read_text())


def spec(qmodel, name: str, kind: str, mem_width: int | None):
    """The documented encoding of one array: (value kind, element bits, words per element pack, width)."""
    if kind == "tensor":
        t = qmodel.tensor(name)
        a = t.data
        if t.role == "packed":
            bits = a.dtype.itemsize * 8
            return f"int:{bits}", bits, 1, bits
        if a.dtype.kind == "f":
            e, vk = (64, "float64") if a.dtype.itemsize == 8 else (32, "float32")
        elif t.role == "weight" and t.scheme == "binary":
            e, vk = 1, "pm1"
        elif t.role == "weight" and t.scheme == "ternary":
            e, vk = 2, "int:2"
        elif t.role == "weight" and t.scheme == "affine":
            e = qmodel.quant_layer(t.layer).bits
            vk = f"int:{e}"
        else:
            e = a.dtype.itemsize * 8
            vk = f"int:{e}"
    else:
        a = np.asarray(dict(iter_arrays_params(qmodel))[name])
        if name.endswith(".flip"):
            e, vk = 1, "int:1"
        elif a.dtype.kind == "f":
            e, vk = (64, "float64") if a.dtype.itemsize == 8 else (32, "float32")
        else:
            e = a.dtype.itemsize * 8
            vk = f"int:{e}"
    if mem_width is None or mem_width <= e:
        return vk, e, 1, e
    return vk, e, mem_width // e, mem_width


def iter_arrays_params(qmodel):
    for q in qmodel.layers:
        for key, value in param_items(q):
            if value.ndim:
                yield f"{q.name}.{key}", value


def expected_all(qmodel, manifest: dict, mem_width=None) -> dict[str, tuple[int, int, list[int]]]:
    """file -> (width, depth, words) computed from the QuantizedModel; checks the manifest's geometry."""
    arrays = list(iter_arrays(qmodel))
    entries = {(e["kind"], e["name"]): e for e in manifest["files"]}
    assert len(entries) == len(arrays) == len(manifest["files"])
    out = {}
    for name, a, kind in arrays:
        e = entries[(kind, name)]
        vk, ebits, per, width = spec(qmodel, name, kind, mem_width)
        values = element_values(np.asarray(a), vk)
        if per == 1 and vk.startswith("int:") and np.asarray(a).dtype.kind == "i" and width > ebits:
            values = sign_extend(values, ebits, width)
        words = expected_words(values, ebits, per)
        assert (e["width"], e["depth"], e["element_bits"], e["elements_per_word"]) == (width, len(words), ebits, per), e
        assert e["shape"] == list(np.asarray(a).shape) and e["dtype"] == str(np.asarray(a).dtype)
        out[e["file"]] = (width, len(words), words)
    return out


def run_iverilog(folder: Path, expected: dict, tmp_path: Path, only=None) -> int:
    require_tool("iverilog")
    require_tool("vvp")
    files = sorted(f for f in expected if only is None or only(f))
    dumped = iverilog_dump([(folder / f, expected[f][0], expected[f][1]) for f in files], tmp_path)
    for f, words in zip(files, dumped):
        assert words == expected[f][2], f
    return len(files)


# ------------------------------------------------------------------------------------------------
# Icarus Verilog reads every .mem file


def test_iverilog_lenet_uint8_codes_and_int32_bias(tmp_path):
    out, manifest = export(tmp_path, LENET)
    qm = qmodel_for(LENET)
    expected = expected_all(qm, manifest)
    assert run_iverilog(out, expected, tmp_path) == 10
    by_name = {e["name"]: e for e in manifest["files"]}
    assert by_name["c1.weight"]["width"] == 8 and by_name["c1.bias"]["width"] == 32
    assert by_name["c1.bias"]["signed"] is True
    # manifest quantization parameters are the QuantizedModel's
    c1 = qm.quant_layer("c1")
    assert by_name["c1.weight"]["quant"]["zero_point"]["value"] == int(c1.params["zero_point"])
    assert by_name["c1.weight"]["quant"]["multiplier"]["value"] == int(c1.params["multiplier"])
    assert by_name["c1.weight"]["quant"]["shift"]["value"] == int(c1.params["shift"])


def test_iverilog_lenet_per_channel_4bit_packed_into_32bit_words(tmp_path):
    kw = {"bits": 4, "per_channel": True}
    out, manifest = export(tmp_path, LENET, mem_width=32, **kw)
    qm = qmodel_for(LENET, **kw)
    expected = expected_all(qm, manifest, mem_width=32)
    by_name = {e["name"]: e for e in manifest["files"]}
    assert by_name["c1.weight"]["elements_per_word"] == 8 and by_name["c1.weight"]["depth"] == -(-150 // 8)
    assert by_name["c1.zero_point"]["width"] == 32 and by_name["c1.scale_error"]["width"] == 64
    assert run_iverilog(out, expected, tmp_path) == len(manifest["files"])
    # unpack the 4-bit codes from the printed words and compare to the codes
    words = expected[by_name["c1.weight"]["file"]][2]
    codes = [(w >> (4 * j)) & 15 for w in words for j in range(8)][:150]
    assert codes == qm.tensor("c1.weight").data.reshape(-1).tolist()


@pytest.mark.slow
def test_iverilog_vgg_binary_packed(tmp_path, checkpoint):
    ckpt = checkpoint("vgg_cifar10_binary")
    out, manifest = export(tmp_path, ckpt)
    qm = qmodel_for(ckpt)
    expected = expected_all(qm, manifest)
    # every file but the unpacked 1-bit codes (4.6 M one-bit words, the same bits as the packed files)
    n = run_iverilog(out, expected, tmp_path, only=lambda f: expected[f][1] <= 200_000)
    assert n == len(manifest["files"]) - sum(1 for e in manifest["files"] if e["depth"] > 200_000)
    # the packed words printed by the simulator unpack to the +-1 codes
    by_name = {e["name"]: e for e in manifest["files"]}
    e = by_name["features.3.weight.packed"]
    assert (e["width"], e["depth"]) == (32, 128 * 36) and e["attrs"]["n"] == 1152
    dumped = iverilog_dump([(out / e["file"], e["width"], e["depth"])], tmp_path)[0]
    words = np.array(dumped, dtype=np.uint32).reshape(128, 36)
    codes = pack.unpack_binary(words, 1152, (128, 128, 3, 3))
    assert np.array_equal(codes, qm.tensor("features.3.weight").data)
    # one unpacked 1-bit code file through the simulator too
    e = by_name["features.0.weight"]
    dumped = iverilog_dump([(out / e["file"], 1, e["depth"])], tmp_path)[0]
    assert np.array_equal(np.array(dumped) * 2 - 1, qm.tensor("features.0.weight").data.reshape(-1))


@pytest.mark.parametrize("mode", ["planes", "codes"])
def test_iverilog_twn_ternary(tmp_path, checkpoint, mode):
    ckpt = checkpoint("twn_nin_gc")
    out, manifest = export(tmp_path, ckpt, ternary_pack=mode)
    qm = qmodel_for(ckpt, ternary_pack=mode)
    expected = expected_all(qm, manifest)
    assert run_iverilog(out, expected, tmp_path) == len(manifest["files"])
    by_name = {e["name"]: e for e in manifest["files"]}
    w = "tnn_bin.5.tnn_bin_conv.weight"
    codes = qm.tensor(w).data
    n = int(np.prod(codes.shape[1:]))
    if mode == "planes":
        nz = np.array(expected[by_name[w + ".nonzero"]["file"]][2], np.uint32).reshape(codes.shape[0], -1)
        pos = np.array(expected[by_name[w + ".positive"]["file"]][2], np.uint32).reshape(codes.shape[0], -1)
        back = pack.unpack_ternary({"nonzero": nz, "positive": pos}, n, codes.shape, mode="planes")
    else:
        c = np.array(expected[by_name[w + ".codes"]["file"]][2], np.uint32).reshape(codes.shape[0], -1)
        back = pack.unpack_ternary({"codes": c}, n, codes.shape, mode="codes")
    assert np.array_equal(back, codes)
    # the unpacked 2-bit two's complement codes: 3 = -1
    e = by_name[w]
    assert e["width"] == 2 and e["signed"] is True
    vals = np.array(expected[e["file"]][2])
    assert np.array_equal(np.where(vals == 3, -1, vals), codes.reshape(-1))
    # per-channel alpha/multiplier/shift files exist and hold the layer's parameters
    layer = qm.quant_layer("tnn_bin.5.tnn_bin_conv")
    shift_words = expected[by_name["tnn_bin.5.tnn_bin_conv.shift"]["file"]][2]
    assert shift_words == layer.params["shift"].tolist()


# ------------------------------------------------------------------------------------------------
# COE and MIF: strict parsers, same words as .mem


def _read_all(folder: Path, manifest: dict, fmt: str) -> dict[str, tuple[int, int, list[int]]]:
    out = {}
    for e in manifest["files"]:
        text = (folder / e["file"]).read_text(encoding="ascii")
        stem = e["file"].rsplit(".", 1)[0]
        if fmt == "mem":
            words = parse_mem(text, e["width"])
            out[stem] = (e["width"], len(words), words)
        elif fmt == "coe":
            words = parse_coe(text, e["width"])
            out[stem] = (e["width"], len(words), words)
        else:
            width, depth, words = parse_mif(text)
            out[stem] = (width, depth, words)
    return out


@pytest.mark.parametrize("arch, kw", [
    ("lenet", {}),
    ("lenet", {"bits": 6, "per_channel": True, "mem_width": 16}),
    ("twn_nin_gc", {"ternary_pack": "codes", "word_bits": 16}),
    ("twn_nin_gc", {"ternary_pack": "base3"}),
])  # fmt: skip
def test_coe_and_mif_hold_the_mem_words(tmp_path, checkpoint, arch, kw):
    ckpt = LENET if arch == "lenet" else checkpoint(arch)
    results = {}
    for fmt in ("mem", "coe", "mif"):
        out, manifest = export(tmp_path, ckpt, fmt, **kw)
        results[fmt] = _read_all(out, manifest, fmt)
        assert manifest["memory_format"] == fmt
    qm = qmodel_for(ckpt, **kw)
    expected = expected_all(qm, manifest, kw.get("mem_width"))
    expected = {f.rsplit(".", 1)[0]: v for f, v in expected.items()}
    assert results["mem"] == expected
    assert results["coe"] == results["mem"]
    assert results["mif"] == results["mem"]


@pytest.mark.slow
def test_resnet_binary_alpha_mif_64bit_words(tmp_path, checkpoint):
    ckpt = checkpoint("resnet18_bnn")
    kw = {"word_bits": 64, "layout": "ohwi"}
    out, manifest = export(tmp_path, ckpt, "mif", **kw)
    qm = qmodel_for(ckpt, **kw)
    expected = expected_all(qm, manifest)
    checked = 0
    for e in manifest["files"]:  # the packed words and the per-channel alpha/multiplier/shift files
        if e.get("packed") or e["kind"] == "param":
            width, depth, words = parse_mif((out / e["file"]).read_text())
            assert (width, depth, words) == expected[e["file"]], e["file"]
            checked += 1
    assert checked == 16 + 16 * 4  # 16 binary convs: packed words; alpha, multiplier, shift, scale_error
    e = {x["name"]: x for x in manifest["files"]}["layer3.1.conv.weight.packed"]
    assert e["width"] == 64 and e["attrs"]["layout"] == "ohwi"
    _, _, words = parse_mif((out / e["file"]).read_text())
    codes = pack.unpack_binary(np.array(words, np.uint64).reshape(256, -1), 256 * 9, (256, 256, 3, 3), "ohwi")
    assert np.array_equal(pack.to_layout(codes, "ohwi"), qm.tensor("layer3.1.conv.weight").data)


@pytest.mark.slow
def test_mobilenet_affine_coe(tmp_path, checkpoint):
    ckpt = checkpoint("mobilenet_v1")
    out, manifest = export(tmp_path, ckpt, "coe")
    qm = qmodel_for(ckpt)
    expected = expected_all(qm, manifest)
    got = _read_all(out, manifest, "coe")
    assert got == {f.rsplit(".", 1)[0]: v for f, v in expected.items()}
    dw = [e for e in manifest["files"] if e["kind"] == "param" and e["param"] == "zero_point"]
    assert dw, "depthwise convs are per-channel: zero points get their own files"


def test_float_export_is_ieee754_words(tmp_path):
    out, manifest = export(tmp_path, LENET, "mem", keep_float="*")
    qm = arrange(quantize(load_model(LENET), plan_options_from(plan="seed", keep_float=("*",))),
                 encode_options_from(pack=True))
    expected = expected_all(qm, manifest)
    got = _read_all(out, manifest, "mem")
    assert got == {f.rsplit(".", 1)[0]: v for f, v in expected.items()}
    e = {x["name"]: x for x in manifest["files"]}["c1.weight"]
    assert e["width"] == 32 and "ieee754-float32" in e["encoding"]
    words = np.array(got["c1_weight"][2], np.uint32).view(np.float32)
    assert np.array_equal(words, load_model(LENET).tensors["c1.weight"].reshape(-1))


# ------------------------------------------------------------------------------------------------
# Strictness of the parsers themselves (so that passing them means something)


@pytest.mark.parametrize("text", [
    "memory_initialization_radix=16;\nmemory_initialization_vector=\n01,\n02,\n",  # no final ';'
    "memory_initialization_radix=3;\nmemory_initialization_vector=\n01;\n",  # bad radix
    "memory_initialization_vector=\n01;\nmemory_initialization_radix=16;\n",  # order
    "memory_initialization_radix=16;\nmemory_initialization_vector=\n01,,02;\n",  # empty value
    "memory_initialization_radix=16;\nmemory_initialization_vector=\n1ff;\n",  # too wide for 8 bits
    "memory_initialization_radix=16;\nmemory_initialization_vector=\n0g;\n",  # not hex
])  # fmt: skip
def test_coe_parser_rejects(text):
    with pytest.raises(FormatError):
        parse_coe(text, 8)


@pytest.mark.parametrize("text", [
    "WIDTH=8;\nDEPTH=2;\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\nCONTENT BEGIN\n0 : 01;\nEND;\n",  # address 1 missing
    "WIDTH=8;\nDEPTH=2;\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\nCONTENT BEGIN\n0 : 01;\n0 : 02;\n1 : 0;\nEND;\n",
    "WIDTH=8;\nDEPTH=1;\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\nCONTENT BEGIN\n0 : 100;\nEND;\n",  # too wide
    "WIDTH=8;\nDEPTH=1;\nADDRESS_RADIX=HEX;\nCONTENT BEGIN\n0 : 1;\nEND;\n",  # DATA_RADIX missing
    "WIDTH=8;\nDEPTH=1;\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\nCONTENT BEGIN\n0 : 1\nEND;\n",  # no ';'
    "WIDTH=8;\nDEPTH=1;\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\nCONTENT BEGIN\n0 : 1;\n",  # no END
])  # fmt: skip
def test_mif_parser_rejects(text):
    with pytest.raises(FormatError):
        parse_mif(text)


def test_mif_parser_accepts_the_documented_forms():
    text = ("-- c\n% block\ncomment %\nDEPTH = 5;\nWIDTH = 4;\nADDRESS_RADIX = DEC;\nDATA_RADIX = BIN;\n"
            "CONTENT BEGIN\n  [0..1] : 1010;\n  2 : 1 11 0;\nEND;\n")  # fmt: skip
    assert parse_mif(text) == (4, 5, [10, 10, 1, 3, 0])


# ------------------------------------------------------------------------------------------------
# Determinism, atomicity, errors


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("fmt", ["mem", "coe", "mif"])
def test_deterministic(tmp_path, checkpoint, fmt):
    ckpt = checkpoint("twn_nin_gc")
    a, _ = export(tmp_path, ckpt, fmt, name="a")
    b, _ = export(tmp_path, ckpt, fmt, name="b")
    assert _tree(a) == _tree(b)
    text = b"".join(_tree(a).values())
    assert str(tmp_path).encode() not in text and str(ckpt.parent).encode() not in text


def test_failure_leaves_previous_output_intact(tmp_path, monkeypatch):
    from qexport.writers import mem

    qm = qmodel_for(LENET)
    out = tmp_path / "o"
    mem.write(qm, out)
    before = _tree(out)
    calls = []

    def boom(fh, *args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk fell off")
        return real(fh, *args)

    real = mem.write_memory
    monkeypatch.setattr(mem, "write_memory", boom)
    with pytest.raises(RuntimeError):
        mem.write(qm, out, format="coe")
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_names_are_sanitised(tmp_path):
    """A tensor name that could escape a path or a comment becomes a plain file name and comment."""
    import torch

    from qexport.writers import mem

    bad = {"a/../../evil\n// x*/.weight": torch.randn(4, 3), "b.weight": torch.randn(2, 2)}
    ckpt = tmp_path / "odd.pth"
    torch.save(bad, ckpt)
    qm = arrange(quantize(load_model(ckpt), plan_options_from(bits=8)), encode_options_from(pack=True))
    out = mem.write(qm, tmp_path / "o", format="mif")
    names = sorted(p.name for p in out.iterdir())
    assert all("/" not in n and not n.startswith(".") for n in names)
    manifest = json.loads((out / "manifest.json").read_text())
    for e in manifest["files"]:
        assert (out / e["file"]).is_file()
        parse_mif((out / e["file"]).read_text())  # the comment could not break the file


def test_cli_errors(tmp_path):
    r = run_cli("mem", LENET, "-o", tmp_path / "x", "--format", "hex")
    assert r.returncode == 2
    r = run_cli("mem", LENET, "-o", tmp_path / "x", "--mem-width", "65")
    assert r.returncode == 2
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = run_cli("mem", LENET, "-o", blocker)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "file" in r.stderr
    missing = tmp_path / "nope" / "out"
    r = run_cli("mem", LENET, "-o", missing)
    assert r.returncode == 1 and "nope" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("mem", tmp_path / "missing.pth", "-o", tmp_path / "y")
    assert r.returncode == 1 and "missing.pth" in r.stderr
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_default_output_name_and_pack(tmp_path):
    import shutil

    shutil.copy(LENET, tmp_path / "net.pth")
    r = run_cli("mem", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "net_mem" / "manifest.json").is_file()
    assert os.path.isfile(tmp_path / "net_mem" / "c1_weight.mem")
