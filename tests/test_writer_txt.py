"""`qexport txt`: folders of text files read back with numpy.loadtxt (hex with int(x, 16)) and
compared exactly with the QuantizedModel computed in the test; every value, never truncated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import LENET, run_cli
from datawriters_support import (CASES, assert_same, cli_args, expected_model, leftovers, make_names_checkpoint,
                                 per_channel_params, read_json_header, run_ok, run_twice, sha256,
                                 tree_bytes)  # fmt: skip


def read_index(folder: Path) -> dict[tuple[str, str], str]:
    """(kind, original name) -> file name, from index.txt."""
    out = {}
    for line in (folder / "index.txt").read_text(encoding="ascii").splitlines():
        if line.startswith("#"):
            continue
        fname, name, kind, *_ = line.split("\t")
        key = (kind, json.loads(name))
        assert key not in out
        out[key] = fname
    return out


def parse_hex(tokens: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Two's complement hex strings of `dtype`'s width back to values of `dtype`."""
    dtype = np.dtype(dtype)
    bits = 8 * dtype.itemsize
    assert all(len(t) == bits // 4 for t in tokens.ravel()), "hex digits do not match the width"
    values = [int(t, 16) for t in tokens.ravel()]
    if dtype.kind == "i":
        values = [v - (1 << bits) if v >= 1 << (bits - 1) else v for v in values]
    return np.asarray(values, dtype=object).astype(dtype).reshape(tokens.shape)


def load_values(path: Path, dtype: np.dtype, shape: tuple, per_row: bool, hex_: bool) -> np.ndarray:
    dtype = np.dtype(dtype)
    rows = (shape[0] if shape else 1) if per_row else int(np.prod(shape, dtype=np.int64))
    if hex_ and dtype.kind in "iub":
        tokens = np.loadtxt(path, dtype=str, ndmin=2, skiprows=1)  # line 1 is the # header
        got = parse_hex(tokens, dtype)
    else:
        got = np.loadtxt(path, dtype=dtype, ndmin=2, comments="#")
    assert got.shape[0] == rows, f"{path.name}: {got.shape[0]} lines of values, expected {rows}"
    return got.reshape(shape)


def parse_quant(path: Path) -> list[dict]:
    blocks, current = [], None
    for line in path.read_text(encoding="ascii").splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            current = None
            continue
        key, _, value = line.partition(" = ")
        if key == "layer":
            current = {"layer": json.loads(value), "params": {}}
            blocks.append(current)
        elif ":" in key:
            name, _, dtype = key.partition(":")
            current["params"][name] = (dtype.split("[")[0], "[" in dtype, value.split())
        else:
            current[key] = value
    return blocks


def param_value(dtype: str, per_channel: bool, tokens: list[str]) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        arr = np.asarray(tokens, dtype=np.float64).astype(dt)
    else:
        arr = np.asarray([int(t) for t in tokens], dtype=object).astype(dt)
    return arr if per_channel else arr.reshape(())


def check_txt(folder: Path, qm, ckpt, per_row=False, hex_=False):
    index = read_index(folder)
    expected = [("tensor", t.name, t.data) for t in qm.tensors]
    expected += [("param", name, value) for name, value in per_channel_params(qm)]
    assert set(index) == {(k, n) for k, n, _ in expected}  # a complete name map
    files = sorted(p.name for p in folder.iterdir())
    assert sorted(list(index.values()) + ["index.txt", "quant.txt"]) == files
    assert len({f.lower() for f in files}) == len(files)  # unique on case-insensitive file systems too
    for kind, name, value in expected:
        path = folder / index[(kind, name)]
        head = read_json_header(path)
        assert head["name"] == name and head["dtype"] == str(value.dtype) and head["shape"] == list(value.shape)
        got = load_values(path, value.dtype, value.shape, per_row, hex_)
        assert_same(got, value, name)
        if kind == "tensor":
            t = qm.tensor(name)
            assert head["scheme"] == t.scheme
            if t.role == "packed":  # the packing is stated in the header line
                assert head["attrs"]["word_bits"] == t.attrs["word_bits"] and head["attrs"]["n"] == t.attrs["n"]
                assert head["attrs"]["encoding"] == t.attrs["encoding"]
    blocks = parse_quant(folder / "quant.txt")
    assert [b["layer"] for b in blocks] == [q.name for q in qm.layers]
    for q, b in zip(qm.layers, blocks):
        assert b["scheme"] == q.scheme and int(b["bits"]) == q.bits
        assert set(b["params"]) == set(q.params)
        for key, value in q.params.items():
            dtype, per_channel, tokens = b["params"][key]
            assert dtype == str(np.asarray(value).dtype)
            assert_same(param_value(dtype, per_channel, tokens), value, f"quant.txt {q.name}.{key}")
        if q.weight:
            head = read_json_header(folder / index[("tensor", q.weight)])
            for key, value in q.params.items():
                if np.ndim(value) == 0:  # the weight's header line carries the scalar parameters
                    assert np.asarray(head["params"][key], dtype=np.asarray(value).dtype) == value
    text = (folder / "quant.txt").read_text()
    assert sha256(ckpt) in text


@pytest.mark.parametrize("case", list(CASES))
def test_txt_round_trip(case, checkpoint, tmp_path):
    arch, kw = CASES[case]
    ckpt = checkpoint(arch)
    out = tmp_path / "out_txt"
    run_ok("txt", ckpt, "-o", out, *cli_args(kw))
    check_txt(out, expected_model(ckpt, kw), ckpt)


@pytest.mark.parametrize("case, flags", [
    ("lenet-default", ("--per-row", "--hex")),
    ("twn-bits1-pack", ("--per-row",)),
    ("twn-bits1-pack", ("--hex",)),
    ("lenet-bits2-pack", ("--per-row", "--hex")),
    ("lenet-bits12-perchannel", ("--hex",)),
])  # fmt: skip
def test_txt_per_row_and_hex(case, flags, checkpoint, tmp_path):
    arch, kw = CASES[case]
    ckpt = checkpoint(arch)
    out = tmp_path / "out_txt"
    run_ok("txt", ckpt, "-o", out, *flags, *cli_args(kw))
    qm = expected_model(ckpt, kw)
    check_txt(out, qm, ckpt, per_row="--per-row" in flags, hex_="--hex" in flags)
    index = read_index(out)
    w = qm.layers[1]  # a quantized conv: one line per output channel with --per-row
    lines = [ln for ln in (out / index[("tensor", w.weight)]).read_text().splitlines() if not ln.startswith("#")]
    codes = qm.tensor(w.weight).data
    assert len(lines) == (codes.shape[0] if "--per-row" in flags else codes.size)
    if "--hex" in flags and codes.dtype == np.int8:
        assert "ff" in {tok for ln in lines for tok in ln.split()}  # -1 in two's complement


def test_txt_hex_widths(tmp_path):
    """int8 -1 -> ff, int32 -> 8 digits, uint16 -> 4 digits, from the LeNet fixture."""
    out = tmp_path / "h_txt"
    run_ok("txt", LENET, "-o", out, "--hex", "--bits", "12")
    qm = expected_model(LENET, {"bits": 12})
    index = read_index(out)
    w = (out / index[("tensor", "c1.weight")]).read_text().splitlines()[1:]
    b = (out / index[("tensor", "c1.bias")]).read_text().splitlines()[1:]
    assert {len(x) for x in w} == {4} and {len(x) for x in b} == {8}
    bias = qm.tensor("c1.bias").data
    assert b == [format(int(v) & 0xFFFFFFFF, "08x") for v in bias]


def test_txt_never_truncates(tmp_path):
    """The seed's str(tensor) elides tensors over 1000 values; here every value is there."""
    out = tmp_path / "l_txt"
    run_ok("txt", LENET, "-o", out, "--keep-float", "*")
    qm = expected_model(LENET, {"keep_float": ("*",)})
    w = qm.tensor("c5.weight").data
    assert w.size > 1000
    path = out / read_index(out)[("tensor", "c5.weight")]
    content = path.read_text()
    assert "..." not in content
    lines = content.splitlines()
    assert len(lines) == 1 + w.size
    assert_same(np.asarray(lines[1:], dtype=np.float64).astype(np.float32).reshape(w.shape), w, "c5.weight")
    assert all(len(x.replace("-", "").replace(".", "").split("e")[0].lstrip("0")) <= 9 for x in lines[1:])


def test_txt_default_output_name(tmp_path):
    shutil.copy(LENET, tmp_path / LENET.name)
    run_ok("txt", cwd=tmp_path)
    assert (tmp_path / "lenet_digits_txt" / "quant.txt").is_file()
    check_txt(tmp_path / "lenet_digits_txt", expected_model(LENET, {}), LENET)


@pytest.mark.parametrize("bits", [None, 8])
def test_txt_hostile_names(bits, tmp_path):
    ckpt = make_names_checkpoint(tmp_path / "names.pth")
    kw = {"bits": bits} if bits else {}
    out = tmp_path / "names_txt"
    run_ok("txt", ckpt, "-o", out, *cli_args(kw))
    check_txt(out, expected_model(ckpt, kw), ckpt)
    for p in out.iterdir():
        assert p.parent == out and not p.name.startswith(".") and p.name.isascii() and "\n" not in p.name
    assert not (tmp_path / "etc").exists()
    index = read_index(out)
    assert index[("tensor", "quant")] != "quant.txt" and index[("tensor", "index")] != "index.txt"


@pytest.mark.parametrize("args", [(), ("--per-row", "--hex")])
def test_txt_deterministic(args, checkpoint, tmp_path):
    a, b = run_twice(tmp_path, "txt", checkpoint("twn_nin_gc"), "twn_txt", *args)
    ta = tree_bytes(a)
    assert ta and ta == tree_bytes(b)


def test_txt_failed_write_leaves_nothing(monkeypatch, tmp_path):
    import qexport.writers.txt as txt
    from qexport.export import export

    out = tmp_path / "model_txt"
    export("txt", LENET, out)
    before = tree_bytes(out)
    real, calls = txt.format_values, []

    def flaky(a, *args, **kw):
        calls.append(1)
        if len(calls) == 4:
            yield "1\n"
            raise RuntimeError("fails in the fourth file")
        yield from real(a, *args, **kw)

    monkeypatch.setattr(txt, "format_values", flaky)
    with pytest.raises(RuntimeError):
        export("txt", LENET, out, writer_options={"per_row": True})
    assert tree_bytes(out) == before
    calls.clear()
    with pytest.raises(RuntimeError):
        export("txt", LENET, tmp_path / "fresh_txt")
    assert not (tmp_path / "fresh_txt").exists()
    assert leftovers(tmp_path) == []


def test_txt_cli_errors(tmp_path):
    (tmp_path / "afile").write_text("keep me")
    r = run_cli("txt", LENET, "-o", tmp_path / "afile")
    assert r.returncode == 1 and "afile" in r.stderr and r.stderr.strip().count("\n") == 0
    assert (tmp_path / "afile").read_text() == "keep me"
    r = run_cli("txt", LENET, "-o", tmp_path / "no" / "such" / "dir_txt")
    assert r.returncode == 1 and "dir_txt" in r.stderr and "Traceback" not in r.stderr
    assert leftovers(tmp_path) == []


def test_bench_data_writers_smoke(tmp_path):
    """The benchmark script (issue 9) runs on a tiny model and reports every pair; no timing asserted."""
    import subprocess
    import sys

    from conftest import ROOT

    result = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_data_writers.py"), "--params", "3000",
                        "--repeat", "1", "--json", str(result)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(result.read_text())
    assert set(data["pairs"]) == {"mat", "npy", "npz", "h5", "txt"}
    assert all(p["ours_seconds"] > 0 and p["reference_seconds"] > 0 for p in data["pairs"].values())
    assert "numpy.savetxt" in r.stdout
