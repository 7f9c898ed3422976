"""`qexport cheader` (issue 5): headers compile with gcc/g++/arm-none-eabi-gcc without a warning,
a compiled C program prints every array and macro back equal to the quantized model, the C
integer LeNet equals the Python reference bit for bit, XNOR/popcount on the packed words equals
the +-1 dot product, hostile names cannot break out, output is deterministic.

Expected values always come from load_model + quantize run here, never from the header."""

from __future__ import annotations

import io
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cheader_support import (ARM, C_DIR, EXPECTED_CTYPE, GCC, GXX, compile_c, declared_arrays, dump_header,
                             ident, keep_all_source, run_lenet_c, same_values, section_sizes, use_none_source)  # fmt: skip
from conftest import LENET, digits_test_split, run_cli
from qexport.export import export as _export, load_model, plan_options_from, quantize
from qexport.model import (ExportTensor, Model, PlanOptions, QuantizedModel, QuantLayer, QuantPlan, Source,
                           frozen_map)  # fmt: skip
from qexport.quantize.reference import LENET_STAGES, lenet_forward_int
from qexport.writers.cheader import WRITER
from qexport.encode.records import param_items
from qexport.encode.arrange import arrange
from qexport.encode.options import encode_options_from

DEFAULT_PREFIX = {"lenet": "lenet", "vgg_cifar10_binary": "vgg_cifar10_binary", "twn_nin_gc": "twn_nin_gc",
                  "resnet18_bnn": "resnet18_bnn", "mobilenet_v1": "mobilenet_v1", "generic": "generic"}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# helpers


def seed(plan_kw: dict) -> dict:
    """These tests check the architectures' seed plans: --plan seed unless --bits is given."""
    if plan_kw.get("bits") is None:
        plan_kw.setdefault("plan", "seed")
    return plan_kw


def export(writer, model_path, output, **kw):
    return _export(writer, model_path, output, **seed(kw))


def independent_qmodel(model_path, **plan_kw) -> QuantizedModel:
    plan_kw.setdefault("pack", True)  # the cheader default
    seed(plan_kw)
    return arrange(quantize(load_model(model_path, plan_kw.get("arch")), plan_options_from(**plan_kw)),
                   encode_options_from(**plan_kw))


def expected_arrays(q: QuantizedModel, prefix: str) -> dict[str, np.ndarray]:
    """identifier -> array: every non-empty tensor, then every per-channel layer parameter."""
    out = {f"{prefix}_{ident(t.name)}": t.data for t in q.tensors if t.data.size}
    for layer in q.layers:
        for key, value in param_items(layer):
            if value.ndim:
                out[f"{prefix}_{ident(layer.name)}_{key}"] = value
    return out


def check_arrays(arrays: dict, expected: dict[str, np.ndarray]) -> None:
    assert set(arrays) == set(expected)
    for name, want in expected.items():
        got = arrays[name]
        want_dtype = np.uint8 if want.dtype == np.bool_ else want.dtype
        assert got.dtype == want_dtype, (name, got.dtype, want.dtype)
        assert same_values(got, want), name


def check_macros(macros: dict, q: QuantizedModel, prefix: str) -> None:
    P = prefix.upper()
    for t in q.tensors:
        base = f"{P}_{ident(t.name).upper()}"
        assert int(macros[f"{base}_NDIM"]) == t.data.ndim
        for k, dim in enumerate(t.data.shape):
            assert int(macros[f"{base}_DIM{k}"]) == dim
        assert int(macros[f"{base}_COUNT"]) == t.data.size
        assert int(macros[f"{base}_BYTES"]) == t.data.nbytes
        assert macros[f"{base}_LAYOUT"] == t.layout
        if t.role == "packed":
            assert int(macros[f"{base}_N"]) == t.attrs["n"]
            assert int(macros[f"{base}_WORD_BITS"]) == t.attrs["word_bits"]
            assert int(macros[f"{base}_WORDS_PER_ROW"]) == t.data.shape[1]
            assert macros[f"{base}_ELEMENT_LAYOUT"] == t.attrs["layout"]
            if t.scheme == "binary":
                assert int(macros[f"{base}_LSB_FIRST"]) == 1
    for layer in q.layers:
        base = f"{P}_{ident(layer.name).upper()}"
        assert macros[f"{base}_SCHEME"] == layer.scheme
        assert int(macros[f"{base}_BITS"]) == layer.bits
        assert int(macros[f"{base}_PER_CHANNEL"]) == int(layer.per_channel)
        for key, value in param_items(layer):
            name = f"{base}_{key.upper()}"
            if value.ndim:
                assert name not in macros
                assert int(macros[f"{name}_COUNT"]) == value.shape[0]
                continue
            text = macros[name]
            if value.dtype.kind == "f":
                got = np.asarray(float(text), dtype=np.float64).astype(value.dtype)
                assert same_values(got.reshape(1), value.reshape(1)), name
            else:
                assert int(text) == int(value), name


