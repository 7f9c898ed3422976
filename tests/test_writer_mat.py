"""`qexport mat`: MATLAB v5 files read back by scipy.io.loadmat and by GNU Octave's `load`, compared
exactly (class, size, every value) with the QuantizedModel computed in the test."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.io

from conftest import LENET, run_cli
from datawriters_support import (CASES, MATLAB_IDENT, MATLAB_KEYWORDS, assert_octave_var, assert_same, cli_args,
                                 expected_model, leftovers, make_names_checkpoint, matlab_shape, octave_load,
                                 run_ok, run_twice, sha256, tree_bytes)  # fmt: skip

RESERVED = {"qexport_names", "qexport_layers", "qexport_tensors", "qexport_provenance", "qexport_conv_order"}
TO_HWIO = {"oihw": (2, 3, 1, 0), "ohwi": (1, 2, 3, 0)}


def text(x) -> str:
    """A char value as loadmat returns it (array(['abc']) or an empty array)."""
    x = np.asarray(x)
    return str(x.reshape(-1)[0]) if x.size else ""


def record(struct_array):
    return struct_array[0, 0]


def arranged(t, matlab_order: bool) -> np.ndarray:
    if matlab_order and t.data.ndim == 4 and t.layout in TO_HWIO:
        return np.transpose(t.data, TO_HWIO[t.layout])
    return np.asarray(t.data)


def as_matlab(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).reshape(matlab_shape(np.asarray(a)))


def check_mat(path, qm, ckpt, matlab_order=False, order="OIHW", octave=None):
    """Everything in the file against `qm`; with `octave` (its dump of the same file) the same
    checks through Octave's loader.  Returns (tensor var names, layer field names)."""
    raw = scipy.io.loadmat(path)
    assert text(raw["qexport_conv_order"]) == order

    names = raw["qexport_names"]
    assert names.dtype == object and names.shape == (len(qm.tensors) + len(qm.layers), 3)
    rows = [(text(a), text(b), text(c)) for a, b, c in names]
    tensor_rows = [r for r in rows if r[2] == "tensor"]
    layer_rows = [r for r in rows if r[2] == "layer"]
    # complete and in order: every tensor and every layer of the model, once
    assert [r[0] for r in tensor_rows] == [t.name for t in qm.tensors]
    assert [r[0] for r in layer_rows] == [q.name for q in qm.layers]
    var_names = [r[1] for r in tensor_rows]
    fields = [r[1] for r in layer_rows]
    for group in (var_names, fields):
        assert len({n.lower() for n in group}) == len(group), "MATLAB names are not unique"
        for n in group:
            assert MATLAB_IDENT.match(n) and n not in MATLAB_KEYWORDS, f"invalid MATLAB identifier {n!r}"
    assert not RESERVED & set(var_names)

    info = record(raw["qexport_tensors"])
    for t, var in zip(qm.tensors, var_names):
        expected = arranged(t, matlab_order)
        assert_same(raw[var], as_matlab(expected), f"{t.name} ({var})")
        meta = record(info[var])
        assert text(meta["name"]) == t.name
        assert text(meta["dtype"]) == str(t.data.dtype)
        assert text(meta["scheme"]) == t.scheme
        assert meta["shape"].ravel().tolist() == list(expected.shape)
        if matlab_order and t.data.ndim == 4 and t.layout in TO_HWIO:
            assert text(meta["layout"]) == "hwio"
        if t.role == "packed":  # the packing is stated beside the words
            attrs = record(meta["attrs"])
            assert attrs["word_bits"].item() == t.attrs["word_bits"] and attrs["n"].item() == t.attrs["n"]
            assert text(attrs["encoding"]) == t.attrs["encoding"]

    layers = record(raw["qexport_layers"])
    var_of = dict(zip([t.name for t in qm.tensors], var_names))
    for q, field in zip(qm.layers, fields):
        rec = record(layers[field])
        assert text(rec["name"]) == q.name
        assert text(rec["scheme"]) == q.scheme
        assert rec["bits"].item() == q.bits
        assert bool(rec["per_channel"].item()) == q.per_channel
        if q.weight:
            assert text(rec["weight"]) == var_of[q.weight]
        for key, value in q.params.items():
            assert_same(rec[key], as_matlab(value), f"{q.name}.{key}")

    prov = record(raw["qexport_provenance"])
    assert text(prov["source_sha256"]) == sha256(ckpt)
    assert text(prov["source"]) == ckpt.name
    assert text(prov["arch"]) == qm.model.arch

    if octave is not None:
        n_rows = names.shape[0]
        for k, (orig, matname, kind) in enumerate(rows):
            for col, value in enumerate((orig, matname, kind)):
                if not value.isascii():
                    continue  # Octave 7 reads UTF-8 char data byte-wise (README: MATLAB/Octave)
                seen = octave[f"qexport_names{{{col * n_rows + k + 1}}}"]
                assert seen[0] == "char"
                assert bytes(seen[2].astype(np.uint8)) == value.encode("ascii"), f"Octave name map row {k}"
        for t, var in zip(qm.tensors, var_names):
            expected = arranged(t, matlab_order)
            assert_octave_var(octave[var], expected, f"Octave {t.name}")
            if ("sum", var) in octave:  # the checksum Octave printed, against ours
                assert octave[("sum", var)] == float(np.sum(expected, dtype=np.float64))
        for q, field in zip(qm.layers, fields):
            for key, value in q.params.items():
                assert_octave_var(octave[f"qexport_layers.{field}.{key}"], value, f"Octave {q.name}.{key}")
            assert_octave_var(octave[f"qexport_layers.{field}.per_channel"], np.asarray(q.per_channel), "per_channel")
        sha = octave["qexport_provenance.source_sha256"]
        assert bytes(sha[2].astype(np.uint8)).decode() == sha256(ckpt)
    return var_names, fields


