"""`qexport h5`: HDF5 files read back with h5py and with the h5dump tool (its text output parsed),
compared exactly (dtype, shape, every value, attributes) with the QuantizedModel computed in the test."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import LENET, run_cli
from datawriters_support import (CASES, H5DUMP_TYPES, assert_h5dump_obj, assert_same, cli_args, expected_model,
                                 h5dump, leftovers, make_names_checkpoint, parse_h5dump, per_channel_params,
                                 run_ok, run_twice, sha256, tree_bytes)  # fmt: skip

SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_+-]+$")
SMALL = ("lenet", "twn_nin_gc")  # architectures whose whole file is dumped by h5dump in the tests


def datasets(f: h5py.File) -> dict[str, h5py.Dataset]:
    out = {}
    f.visititems(lambda name, obj: out.__setitem__("/" + name, obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def check_h5(path: Path, qm, ckpt, compressed=False) -> dict[str, str]:
    """Everything in the file against `qm` through h5py.  Returns original tensor name -> path."""
    with h5py.File(path, "r") as f:
        assert f.attrs["source_sha256"] == sha256(ckpt)
        assert f.attrs["arch"] == qm.model.arch and f.attrs["source"] == ckpt.name
        assert f.attrs["generator"].startswith("qexport ") and "qexport_version" in f.attrs
        found = datasets(f)
        tensors = {ds.attrs["name"]: p for p, ds in found.items() if ds.attrs["role"] != "param"}
        params = {ds.attrs["name"]: p for p, ds in found.items() if ds.attrs["role"] == "param"}
        assert set(tensors) == {t.name for t in qm.tensors} and len(tensors) == len(qm.tensors)  # complete map
        assert set(params) == {n for n, _ in per_channel_params(qm)}
        for p in found:
            assert all(SAFE_COMPONENT.match(c) for c in p.split("/")[1:]), p
        for t in qm.tensors:
            ds = f[tensors[t.name]]
            assert_same(ds[()], t.data, t.name)
            assert ds.attrs["scheme"] == t.scheme and ds.attrs["role"] == t.role
            if t.role == "packed":
                assert ds.attrs["word_bits"] == t.attrs["word_bits"] and ds.attrs["n"] == t.attrs["n"]
                assert ds.attrs["encoding"] == t.attrs["encoding"]
            if compressed and t.data.ndim and t.data.size > 1:
                assert ds.compression == "gzip"
        for q in qm.layers:
            g = f[tensors[q.weight]].parent
            assert g.attrs["qexport_layer"] == q.name and g.attrs["scheme"] == q.scheme
            assert g.attrs["bits"] == q.bits and g.attrs["weight"] == tensors[q.weight]
            for key, value in q.params.items():
                value = np.asarray(value)
                if value.ndim == 0:  # scalar parameters: attributes of their exact dtype
                    assert_same(np.asarray(g.attrs[key]), value, f"{q.name}.{key}")
                else:  # per-channel ones: datasets beside the codes
                    ds = f[g.attrs[f"{key}_dataset"]]
                    assert ds.parent.name == g.name and ds.attrs["name"] == f"{q.name}.{key}"
                    assert_same(ds[()], value, f"{q.name}.{key}")
    return {**tensors, **params}


def check_h5dump(path: Path, qm, paths: dict[str, str], full: bool) -> None:
    """h5dump shows the expected dtype, shape and attributes of every dataset and layer group, and
    the values of every dataset (full) or of the first quantized layer's arrays."""
    objs = parse_h5dump(h5dump(path, *(() if full else ("-A",))))  # -A: header and attributes only
    root = objs["/"]["attrs"]
    assert root["arch"]["data"] == [qm.model.arch] and root["source_sha256"]["type"] == "H5T_STRING"
    expected = {t.name: t.data for t in qm.tensors}
    expected.update(per_channel_params(qm))
    for name, value in expected.items():
        obj = objs[paths[name]]
        assert obj["type"] == H5DUMP_TYPES[str(value.dtype)], name
        assert obj["shape"] == value.shape, name
        assert obj["attrs"]["name"]["data"] == [name]
        if full:
            assert_h5dump_obj(obj, value, f"h5dump {name}")
    for q in qm.layers:
        group = objs[paths[q.weight].rpartition("/")[0] or "/"]
        for key, value in q.params.items():
            if np.ndim(value) == 0:
                assert_h5dump_obj(group["attrs"][key], np.asarray(value), f"h5dump {q.name}.{key}")
    if not full:
        q = next((q for q in qm.layers if q.weight), None)
        if q is None:  # float export: the first weight and the first vector
            wanted = [next(t.name for t in qm.tensors if t.data.ndim >= 2), next(t.name for t in qm.tensors if t.data.ndim == 1)]
        else:
            wanted = [q.weight] + ([q.bias] if q.bias in paths else [])
            wanted += [f"{q.name}.{k}" for k, v in q.params.items() if np.ndim(v)]
        args = [a for name in wanted for a in ("-d", paths[name])]
        objs = parse_h5dump(h5dump(path, *args))
        for name in wanted:
            assert_h5dump_obj(objs[paths[name]], expected[name], f"h5dump -d {name}")