def compile_gxx(header: Path) -> None:
    """g++ -std=c++11 -Wall -Wextra -Werror on a unit that includes the header and uses nothing."""
    use = header.parent / f"use_{header.stem}.c"
    use.write_text(use_none_source(header.name))
    compile_c([*GXX, "-x", "c++", "-c", "-o", f"use_{header.stem}.o", use.name], header.parent, "g++")


def compile_arm(header: Path, text: str, arrays_expected: dict[str, np.ndarray], align: int = 4,
                section: str | None = None, c_source: Path | None = None) -> None:  # fmt: skip
    """arm-none-eabi-gcc -mcpu=cortex-m4 -Os on a unit keeping every array: its read-only data (or
    the chosen section) is exactly the arrays' bytes plus at most their alignment padding."""
    folder = header.parent
    keep = folder / f"keep_{header.stem}.c"
    keep.write_text(keep_all_source(header.name, text))
    sizes: dict[str, int] = {}
    for src in [keep.name] + ([c_source.name] if c_source else []):
        obj = folder / (Path(src).stem + ".arm.o")
        compile_c([*ARM, "-c", "-o", obj.name, src], folder, "arm-none-eabi-gcc")
        for name, size in section_sizes(obj).items():
            sizes[name] = sizes.get(name, 0) + size
    data = sum(a.nbytes for a in arrays_expected.values())
    slack = sum(max(align, a.dtype.itemsize) - 1 for a in arrays_expected.values())
    where = section or ".rodata"
    assert data <= sizes.get(where, 0) <= data + slack, (where, sizes, data)
    if section:
        assert sizes.get(".rodata", 0) == 0


def compile_everywhere(header: Path, text: str, arrays_expected: dict[str, np.ndarray], **arm_kw) -> None:
    compile_gxx(header)
    compile_arm(header, text, arrays_expected, **arm_kw)


def check_dump(header: Path, q: QuantizedModel, prefix: str, c_source: Path | None = None) -> tuple[dict, str]:
    """gcc -std=c99 -pedantic: the dump program prints every array and macro; all equal q's."""
    arrays, macros, text = dump_header(header, (c_source,) if c_source else ())
    expected = expected_arrays(q, prefix)
    check_arrays(arrays, expected)
    check_macros(macros, q, prefix)
    for ctype, name, _ in declared_arrays(text):
        dtype = expected[name].dtype
        assert ctype == EXPECTED_CTYPE["uint8" if dtype == np.bool_ else str(dtype)], name
    return expected, text


def full_check(header: Path, q: QuantizedModel, prefix: str, **compile_kw) -> None:
    expected, text = check_dump(header, q, prefix, compile_kw.get("c_source"))
    compile_everywhere(header, text, expected, **compile_kw)


# ---------------------------------------------------------------------------------------------
# the README's main path, through the real CLI, and the C integer LeNet


def test_readme_command_and_c_lenet_match_python_bit_for_bit(tmp_path):
    header = tmp_path / "lenet_digits.h"
    r = run_cli("cheader", "--bits", "8", LENET, "-o", header)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stderr
    q = independent_qmodel(LENET, bits=8)
    full_check(header, q, "lenet")
    # a C file that includes the header and uses none of it compiles without a warning in C too
    (tmp_path / "none.c").write_text(use_none_source(header.name))
    compile_c([*GCC, "-c", "-o", "none.o", "none.c"], tmp_path)

    images, labels = digits_test_split()
    got, preds = run_lenet_c(header, images)
    ref = lenet_forward_int(q.quantized, images)
    assert len(preds) == len(images) == 359
    for stage in LENET_STAGES:
        assert np.array_equal(got[stage], ref[stage].reshape(len(images), -1)), stage
    assert np.array_equal(preds, ref["output"].argmax(axis=1))
    accuracy = float(np.mean(preds == labels))
    print(f"\nC integer LeNet (qexport cheader --bits 8) on the digits test split: "
          f"{int(np.sum(preds == labels))}/{len(labels)} = {accuracy:.2%}")  # fmt: skip
    assert accuracy > 0.9