@pytest.mark.parametrize("case", list(CASES))
def test_mat_round_trip(case, checkpoint, tmp_path):
    arch, kw = CASES[case]
    ckpt = checkpoint(arch)
    out = tmp_path / "model.mat"
    run_ok("mat", ckpt, "-o", out, *cli_args(kw))
    qm = expected_model(ckpt, kw)
    (dump,) = octave_load([out], tmp_path)
    check_mat(out, qm, ckpt, octave=dump)  # classes too: codes stay integer, floats single


def test_mat_fixture_lenet_default_name_and_checksum(tmp_path):
    """The real trained LeNet, MODEL taken from the folder, default output name; Octave prints the
    checksum of a weight array and a quantization parameter that equal ours."""
    shutil.copy(LENET, tmp_path / LENET.name)
    r = run_ok("mat", "--plan", "seed", cwd=tmp_path)
    assert "lenet_digits.pth" in r.stderr
    out = tmp_path / "lenet_digits.mat"
    assert out.is_file() and leftovers(tmp_path) == []
    qm = expected_model(LENET, {"plan": "seed"})
    (dump,) = octave_load([out], tmp_path)
    var_names, fields = check_mat(out, qm, LENET, octave=dump)
    c1 = qm.tensor("c1.weight").data
    assert dump[("sum", "c1_weight")] == float(c1.sum(dtype=np.float64))
    assert dump[("sum", "qexport_layers.c1.multiplier")] == float(qm.quant_layer("c1").params["multiplier"])
    assert dump["c1_weight"][0] == "uint8" and dump["c1_bias"][0] == "int32"


@pytest.mark.parametrize("case", ["lenet-default", "twn-bits1-pack"])
def test_mat_split_seed_format(case, checkpoint, tmp_path):
    """--split: one file per array, each holding exactly the variable `array` (seed 000)."""
    arch, kw = CASES[case]
    ckpt = checkpoint(arch)
    shutil.copy(ckpt, tmp_path / "net.pth")
    run_ok("mat", "net.pth", "--split", *cli_args(kw), cwd=tmp_path)
    folder = tmp_path / "net_mat"  # default name of the folder
    assert folder.is_dir() and not (tmp_path / "net.mat").exists()
    qm = expected_model(ckpt, kw)
    expected = {t.name: t.data for t in qm.tensors}
    expected.update({f"{q.name}.{k}": np.asarray(v) for q in qm.layers for k, v in q.params.items()})

    index = [line.split("\t") for line in (folder / "qexport_index.txt").read_text().splitlines() if not line.startswith("#")]
    import json

    listed = {json.loads(row[1]): row[0] for row in index}
    assert set(listed) == set(expected)  # every tensor and every parameter has its file
    mat_files = sorted(folder.glob("*.mat"))
    assert {p.name for p in mat_files} == set(listed.values())
    for name, fname in listed.items():
        path = folder / fname
        (var,) = scipy.io.whosmat(path)
        assert var[0] == "array"
        assert_same(scipy.io.loadmat(path)["array"], as_matlab(expected[name]), name)
    if case == "lenet-default":
        assert listed["c1.weight"] == "c1.weight.mat"  # the seed's file naming
    files = [folder / listed[n] for n in sorted(listed)]
    dumps = octave_load(files, tmp_path)
    for name, dump in zip(sorted(listed), dumps):
        assert set(k for k in dump if isinstance(k, str)) == {"array"}
        assert_octave_var(dump["array"], expected[name], f"Octave {name}")