@pytest.mark.parametrize("case", list(CASES))
def test_h5_round_trip(case, checkpoint, tmp_path):
    arch, kw = CASES[case]
    ckpt = checkpoint(arch)
    out = tmp_path / "model.h5"
    run_ok("h5", ckpt, "-o", out, *cli_args(kw))
    qm = expected_model(ckpt, kw)
    paths = check_h5(out, qm, ckpt)
    check_h5dump(out, qm, paths, full=arch in SMALL)
    first = qm.tensors[0].name  # groups mirror module names
    assert paths[first] == "/" + first.replace(".", "/")


def test_h5_module_groups(tmp_path):
    out = tmp_path / "l.h5"
    run_ok("h5", LENET, "-o", out, "--pack", "--bits", "1", "--no-alpha")
    qm = expected_model(LENET, {"bits": 1, "pack": True, "alpha": False})
    paths = check_h5(out, qm, LENET)
    assert paths["c1.weight"] == "/c1/weight" and paths["f6.bias"] == "/f6/bias"
    assert paths["c1.weight.packed"] == "/c1/weight_packed"  # beside the codes it packs
    with h5py.File(out) as f:
        packed = f["/c1/weight_packed"]
        assert packed.attrs["word_bits"] == 32 and packed.attrs["encoding"] == "1=+1,0=-1"
        assert f["/c1"].attrs["n"] == 25


@pytest.mark.parametrize("case", ["lenet-default", "twn-bits1-pack", "resnet-default-pack"])
def test_h5_compress(case, checkpoint, tmp_path):
    arch, kw = CASES[case]
    ckpt = checkpoint(arch)
    out = tmp_path / "c.h5"
    run_ok("h5", ckpt, "-o", out, "--compress", *cli_args(kw))
    qm = expected_model(ckpt, kw)
    paths = check_h5(out, qm, ckpt, compressed=True)
    check_h5dump(out, qm, paths, full=arch in SMALL)


def test_h5_default_output_name(tmp_path):
    shutil.copy(LENET, tmp_path / LENET.name)
    run_ok("h5", cwd=tmp_path)
    out = tmp_path / "lenet_digits.h5"
    qm = expected_model(LENET, {})
    check_h5dump(out, qm, check_h5(out, qm, LENET), full=True)


@pytest.mark.parametrize("bits", [None, 8])
def test_h5_hostile_names(bits, tmp_path):
    ckpt = make_names_checkpoint(tmp_path / "names.pth")
    kw = {"bits": bits} if bits else {}
    out = tmp_path / "names.h5"
    run_ok("h5", ckpt, "-o", out, *cli_args(kw))
    qm = expected_model(ckpt, kw)
    paths = check_h5(out, qm, ckpt)
    assert paths["1bad name/x.weight"] == "/1bad_name_x/weight"
    assert paths["."] != paths[".."] and "/./" not in paths["."] and "/../" not in paths["../etc/passwd"]
    assert paths["end"] != paths["end.weight"]
    text = h5dump(out)  # the tool reads every object of the file
    objs = parse_h5dump(text)
    for name, p in paths.items():
        assert p in objs and objs[p]["kind"] == "dataset", name


@pytest.mark.parametrize("args", [(), ("--compress",)])
def test_h5_deterministic(args, checkpoint, tmp_path):
    a, b = run_twice(tmp_path, "h5", checkpoint("twn_nin_gc"), "twn.h5", *args)
    assert a.read_bytes() == b.read_bytes()


def test_h5_failed_write_leaves_nothing(monkeypatch, tmp_path):
    from qexport.export import export

    out = tmp_path / "m.h5"
    export("h5", LENET, out)
    before = out.read_bytes()
    real, calls = h5py.Group.create_dataset, []

    def flaky(self, *args, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("fails on the fifth dataset")
        return real(self, *args, **kw)

    monkeypatch.setattr(h5py.Group, "create_dataset", flaky)
    with pytest.raises(Exception):
        export("h5", LENET, out, writer_options={"compress": True})
    assert out.read_bytes() == before
    calls.clear()
    with pytest.raises(Exception):
        export("h5", LENET, tmp_path / "fresh.h5")
    assert not (tmp_path / "fresh.h5").exists() and leftovers(tmp_path) == []


def test_h5_cli_errors(tmp_path):
    r = run_cli("h5", LENET, "-o", tmp_path / "missing" / "x.h5")
    assert r.returncode == 1 and "x.h5" in r.stderr and r.stderr.strip().count("\n") == 0
    (tmp_path / "adir").mkdir()
    r = run_cli("h5", LENET, "-o", tmp_path / "adir")
    assert r.returncode == 1 and "adir" in r.stderr and "Traceback" not in r.stderr
    assert list((tmp_path / "adir").iterdir()) == [] and leftovers(tmp_path) == []
    assert tree_bytes(tmp_path) == {}