def test_c_lenet_per_channel_ohwi_variant(tmp_path):
    header = tmp_path / "lenet_pc.h"
    plan = dict(bits=8, per_channel=True, layout="ohwi", mult_bits=20)
    export("cheader", LENET, header, **plan)
    q = independent_qmodel(LENET, **plan)
    assert all(layer.per_channel for layer in q.layers)
    full_check(header, q, "lenet")
    images, _ = digits_test_split()
    images = images[:60]
    got, _ = run_lenet_c(header, images)
    ref = lenet_forward_int(q.quantized, images)
    for stage in LENET_STAGES:
        assert np.array_equal(got[stage], ref[stage].reshape(len(images), -1)), stage


# ---------------------------------------------------------------------------------------------
# every documented architecture


ARCH_LIST = ["lenet", "vgg_cifar10_binary", "twn_nin_gc", "resnet18_bnn", "mobilenet_v1"]


@pytest.fixture(scope="module")
def default_headers(checkpoint, tmp_path_factory):
    """arch -> (header of the default plan, independently quantized model); made once per worker."""
    made: dict = {}

    def get(arch: str):
        if arch not in made:
            path = checkpoint(arch)
            header = tmp_path_factory.mktemp(arch) / f"{arch}.h"
            export("cheader", path, header)
            made[arch] = (header, independent_qmodel(path))
        return made[arch]

    return get


# one test per compiler, so the big headers (ResNet: ~55 MB) spread over the xdist workers
@pytest.mark.parametrize("tool", ["gcc-c99-dump", "g++-c++11", "arm-cortex-m4"])
@pytest.mark.parametrize("arch", ARCH_LIST)
def test_default_plan_header_of_every_arch(arch, tool, default_headers):
    header, q = default_headers(arch)
    assert q.layers, "the default plan quantizes something"
    prefix = DEFAULT_PREFIX[arch]
    if tool == "gcc-c99-dump":
        check_dump(header, q, prefix)
    elif tool == "g++-c++11":
        compile_gxx(header)
    else:
        compile_arm(header, header.read_text(), expected_arrays(q, prefix))


@pytest.mark.parametrize("arch", ["lenet", "twn_nin_gc"])
def test_float_header_small_archs(arch, checkpoint, tmp_path):
    path = checkpoint(arch)
    header = tmp_path / f"{arch}_float.h"
    export("cheader", path, header, keep_float=("*",))
    q = independent_qmodel(path, keep_float=("*",))
    assert not q.layers and {t.data.dtype for t in q.tensors} <= {np.dtype(np.float32), np.dtype(np.int64)}
    full_check(header, q, DEFAULT_PREFIX[arch])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vgg_cifar10_binary", "mobilenet_v1"])
def test_float_header_big_archs_compile_for_cortex_m4(arch, checkpoint, tmp_path):
    """Big float headers (~100 MB of text): one compile, arm-none-eabi-gcc -Os, whose read-only
    data must be exactly the float arrays (values are checked on the small archs).  ResNet's all-
    float header (~230 MB, 11 M floats) is left out: several minutes of compiling on 2 cores."""
    path = checkpoint(arch)
    header = tmp_path / f"{arch}_float.h"
    export("cheader", path, header, keep_float=("*",))
    q = independent_qmodel(path, keep_float=("*",))
    expected = expected_arrays(q, DEFAULT_PREFIX[arch])
    text = header.read_text()
    assert [name for _, name, _ in declared_arrays(text)] == list(expected)
    keep = tmp_path / "keep.c"
    keep.write_text(keep_all_source(header.name, text))
    compile_c([*ARM, "-c", "-o", "keep.o", "keep.c"], tmp_path, "arm-none-eabi-gcc")
    data = sum(a.nbytes for a in expected.values())
    slack = sum(max(4, a.dtype.itemsize) - 1 for a in expected.values())
    assert data <= section_sizes(tmp_path / "keep.o")[".rodata"] <= data + slack


