"""The memory-bounded paths (issue 9: end-to-end peak memory <= 2.5x the checkpoint) give exactly
the bytes and values of the whole-array formulas they replace, also when they split the work:

- the C header is streamed into the output file block by block (`grid_blocks` over the CHUNK-sized
  parts of `value_parts`), never built whole: the layout equals a one-shot transcription over
  `value_matrix(...)`, and the streamed file holds what the README's C header format says, read back
  by a transcription of that format (regexes over the text) and by gcc (a program printing every
  array), compared with the values the test put in;
- BatchNorm folding runs in blocks of output channels: equal, bit for bit, to the float64
  whole-array product rounded once to float32, and an overflow in any block is still refused.

Block sizes are shrunk here so that small arrays cross many block boundaries."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cheader_support import dump_header, same_values
from qexport.errors import OutputError, PlanError
from qexport.model import ExportTensor, Model, PlanOptions, QuantizedModel, QuantLayer, QuantPlan, Source, frozen_map
from qexport.encode import c_literals
from qexport.encode.arrange import arrange
from qexport.encode.options import EncodeOptions
from qexport.quantize import bn
from qexport.writers import cheader


def one_shot_grid(values: np.ndarray, line_width: int, hex_: bool = False) -> bytes:
    """The layout grid_blocks must reproduce: every literal padded to the array's widest one,
    `per_line` items per line, the last line short."""
    cells = c_literals.value_matrix(values, "x", hex_)
    n, w = cells.shape
    item = w + 2
    per_line = max(1, (line_width - 2) // item)
    text = [b" " + bytes(row) + b"," for row in cells]
    return b"".join(b"  " + b"".join(text[i:i + per_line]) + b"\n" for i in range(0, n, per_line))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "uint32", "float32"])
@pytest.mark.parametrize("n", [1, 18, 19, 20, 997, 5003])
def test_streamed_grid_equals_one_shot_layout(monkeypatch, dtype, n):
    monkeypatch.setattr(c_literals, "CHUNK", 101)  # many parts of different literal widths
    monkeypatch.setattr(c_literals, "GRID_LINES", 3)  # many blocks per part
    rng = np.random.default_rng(n)
    if dtype == "float32":
        values = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(np.float32)
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
        values[: n // 7] = 0  # a first part of narrow literals, padded to the wider ones after it
    for line_width, hex_ in ((100, False), (40, dtype.startswith("u")), (4096, False)):
        parts = c_literals.value_parts(values, "x", hex_)
        streamed = b"".join(c_literals.grid_blocks(parts, line_width))
        assert streamed == one_shot_grid(values, line_width, hex_)


def small_qmodel():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (7, 5, 3, 3), dtype=np.uint8)
    bias = rng.integers(-(2**31), 2**31, 7, dtype=np.int64).astype(np.int32)
    bias[3] = -(2**31)  # INT32_MIN, which has no plain C literal
    floats = rng.standard_normal(301).astype(np.float32)
    tensors = (ExportTensor("conv.weight", codes, "conv", "weight", "affine", "oihw"),
               ExportTensor("conv.bias", bias, "conv", "bias", "int32", "c"),
               ExportTensor("bn.running_mean", floats, None, "bn", "float", "c"))  # fmt: skip
    layer = QuantLayer("conv", "conv", "affine", 8, True, "conv.weight", "conv.bias",
                       frozen_map({"scale": rng.random(7).astype(np.float32),
                                   "zero_point": rng.integers(0, 256, 7).astype(np.int32),
                                   "shift": np.asarray(17, np.int32)}))  # fmt: skip
    model = Model("generic", frozen_map({t.name: t.data for t in tensors}), (), Source("m.pth", "0" * 64, 1),
                  has_graph=False)  # fmt: skip
    return arrange(QuantizedModel(model, QuantPlan((), PlanOptions()), tensors, (layer,), options_text="--bits 8"),
                   EncodeOptions())


# The documented C header format (README "C headers"), transcribed here independently of the writer:
# one flat array per tensor `<prefix>_<tensor>` and per per-channel parameter `<prefix>_<layer>_<param>`
# (prefix = the architecture, "generic" here), of the exact C type, `[<MACRO>_COUNT]`, with
# `QEXPORT_ALIGN(n) QEXPORT_SECTION` (n = max(--align 4, element size)), initialised by lines of
# fixed-width columns no wider than --line-width; `static const` in the single header, `extern const`
# declarations + `const` definitions in the .c with --split-source; per-tensor parameters as macros.
ARRAY_DEF_RE = re.compile(r"^(static const|const) (\w+) (\w+)\[(\w+)\] QEXPORT_ALIGN\((\d+)\) QEXPORT_SECTION = \{\n"
                          r"(.*?)^\};$", re.M | re.S)  # fmt: skip
EXTERN_RE = re.compile(r"^extern const (\w+) (\w+)\[(\w+)\];$", re.M)
CTYPE = {"uint8": "uint8_t", "int32": "int32_t", "float32": "float"}  # the test's own table


def expected_arrays(q: QuantizedModel) -> dict[str, np.ndarray]:
    """name -> flat values, from the arrays small_qmodel() built (not from the writer)."""
    tensors = {t.name: t.data for t in q.tensors}
    params = q.layers[0].params
    return {"generic_conv_weight": tensors["conv.weight"].reshape(-1),
            "generic_conv_bias": tensors["conv.bias"],
            "generic_bn_running_mean": tensors["bn.running_mean"],
            "generic_conv_scale": np.asarray(params["scale"]),
            "generic_conv_zero_point": np.asarray(params["zero_point"])}  # fmt: skip


def parse_literal(token: str, dtype: np.dtype):
    """One C literal of the header as a Python number (the forms C99 accepts for these types)."""
    token = token.strip()
    if dtype.kind == "f":
        assert token.endswith("f") and re.fullmatch(r"-?\d+(\.\d*)?(e[-+]\d+)?f", token), token
        return np.float32(float(token[:-1]))
    if token == "(-2147483647 - 1)":
        return -(2**31)
    assert re.fullmatch(r"-?\d+U?", token), token
    return int(token.rstrip("U"))


def check_grid(body: str, count: int, line_width: int) -> list[str]:
    """The initializer's layout: lines of two spaces then items " <literal>," of one fixed width,
    as many per line as fit in line_width, the last line possibly shorter. Returns the literals."""
    lines = body.split("\n")
    assert lines[-1] == "" and all(line.startswith("   ") for line in lines[:-1])
    lines = lines[:-1]
    items = [re.findall(r" [^,]*,", line[2:]) for line in lines]
    assert all("".join(it) == line[2:] for it, line in zip(items, lines))  # nothing but items
    widths = {len(i) for it in items for i in it}
    assert len(widths) == 1, widths  # fixed-width columns
    item = widths.pop()
    per_line = max(1, (line_width - 2) // item)  # as many as fit in line_width
    assert all(len(it) == per_line for it in items[:-1]) and 1 <= len(items[-1]) <= per_line
    literals = [i[1:-1] for it in items for i in it]
    assert len(literals) == count and all(lit.strip() and lit == lit.rstrip() for lit in literals)  # right-aligned
    return literals


@pytest.mark.parametrize("split", [False, True])
def test_streamed_header_holds_the_documented_arrays(monkeypatch, tmp_path, split):
    """The header streamed in many small blocks (CHUNK 50 elements, GRID_LINES 2) against the
    documented format: every array parsed from the text (layout and literals) and, independently,
    printed back by a gcc-compiled program, equals the values small_qmodel() put in."""
    monkeypatch.setattr(c_literals, "CHUNK", 50)
    monkeypatch.setattr(c_literals, "GRID_LINES", 2)
    q = small_qmodel()
    want = expected_arrays(q)
    header = tmp_path / "model.h"
    cheader.write(q, header, split_source=split, line_width=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["model.c", "model.h"] if split else ["model.h"])
    text = header.read_text(encoding="ascii")
    defs_text = (tmp_path / "model.c").read_text(encoding="ascii") if split else text
    defs = ARRAY_DEF_RE.findall(defs_text)
    assert sorted(d[2] for d in defs) == sorted(want)
    for storage, ctype, name, count_macro, align, body in defs:
        values = want[name]
        assert storage == ("const" if split else "static const")
        assert ctype == CTYPE[values.dtype.name] and count_macro == name.upper() + "_COUNT"
        assert int(align) == max(4, values.dtype.itemsize)
        assert f"#define {count_macro} {values.size}\n" in text
        literals = check_grid(body, values.size, 60)
        parsed = np.array([parse_literal(t, values.dtype) for t in literals], dtype=values.dtype)
        assert parsed.tobytes() == values.tobytes(), name
    if split:
        assert sorted(EXTERN_RE.findall(text)) == sorted((c, n, m) for _, c, n, m, _, _ in defs)
        assert "static const" not in text and " = {" not in text
        assert defs_text.startswith("/*\n * model.c: generated by qexport") and '#include "model.h"' in defs_text
    else:
        assert not EXTERN_RE.findall(text)
    assert "#define GENERIC_CONV_SHIFT 17\n" in text  # the per-tensor parameter, as a macro
    # the compiler as the second, independent reader of the same files
    arrays, macros, _ = dump_header(header, (tmp_path / "model.c",) if split else ())
    assert sorted(arrays) == sorted(want)
    for name, values in want.items():
        assert same_values(arrays[name], values), name
    assert macros["GENERIC_CONV_SHIFT"] == "17" and macros["GENERIC_CONV_WEIGHT_COUNT"] == "315"


def test_streamed_header_error_leaves_no_file(tmp_path):
    q = small_qmodel()
    # A last tensor no C type can hold: the error comes after the first arrays were streamed out.
    odd = ExportTensor("odd", np.ones(3, np.complex64), None, "other", "float", "c")
    bad = arrange(QuantizedModel(q.model, q.plan, q.tensors + (odd,), q.layers, options_text="--bits 8"),
                  EncodeOptions())
    (tmp_path / "model.h").write_bytes(b"previous good output\n")
    with pytest.raises(OutputError, match="has no C type"):
        cheader.write(bad, tmp_path / "model.h")
    assert (tmp_path / "model.h").read_bytes() == b"previous good output\n"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["model.h"]  # no temporary file left


def fold_reference(w, b, gamma, beta, mean, var, eps):
    """The whole-array formula: W * gamma / sigma in float64 over the whole tensor, rounded once."""
    sigma = np.sqrt(np.asarray(var, np.float64) + eps)
    k = np.asarray(gamma, np.float64) / sigma
    w_f = np.asarray(w, np.float64) * k.reshape((-1,) + (1,) * (np.ndim(w) - 1))
    b_f = (np.asarray(b, np.float64) - mean) * k + beta
    return w_f.astype(np.float32), b_f.astype(np.float32)


@pytest.mark.parametrize("shape", [(13,), (13, 1), (13, 40), (13, 7, 3, 3), (2, 1000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_blockwise_fold_equals_whole_array_formula(monkeypatch, shape, dtype):
    monkeypatch.setattr(bn, "FOLD_BLOCK", 37)  # blocks of 1 to a few channels
    rng = np.random.default_rng(1)
    c = shape[0]
    w = (rng.standard_normal(shape) * 3).astype(dtype)
    gamma, beta, mean = rng.standard_normal(c) * 2, rng.standard_normal(c), rng.standard_normal(c)
    var, b = rng.random(c) + 1e-3, rng.standard_normal(c)
    w32, b32 = bn.fold_bn(w, b, gamma, beta, mean, var, 1e-5)
    want_w, want_b = fold_reference(w, b, gamma, beta, mean, var, 1e-5)
    assert w32.dtype == np.float32 and w32.shape == w.shape
    assert w32.tobytes() == want_w.tobytes() and b32.tobytes() == want_b.tobytes()


def test_blockwise_fold_refuses_overflow_in_a_late_block(monkeypatch):
    monkeypatch.setattr(bn, "FOLD_BLOCK", 10)
    w = np.ones((8, 10), np.float32)
    w[7, 9] = 3e38  # only the last block overflows float32 once multiplied by gamma / sigma = ~10
    args = (np.full(8, 10.0), np.zeros(8), np.zeros(8), np.ones(8), 1e-5)
    with pytest.raises(PlanError, match="layer conv7: folding BatchNorm overflows float32"):
        bn.fold_bn(w, None, *args, layer="conv7")
    w[7, 9] = 1.0
    w32, _ = bn.fold_bn(w, None, *args, layer="conv7")
    assert np.isfinite(w32).all()
