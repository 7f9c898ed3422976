"""`qexport npy`: folders of .npy + manifest.json and .npz archives, read back with
numpy.load(allow_pickle=False) and compared exactly with the QuantizedModel computed in the test."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import LENET, run_cli
from datawriters_support import (CASES, assert_same, cli_args, expected_model, leftovers, make_names_checkpoint,
                                 per_channel_params, run_ok, run_twice, sha256, tree_bytes)  # fmt: skip


def expected_arrays(qm) -> list[tuple[str, str, np.ndarray]]:
    out = [("tensor", t.name, t.data) for t in qm.tensors]
    return out + [("param", name, value) for name, value in per_channel_params(qm)]


def expected_value(qm, entry: dict) -> np.ndarray:
    """The array a manifest entry must hold, looked up in the model computed by the test."""
    if entry["kind"] == "tensor":
        return qm.tensor(entry["name"]).data
    return dict(per_channel_params(qm))[entry["name"]]


def check_manifest(text: str, qm, ckpt) -> dict:
    manifest = json.loads(text)
    # sorted keys and a fixed indentation: the file is canonical
    assert text == json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    assert manifest["provenance"]["source_sha256"] == sha256(ckpt)
    assert manifest["provenance"]["arch"] == qm.model.arch
    entries = manifest["arrays"]
    # tensors in the model's order, then every per-channel parameter (in any order)
    assert [(e["kind"], e["name"]) for e in entries[: len(qm.tensors)]] == [("tensor", t.name) for t in qm.tensors]
    assert sorted((e["kind"], e["name"]) for e in entries) == sorted((k, n) for k, n, _ in expected_arrays(qm))
    files = [e["file"] for e in entries]
    assert len({f.lower() for f in files}) == len(files)
    for e in entries:
        value = expected_value(qm, e)
        assert e["dtype"] == str(value.dtype) and e["shape"] == list(value.shape)
        assert "/" not in e["file"] and not e["file"].startswith(".") and e["file"].endswith(".npy")
    for t, e in zip(qm.tensors, entries):
        assert e["scheme"] == t.scheme and e["role"] == t.role and e["layout"] == t.layout
        if t.role == "packed":
            assert e["attrs"]["word_bits"] == t.attrs["word_bits"] and e["attrs"]["n"] == t.attrs["n"]
            assert e["attrs"]["encoding"] == t.attrs["encoding"]
    assert [layer["name"] for layer in manifest["layers"]] == [q.name for q in qm.layers]
    for q, layer in zip(qm.layers, manifest["layers"]):
        assert layer["scheme"] == q.scheme and layer["bits"] == q.bits and layer["per_channel"] == q.per_channel
        assert set(layer["params"]) == set(q.params)
        for key, value in q.params.items():
            value = np.asarray(value)
            p = layer["params"][key]
            assert p["dtype"] == str(value.dtype)
            if value.ndim == 0:
                assert_same(np.asarray(p["value"], dtype=p["dtype"]), value, f"{q.name}.{key}")
            else:
                assert p["file"] == next(e["file"] for e in entries if e["name"] == f"{q.name}.{key}")
    return manifest


def check_folder(folder: Path, qm, ckpt) -> dict:
    manifest = check_manifest((folder / "manifest.json").read_text(encoding="ascii"), qm, ckpt)
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted([e["file"] for e in manifest["arrays"]] + ["manifest.json"])
    for e in manifest["arrays"]:
        assert_same(np.load(folder / e["file"], allow_pickle=False), expected_value(qm, e), e["name"])
    return manifest


def check_npz(path: Path, qm, ckpt) -> dict:
    with np.load(path, allow_pickle=False) as z:
        manifest = check_manifest(z["manifest.json"].decode("ascii"), qm, ckpt)
        assert sorted(z.files) == sorted([e["file"][: -len(".npy")] for e in manifest["arrays"]] + ["manifest.json"])
        for e in manifest["arrays"]:
            assert_same(z[e["file"][: -len(".npy")]], expected_value(qm, e), e["name"])
    return manifest


@pytest.mark.parametrize("case", list(CASES))
def test_npy_round_trip(case, checkpoint, tmp_path):
    arch, kw = CASES[case]
    ckpt = checkpoint(arch)
    out = tmp_path / "out_npy"
    run_ok("npy", ckpt, "-o", out, *cli_args(kw))
    check_folder(out, expected_model(ckpt, kw), ckpt)


@pytest.mark.parametrize("case", ["lenet-default", "twn-bits1-pack", "resnet-default-pack", "mobilenet-default"])
@pytest.mark.parametrize("compress", [False, True])
def test_npz_round_trip(case, compress, checkpoint, tmp_path):
    arch, kw = CASES[case]
    ckpt = checkpoint(arch)
    out = tmp_path / "out.npz"
    run_ok("npy", ckpt, "-o", out, "--npz", *(["--compress"] if compress else []), *cli_args(kw))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]
    check_npz(out, expected_model(ckpt, kw), ckpt)
    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED}


def test_npy_default_output_names(tmp_path):
    shutil.copy(LENET, tmp_path / LENET.name)
    run_ok("npy", cwd=tmp_path)
    run_ok("npy", "--npz", cwd=tmp_path)
    qm = expected_model(LENET, {})
    check_folder(tmp_path / "lenet_digits_npy", qm, LENET)
    check_npz(tmp_path / "lenet_digits.npz", qm, LENET)


@pytest.mark.parametrize("bits", [None, 8])
def test_npy_hostile_names(bits, tmp_path):
    ckpt = make_names_checkpoint(tmp_path / "names.pth")
    kw = {"bits": bits} if bits else {}
    run_ok("npy", ckpt, "-o", tmp_path / "names_npy", *cli_args(kw))
    run_ok("npy", ckpt, "-o", tmp_path / "names.npz", "--npz", *cli_args(kw))
    qm = expected_model(ckpt, kw)
    manifest = check_folder(tmp_path / "names_npy", qm, ckpt)
    check_npz(tmp_path / "names.npz", qm, ckpt)
    by_name = {e["name"]: e["file"] for e in manifest["arrays"]}
    assert by_name["../etc/passwd"] == "_etc_passwd.npy" and not (tmp_path / "etc").exists()
    assert by_name["manifest"] != "manifest.json"
    assert by_name["case.weight"].lower() != by_name["CASE.weight"].lower()


@pytest.mark.parametrize("args", [(), ("--npz",), ("--npz", "--compress")])
def test_npy_deterministic(args, checkpoint, tmp_path):
    name = "twn.npz" if "--npz" in args else "twn_npy"
    a, b = run_twice(tmp_path, "npy", checkpoint("twn_nin_gc"), name, *args)
    ta = tree_bytes(a)
    assert ta and ta == tree_bytes(b)


@pytest.mark.parametrize("npz", [False, True])
def test_npy_failed_write_leaves_nothing(npz, monkeypatch, tmp_path):
    from qexport.export import export

    out = tmp_path / ("m.npz" if npz else "m_npy")
    export("npy", LENET, out, writer_options={"npz": npz})
    before = tree_bytes(out)
    from qexport.writers import npy as npy_writer

    real, calls = npy_writer.write_npy, []

    def flaky(fp, array):
        calls.append(1)
        if len(calls) == 3:
            fp.write(b"\x93NUMPY partial")
            raise RuntimeError("fails in the third array")
        return real(fp, array)

    monkeypatch.setattr(npy_writer, "write_npy", flaky)
    with pytest.raises(RuntimeError):
        export("npy", LENET, out, writer_options={"npz": npz}, bits=4)
    assert tree_bytes(out) == before
    calls.clear()
    fresh = tmp_path / ("f.npz" if npz else "f_npy")
    with pytest.raises(RuntimeError):
        export("npy", LENET, fresh, writer_options={"npz": npz})
    assert not fresh.exists() and leftovers(tmp_path) == []


def test_npy_cli_errors(tmp_path):
    r = run_cli("npy", LENET, "-o", tmp_path / "x_npy", "--compress")
    assert r.returncode == 2 and "--npz" in r.stderr
    (tmp_path / "afile").write_text("keep me")
    r = run_cli("npy", LENET, "-o", tmp_path / "afile")
    assert r.returncode == 1 and "afile" in r.stderr and r.stderr.strip().count("\n") == 0
    assert (tmp_path / "afile").read_text() == "keep me"
    r = run_cli("npy", LENET, "-o", tmp_path / "missing" / "y.npz", "--npz")
    assert r.returncode == 1 and "y.npz" in r.stderr and "Traceback" not in r.stderr
    assert leftovers(tmp_path) == [] and not (tmp_path / "x_npy").exists()