@pytest.mark.parametrize("mode", ["planes", "codes", "base3", "binary"])
def test_twn_packings(mode, checkpoint, tmp_path):
    path = checkpoint("twn_nin_gc")
    plan = {"bits": 1} if mode == "binary" else {"ternary_pack": mode}
    header = tmp_path / f"twn_{mode}.h"
    export("cheader", path, header, **plan)
    q = independent_qmodel(path, **plan)
    assert any(t.role == "packed" for t in q.tensors)
    full_check(header, q, "twn_nin_gc")


@pytest.mark.parametrize("variant", ["hex", "prefix_align_section", "ohwi_word16", "narrow"])
def test_option_variants(variant, checkpoint, tmp_path):
    arch = "twn_nin_gc" if variant in ("ohwi_word16",) else "lenet"
    path = LENET if arch == "lenet" else checkpoint(arch)
    plan: dict = {"bits": 8} if arch == "lenet" else {"layout": "ohwi", "word_bits": "16"}
    opts: dict = {}
    prefix, compile_kw = DEFAULT_PREFIX[arch], {}
    if variant == "hex":
        opts = {"hex": True}
    elif variant == "prefix_align_section":
        opts = {"prefix": "Net2", "align": 32, "section": ".qx_weights"}
        prefix, compile_kw = "net2", {"align": 32, "section": ".qx_weights"}
    elif variant == "narrow":
        opts = {"line_width": 40}
    header = tmp_path / f"{variant}.h"
    export("cheader", path, header, writer_options=opts, **plan)
    q = independent_qmodel(path, **plan)
    text = header.read_text()
    if variant == "hex":
        assert "0x" in text and "0x" not in text.split("lenet_c1_bias")[1].split("};")[0]  # signed: decimal
    if variant == "prefix_align_section":
        assert '__attribute__((section(".qx_weights")))' in text and "QEXPORT_ALIGN(32)" in text
        assert "#define NET2_C1_ZERO_POINT" in text and "net2_c1_weight[" in text
    if variant == "narrow":
        body = [ln for ln in text.splitlines() if ln.startswith("  ") and ln.endswith(",")]
        assert body and max(map(len, body)) <= 40
    full_check(header, q, prefix, **compile_kw)


def test_qexport_align_and_section_can_be_overridden(tmp_path):
    header = tmp_path / "lenet.h"
    export("cheader", LENET, header, bits=8)
    (tmp_path / "over.c").write_text(
        "#define QEXPORT_ALIGN(n) __attribute__((aligned(64)))\n"
        '#define QEXPORT_SECTION __attribute__((section(".my_flash")))\n'
        '#include "lenet.h"\n'
        "const void *keep[] = { lenet_c1_weight, lenet_output_bias };\n"
    )  # fmt: skip
    compile_c([*ARM, "-c", "-o", "over.o", "over.c"], tmp_path, "arm-none-eabi-gcc")
    sizes = section_sizes(tmp_path / "over.o")
    assert sizes.get(".rodata", 0) == 0 and sizes[".my_flash"] in (64 + 150, 192 + 40)  # either order
    nm = subprocess.run(["arm-none-eabi-nm", "over.o"], cwd=tmp_path, capture_output=True, text=True, check=True)
    addresses = {ln.split()[2]: int(ln.split()[0], 16) for ln in nm.stdout.splitlines() if ln.split()[-1].startswith("lenet_")}
    assert set(addresses) == {"lenet_c1_weight", "lenet_output_bias"}
    assert all(a % 64 == 0 for a in addresses.values())


# ---------------------------------------------------------------------------------------------
# --split-source


def test_split_source_links_from_two_translation_units(checkpoint, tmp_path):
    path = checkpoint("twn_nin_gc")
    header = tmp_path / "model.h"
    r = run_cli("cheader", path, "-o", header, "--plan", "seed", "--split-source", "--prefix", "twn", "--section", ".qx")
    assert r.returncode == 0, r.stderr
    source = tmp_path / "model.c"
    assert source.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model.c", "model.h"]
    assert f"qexport: wrote {header} and {source}" in r.stderr  # both files are named
    htext, ctext = header.read_text(), source.read_text()
    assert "static" not in htext.split("#endif", 3)[-1] and "extern const" in htext
    assert '#include "model.h"' in ctext and "static const" not in ctext
    q = independent_qmodel(path)
    full_check(header, q, "twn", section=".qx", c_source=source)
    # two C units including the header, linked with model.c (no duplicate definitions)
    (tmp_path / "a.c").write_text('#include "model.h"\nint second(void);\n'
                                  "int main(void) { return (int)twn_tnn_bin_0_bias[0] * 0 + second(); }\n")
    (tmp_path / "b.c").write_text('#include "model.h"\nint second(void) { return twn_tnn_bin_2_tnn_bin_conv_weight[0] * 0; }\n')
    compile_c([*GCC, "-o", "ab", "a.c", "b.c", "model.c"], tmp_path)
    assert subprocess.run([str(tmp_path / "ab")]).returncode == 0
    # the definitions compile as C++ too (a firmware built with g++)
    compile_c([*GXX, "-x", "c++", "-c", "-o", "model.cpp.o", "model.c"], tmp_path, "g++")