def test_mat_matlab_order(checkpoint, tmp_path):
    ckpt = checkpoint("twn_nin_gc")
    qm = expected_model(ckpt, {})
    plain, hwio, ohwi, ohwi_hwio = (tmp_path / n for n in ("a.mat", "b.mat", "c.mat", "d.mat"))
    run_ok("mat", ckpt, "-o", plain)
    run_ok("mat", ckpt, "-o", hwio, "--matlab-order")
    run_ok("mat", ckpt, "-o", ohwi, "--layout", "ohwi")
    run_ok("mat", ckpt, "-o", ohwi_hwio, "--layout", "ohwi", "--matlab-order")
    d_plain, d_hwio = octave_load([plain, hwio], tmp_path)
    check_mat(plain, qm, ckpt, order="OIHW", octave=d_plain)
    vars_, _ = check_mat(hwio, qm, ckpt, matlab_order=True, order="HWIO", octave=d_hwio)
    check_mat(ohwi, expected_model(ckpt, {"layout": "ohwi"}), ckpt, order="OHWI")
    # H x W x C_in x C_out whatever the plan's layout
    a, b = scipy.io.loadmat(hwio), scipy.io.loadmat(ohwi_hwio)
    for var in vars_:
        assert_same(b[var], a[var], var)
    w = qm.tensor("tnn_bin.2.tnn_bin_conv.weight").data  # O, I, H, W
    m = a["tnn_bin_2_tnn_bin_conv_weight"]
    assert m.shape == (w.shape[2], w.shape[3], w.shape[1], w.shape[0])
    assert m[0, 0, 5, 7] == w[7, 5, 0, 0]


@pytest.mark.parametrize("bits", [None, 8])
def test_mat_hostile_names(bits, tmp_path):
    ckpt = make_names_checkpoint(tmp_path / "names.pth")
    kw = {"bits": bits} if bits else {}
    out = tmp_path / "names.mat"
    run_ok("mat", ckpt, "-o", out, *cli_args(kw))
    qm = expected_model(ckpt, kw)
    (dump,) = octave_load([out], tmp_path)
    var_names, _ = check_mat(out, qm, ckpt, octave=dump)
    by_name = dict(zip([t.name for t in qm.tensors], var_names))
    assert by_name["end"] == "end_" and by_name["for"] == "for_"
    assert by_name["1bad name/x.weight"] == "x1bad_name_x_weight"
    long_a, long_b = (by_name["very_long_module_name_" * 4 + s] for s in ("a.weight", "b.weight"))
    assert len(long_a) <= 63 and len(long_b) <= 63 and long_a != long_b
    assert by_name["qexport_names"] != "qexport_names"  # the map is never clobbered
    assert by_name["caf\u00e9.weight"] == "caf__weight"  # the original survives in the map (checked above)


@pytest.mark.parametrize("args", [(), ("--compress", "--matlab-order"), ("--split",)])
def test_mat_deterministic(args, checkpoint, tmp_path):
    a, b = run_twice(tmp_path, "mat", checkpoint("twn_nin_gc"), "twn.mat", *args)
    if "--split" in args:
        a, b = a.with_name("twn_mat"), b.with_name("twn_mat")
    ta, tb = tree_bytes(a), tree_bytes(b)
    assert ta and ta == tb
    for blob in ta.values():
        if blob[:6] == b"MATLAB":
            assert b"Created on" not in blob[:128] and b"qexport" in blob[:128]


def test_mat_failed_write_leaves_nothing(monkeypatch, tmp_path):
    from qexport.export import export

    out = tmp_path / "model.mat"
    export("mat", LENET, out)
    good = out.read_bytes()

    def broken(file, mdict, **kw):
        file.write(b"MATLAB partial" * 100)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(scipy.io, "savemat", broken)
    with pytest.raises(RuntimeError):
        export("mat", LENET, out)
    assert out.read_bytes() == good
    with pytest.raises(RuntimeError):
        export("mat", LENET, tmp_path / "new.mat")
    assert not (tmp_path / "new.mat").exists()
    with pytest.raises(RuntimeError):
        export("mat", LENET, out, writer_options={"split": True})
    assert not (tmp_path / "model_mat").exists()
    assert leftovers(tmp_path) == []


def test_mat_split_failure_midway_keeps_old_folder(monkeypatch, tmp_path):
    from qexport.export import export

    export("mat", LENET, tmp_path / "m.mat", writer_options={"split": True})
    folder = tmp_path / "m_mat"
    before = tree_bytes(folder)
    real, calls = scipy.io.savemat, []

    def flaky(file, mdict, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("fails on the fifth file")
        return real(file, mdict, **kw)

    monkeypatch.setattr(scipy.io, "savemat", flaky)
    with pytest.raises(RuntimeError):
        export("mat", LENET, tmp_path / "m.mat", writer_options={"split": True, "matlab_order": True})
    assert tree_bytes(folder) == before and leftovers(tmp_path) == []


def test_mat_cli_errors(tmp_path):
    r = run_cli("mat", LENET, "-o", tmp_path / "missing" / "x.mat")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "x.mat" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "adir").mkdir()
    r = run_cli("mat", LENET, "-o", tmp_path / "adir")
    assert r.returncode == 1 and "adir" in r.stderr and r.stderr.strip().count("\n") == 0
    assert list((tmp_path / "adir").iterdir()) == [] and leftovers(tmp_path) == []