# ---------------------------------------------------------------------------------------------
# XNOR / popcount on the packed words


def binary_layer_results(header: Path, array: str, macro: str, acts: np.ndarray) -> np.ndarray:
    folder = header.parent
    exe = folder / f"bin_{array}"
    compile_c([*GCC, "-O2", "-I", str(folder), f'-DQEXPORT_HEADER="{header.name}"', f"-DQX_WORDS={array}",
               f"-DQX_M={macro}", str(C_DIR / "binary_layer.c"), "-o", str(exe)], folder)  # fmt: skip
    res = subprocess.run([str(exe)], input=acts.astype(np.int8).tobytes(), capture_output=True, timeout=600)
    assert res.returncode == 0, f"binary_layer exit {res.returncode}: {res.stderr!r}"
    return np.array([line.split() for line in res.stdout.decode().splitlines()], dtype=np.int64)


@pytest.mark.parametrize("word_bits", ["8", "16", "32", "64"])
def test_xnor_popcount_in_c_equals_the_pm1_dot_product(word_bits, checkpoint, tmp_path):
    path = checkpoint("vgg_cifar10_binary")
    layout = "ohwi" if word_bits == "16" else "oihw"
    q = independent_qmodel(path, word_bits=word_bits, layout=layout)
    # write only the two layers used (features.0: N = 27, not a multiple of any word size;
    # classifier.0: N = 8192), to keep the compile small
    keep = {"features.0", "classifier.0"}
    layers = tuple(layer for layer in q.layers if layer.name in keep)
    small = replace(q, tensors=tuple(t for t in q.tensors if t.layer in keep),
                    quantized=replace(q.quantized, layers=layers))  # fmt: skip
    header = tmp_path / "vgg_bin.h"
    WRITER.write(small, header, prefix="vgg")
    rng = np.random.default_rng(int(word_bits))
    for layer in sorted(keep):
        codes = q.tensor(f"{layer}.weight").data  # int8 +-1 in the chosen layout
        flat = codes.reshape(codes.shape[0], -1).astype(np.int64)
        n = flat.shape[1]
        assert n == (27 if layer == "features.0" else 8192)
        acts = rng.choice(np.array([-1, 1], dtype=np.int8), size=(17, n))
        acts[0] = 1  # all +1: the dot product is the row sum
        acts[1] = -1
        expected = acts.astype(np.int64) @ flat.T
        name = f"vgg_{ident(layer)}_weight_packed"
        got = binary_layer_results(header, name, name.upper(), acts)
        assert got.shape == expected.shape
        assert np.array_equal(got, expected), layer


# ---------------------------------------------------------------------------------------------
# hostile names (generic reader)

HOSTILE = {  # checkpoint key -> identifier of its array with --prefix gen (README convention)
    "a.b.weight": "gen_a_b_weight",
    "a_b.weight": "gen_a_b_weight_2",
    "a\\\nb.weight": "gen_a_b_weight_3",
    "*/ int x; /*.weight": "gen_t_int_x_weight",
    "int.weight": "gen_int_weight",
    "1x.weight": "gen_t_1x_weight",
    "x??/.weight": "gen_x_weight",
    "q\"uo'te.weight": "gen_q_uo_te_weight",
    "__attribute__.weight": "gen_t_attribute_weight",
    "\u00fcn\u00ef.weight": "gen_t_n_weight",
    "static": "gen_static_",
    "NULL": "gen_null_",
    "n" * 200 + ".weight": "gen_" + "n" * 64,
    "n" * 200 + "2.weight": "gen_" + "n" * 62 + "_2",
    "conv.weight": "gen_conv_weight",
    "conv.bias": "gen_conv_bias",
}


@pytest.fixture(scope="module")
def hostile_checkpoint(tmp_path_factory):
    import torch

    gen = torch.Generator().manual_seed(5)
    state = {}
    for i, key in enumerate(HOSTILE):
        shape = (3,) if key in ("static", "NULL", "conv.bias") else (2, 3, 3, 3) if key == "conv.weight" else (3, 4 + i)
        state[key] = torch.randn(shape, generator=gen)
    path = tmp_path_factory.mktemp("hostile") / 'hostile "x" *\\ ??= \n.pth'  # provenance names it
    buffer = io.BytesIO()  # torch.save would read the backslash as a folder separator
    torch.save(state, buffer)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("bits", ["8", "1"])
def test_hostile_names_compile_and_cannot_break_out(bits, hostile_checkpoint, tmp_path):
    header = tmp_path / "hostile.h"
    r = run_cli("cheader", hostile_checkpoint, "-o", header, "--bits", bits, "--prefix", "gen")
    assert r.returncode == 0, r.stderr
    q = independent_qmodel(hostile_checkpoint, bits=int(bits))
    arrays, macros, text = dump_header(header)
    if bits == "8":  # every checkpoint tensor is in the array its documented identifier names
        by_name = {t.name: t for t in q.tensors}
        for key, identifier in HOSTILE.items():
            assert same_values(arrays[identifier], by_name[key].data), key
    # all arrays of the quantized model, and nothing else, came back exactly (as a multiset)
    expected = [np.ascontiguousarray(t.data) for t in q.tensors]
    expected += [v for layer in q.layers for _, v in param_items(layer) if v.ndim]
    assert sum(t.role == "packed" for t in q.tensors) == (len(q.layers) if bits == "1" else 0) == (13 if bits == "1" else 0)
    assert sorted((str(a.dtype), a.tobytes()) for a in expected) == sorted((str(a.dtype), a.tobytes()) for a in arrays.values())
    # nothing from a name reached the code: "int x;" exists only inside comments
    pre = subprocess.run(["gcc", "-std=c99", "-E", "-P", header.name], cwd=tmp_path, capture_output=True, text=True)
    assert pre.returncode == 0 and "int x" not in pre.stdout
    assert "* / int x; / *" in text  # the comment shows the name, defused
    assert "??" not in text  # no trigraph anywhere
    assert all(" " <= ch <= "~" or ch == "\n" for ch in text)
    compile_everywhere(header, text, dict(arrays))


# ---------------------------------------------------------------------------------------------
# edge values, formats, determinism, errors


def edge_qmodel() -> QuantizedModel:
    f32 = np.array([0.0, -0.0, 1.0, -1.0, 100.0, 0.1, 1e-5, 123456789.0, 1.4e-45, -1.4e-45, 1.1754942e-38,
                    1.17549435e-38, 3.4028235e38, -3.4028235e38, 2.0**-149 * 3, 7e-3], dtype=np.float32)  # fmt: skip
    tensors = {
        "f32": f32,
        "f64": np.array([0.0, -0.0, 5e-324, 1.7976931348623157e308, 0.1, -1.0 / 3.0], dtype=np.float64),
        "f16": np.array([0.0, -0.0, 6e-8, 65504.0, 0.5], dtype=np.float16),
        "i8": np.array([-128, -1, 0, 1, 127], dtype=np.int8),
        "u8": np.arange(256, dtype=np.uint8).reshape(16, 16),
        "i16": np.array([-32768, -1, 0, 32767], dtype=np.int16),
        "u16": np.array([0, 1, 65535], dtype=np.uint16),
        "i32": np.array([-(2**31), -(2**31) + 1, -1, 0, 2**31 - 1], dtype=np.int32),
        "u32": np.array([0, 1, 2**31, 2**32 - 1], dtype=np.uint32),
        "i64": np.array([-(2**63), -(2**63) + 1, -(2**31), 0, 2**63 - 1], dtype=np.int64),
        "u64": np.array([0, 2**63, 2**64 - 1], dtype=np.uint64),
        "flag": np.array([True, False, True]),
        "scalar": np.array(-(2**63), dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    src = Source("edge.pth", "0" * 64, 0)
    model = Model("generic", frozen_map(tensors), (), src, has_graph=False)
    ets = tuple(ExportTensor(k, v, None, "other", "float" if v.dtype.kind == "f" else str(v.dtype), "-")
                for k, v in tensors.items())  # fmt: skip
    params = {"zero_point": np.array(-7, np.int32), "threshold": np.array([-(2**31), 2**31 - 1, 0], np.int32),
              "flip": np.array([1, 0, 1], np.uint8), "scale": np.array(-0.0, np.float32),
              "scale_error": np.array(1e-300, np.float64), "shift": np.array(-(2**31), np.int32)}  # fmt: skip
    layer = QuantLayer("lay", "linear", "affine", 8, True, "u8", None, frozen_map(params), frozen_map({"stride": 2}))
    return arrange(QuantizedModel(model, QuantPlan((), PlanOptions()), ets, (layer,), options_text="--edge"),
                   encode_options_from())


@pytest.mark.parametrize("hex_", [False, True])
def test_edge_values_round_trip_exactly(hex_, tmp_path):
    q = edge_qmodel()
    header = tmp_path / "edge.h"
    WRITER.write(q, header, prefix="e", hex=hex_)
    arrays, macros, text = dump_header(header)
    expected = {f"e_{ident(t.name)}": (t.data.astype(np.float32) if t.data.dtype == np.float16 else t.data)
                for t in q.tensors if t.data.size}  # fmt: skip
    expected["e_lay_threshold"] = q.layers[0].params["threshold"]
    expected["e_lay_flip"] = q.layers[0].params["flip"]
    check_arrays(arrays, expected)
    assert "e_empty[" not in text  # no zero-length array
    assert int(macros["E_EMPTY_COUNT"]) == 0 and int(macros["E_SCALAR_NDIM"]) == 0
    assert int(macros["E_LAY_ZERO_POINT"]) == -7 and int(macros["E_LAY_SHIFT"]) == -(2**31)
    assert np.signbit(np.float32(float(macros["E_LAY_SCALE"])))  # -0.0f keeps its sign
    assert float(macros["E_LAY_SCALE_ERROR"]) == 1e-300
    assert int(macros["E_LAY_STRIDE_H"]) == 2 and int(macros["E_LAY_STRIDE_W"]) == 2
    if hex_:
        assert "0xFFFFFFFFFFFFFFFFULL" in text and "0xFF," in text
    else:
        assert "18446744073709551615ULL" in text and "(-2147483647 - 1)" in text
    assert "(-9223372036854775807LL - 1)" in text
    compile_everywhere(header, text, expected)


def test_deterministic_bytes(checkpoint, tmp_path):
    path = checkpoint("vgg_cifar10_binary")
    outs = []
    for run in ("one", "two"):
        folder = tmp_path / run
        folder.mkdir()
        export("cheader", path, folder / "m.h", writer_options={"split_source": True})
        export("cheader", LENET, folder / "l.h", bits=8)
        outs.append({p.name: p.read_bytes() for p in sorted(folder.iterdir())})
    assert outs[0] == outs[1] and sorted(outs[0]) == ["l.h", "m.c", "m.h"]
    text = outs[0]["l.h"].decode("ascii")
    assert str(tmp_path) not in text and "lenet_digits.pth" in text and "sha256" in text


def test_lines_have_a_fixed_width(tmp_path):
    header = tmp_path / "l.h"
    export("cheader", LENET, header, bits=8, writer_options={"line_width": 72})
    text = header.read_text()
    body = text.split("lenet_c5_weight[LENET_C5_WEIGHT_COUNT]")[1].split("};")[0].splitlines()[1:]
    widths = {len(line) for line in body[:-1]}
    assert len(widths) == 1 and widths.pop() <= 72 and len(body[-1]) <= 72


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--prefix", "1abc"], 2, "--prefix"),
        (["--prefix", "a__b"], 2, "--prefix"),
        (["--section", 'x") int y; ("'], 2, "--section"),
        (["--align", "3"], 2, "--align"),
        (["--line-width", "10"], 2, "--line-width"),
        (["--split-source", "-o", "{tmp}/x.c"], 2, "x.c"),
        (["-o", "{tmp}/missing/x.h"], 1, "missing"),
    ],
)
def test_errors_exit_codes_and_one_line(args, code, fragment, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = run_cli("cheader", LENET, *args, cwd=tmp_path)
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == [] or all(p.name == "missing" for p in tmp_path.iterdir())
