"""Issue 18, what a newcomer hits: every test drives the real CLI in a subprocess.

1. floats by default (as trained), `--plan seed` / `--bits` for codes, `golden` says it uses seed;
2. TorchScript archives refused with qexport's own one-line message and a fix;
3. CIFAR pickles written by Python 3 at protocols 0-5 convert to the same images;
4. `qexport --help` imports neither torch, numpy nor importlib.metadata (test_cli_foundation);
5. h5: a tensor name with an embedded NUL is sanitised, the original kept in the name map;
6. a same-shape LeNet under a tutorial's names gets a note naming lenet and the mapping;
7. dead channels (alpha below any m >> s) are exported as exact zeros, counted and named.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import LENET, run_cli

LENET_NAMES = ("c1", "c3", "c5", "f6", "output")
TUTORIAL_NAMES = ("conv1", "conv2", "conv3", "line", "output")


def lenet_state() -> dict:
    import torch

    return torch.load(LENET, weights_only=True)


def ok(*args, cwd=None):
    r = run_cli(*args, cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r


def one_line_error(r, code: int = 1) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def npy_arrays(folder: Path) -> dict[str, np.ndarray]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {a["name"]: np.load(folder / a["file"], allow_pickle=False) for a in manifest["arrays"]}


# --------------------------------------------------------------------------- 1. as trained


def test_default_export_is_the_float_checkpoint(tmp_path):
    from scipy.io import loadmat

    state = lenet_state()
    ok("mat", LENET, "-o", tmp_path / "m.mat")
    m = loadmat(tmp_path / "m.mat")
    for name, t in state.items():
        var = m[name.replace(".", "_")]
        assert var.dtype == np.float32, name
        np.testing.assert_array_equal(var.reshape(t.shape), t.numpy(), err_msg=name)

    r = ok("npy", LENET, "-o", tmp_path / "n")
    arrays = npy_arrays(tmp_path / "n")
    assert set(arrays) == set(state)
    for name, t in state.items():
        assert arrays[name].dtype == np.float32
        np.testing.assert_array_equal(arrays[name], t.numpy(), err_msg=name)
    assert "wrote" in r.stderr

    # --plan seed: LeNet's own plan (affine uint8 per tensor), recorded in the provenance
    ok("npy", LENET, "--plan", "seed", "-o", tmp_path / "s")
    seed = npy_arrays(tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert "--plan seed" in json.dumps(manifest)
    for layer in LENET_NAMES:
        w = state[f"{layer}.weight"].numpy().astype(np.float64)
        codes = seed[f"{layer}.weight"]
        assert codes.dtype == np.uint8
        lo, hi = min(w.min(), 0.0), max(w.max(), 0.0)
        scale = np.float32((hi - lo) / 255)  # README "Numerics": affine unsigned, computed here
        zp = np.clip(np.rint(-lo / np.float64(scale)), 0, 255)
        expected = np.clip(np.rint(w / np.float64(scale)) + zp, 0, 255)
        np.testing.assert_array_equal(codes, expected, err_msg=layer)
    # --bits 8 means what it always meant
    ok("npy", LENET, "--bits", "8", "-o", tmp_path / "b")
    for name, a in npy_arrays(tmp_path / "b").items():
        if name in seed:
            np.testing.assert_array_equal(a, seed[name], err_msg=name)


def test_default_keeps_bn_as_stored_and_nothing_folded(checkpoint, tmp_path):
    import torch

    path = checkpoint("vgg_cifar10_binary")
    state = torch.load(path, weights_only=True)
    ok("npy", path, "-o", tmp_path / "v")
    arrays = npy_arrays(tmp_path / "v")
    assert set(arrays) == set(state)  # no codes, thresholds, flips or alpha added; no BN absorbed
    for name, t in state.items():
        np.testing.assert_array_equal(arrays[name], t.numpy(), err_msg=name)
    ok("npy", path, "--plan", "seed", "-o", tmp_path / "s")
    seeded = npy_arrays(tmp_path / "s")
    assert {a.dtype for n, a in seeded.items() if n.endswith("features.0.weight")} == {np.dtype(np.int8)}


def test_plan_options_without_bits_or_plan_are_a_usage_error(tmp_path):
    line = one_line_error(run_cli("npy", LENET, "--per-channel", "-o", tmp_path / "x"), 2)
    assert "--per-channel" in line and "--plan seed" in line and "--bits" in line
    assert not (tmp_path / "x").exists()


def test_golden_uses_plan_seed_and_says_so(tmp_path):
    r = ok("golden", LENET, "--samples", "2", "-o", tmp_path / "g")
    assert "--plan seed" in r.stderr
    assert (tmp_path / "g").is_dir()


def test_inspect_shows_as_trained_size_and_seed_plan():
    r = ok("inspect", LENET)
    assert "as trained" in r.stdout and "with --plan seed" in r.stdout
    assert "affine uint8 per-tensor" in r.stdout
    n_bytes = sum(t.numel() * t.element_size() for t in lenet_state().values())
    assert f"{n_bytes / 1024:.1f} KiB written by default" in r.stdout


# --------------------------------------------------------------------------- 2. TorchScript


def test_torchscript_archive_refused_with_qexports_own_message(tmp_path):
    import torch

    ts = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(3, 2)).save(str(ts))  # never loaded back by the test
    for command in ("npy", "inspect"):
        line = one_line_error(run_cli(command, ts, *(["-o", tmp_path / "out"] if command == "npy" else [])))
        assert "scripted.pt" in line and "TorchScript" in line
        assert "torch.jit.load" in line and "state_dict()" in line and "torch.save" in line
        assert "weights_only" not in line and "arbitrary code" not in line
    assert not (tmp_path / "out").exists()


def test_other_refusals_use_qexports_text_not_torchs(tmp_path):
    data = LENET.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])  # a zip without its central directory
    line = one_line_error(run_cli("inspect", cut))
    assert "cut.pth" in line and "truncated or not a PyTorch checkpoint" in line and "again" in line
    assert "PytorchStreamReader" not in line and "weights_only" not in line


# --------------------------------------------------------------------------- 3. CIFAR


def _cifar_folder(root: Path, protocol: int, batches: dict) -> Path:
    folder = root / f"p{protocol}" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        d = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}  # fmt: skip
        with open(folder / name, "wb") as fh:
            pickle.dump(d, fh, protocol=protocol)
    return folder


def test_cifar_python3_pickles_at_every_protocol_give_the_same_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(18)
    names = [f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]
    batches = {n: (rng.integers(0, 256, (3, 3072), dtype=np.uint8), [int(x) for x in rng.integers(0, 10, 3)])
               for n in names}  # fmt: skip
    trees = {}
    for protocol in range(6):
        src = _cifar_folder(tmp_path, protocol, batches)
        if protocol <= 2:
            assert b"_codecs" in (src / "test_batch").read_bytes()  # the case the issue is about
        out = tmp_path / f"out{protocol}"
        ok("cifar-bmp", src, "-o", out)
        trees[protocol] = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.bmp"))}
    assert len(trees[0]) == 18
    for protocol in range(1, 6):
        assert trees[protocol] == trees[0], protocol
    # ... and they are the source pixels (train index is global over the five batches)
    for j, name in enumerate(names):
        data, labels = batches[name]
        for i in range(3):
            rel = f"test/{labels[i]}_{i}.bmp" if name == "test_batch" else f"train/{labels[i]}_{i + 3 * j}.bmp"
            with Image.open(io.BytesIO(trees[2][rel])) as im:
                rgb = np.asarray(im.convert("RGB"))
            np.testing.assert_array_equal(rgb, data[i].reshape(3, 32, 32).transpose(1, 2, 0), err_msg=rel)


def test_cifar_codecs_encode_with_another_encoding_is_refused(tmp_path):
    marker = tmp_path / "RAN"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    # _codecs.encode('x', 'rot13') then os.system: refused at the first, nothing runs
    raw = (b"\x80\x02}q\x00(X\x04\x00\x00\x00dataq\x01c_codecs\nencode\nq\x02X\x01\x00\x00\x00xX\x05\x00\x00\x00"
           b"rot13\x86q\x03Rq\x04X\x01\x00\x00\x00zcos\nsystem\nX" + len(f"touch {marker}").to_bytes(4, "little")
           + f"touch {marker}".encode() + b"\x85Ru.")  # fmt: skip
    (folder / "data_batch_1").write_bytes(raw)
    line = one_line_error(run_cli("cifar-bmp", folder, "-o", tmp_path / "out"))
    assert "data_batch_1" in line and "refused" in line and "rot13" in line
    assert not marker.exists() and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 5. h5 names


def test_h5_name_with_embedded_nul_is_sanitised_and_mapped(tmp_path):
    import h5py
    import torch

    weird = "a\x00b.weight"
    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    torch.save({weird: w, "ok.weight": torch.ones(2, 2)}, tmp_path / "nul.pth")
    ok("h5", tmp_path / "nul.pth", "-o", tmp_path / "nul.h5")
    with h5py.File(tmp_path / "nul.h5", "r") as f:
        names = dict((orig, path) for path, orig in json.loads(f.attrs["qexport_names"]))
        assert set(names) == {weird, "ok.weight"}
        ds = f[names[weird]]
        np.testing.assert_array_equal(ds[()], w.numpy())
        assert "\x00" not in names[weird] and ds.attrs["name"] == "a\\x00b.weight"


# --------------------------------------------------------------------------- 6. by shapes


def test_same_shape_lenet_under_tutorial_names_gets_a_note(tmp_path):
    import torch

    rename = dict(zip(LENET_NAMES, TUTORIAL_NAMES))
    state = lenet_state()
    tutorial = {rename[k.split(".")[0]] + "." + k.split(".")[1]: v for k, v in state.items()}
    torch.save(tutorial, tmp_path / "tutorial.pth")
    r = ok("inspect", tmp_path / "tutorial.pth")
    assert "architecture:  generic" in r.stdout
    note = [line for line in r.stdout.splitlines() if "note:" in line and "lenet" in line]
    assert len(note) == 1, r.stdout
    for old, new in zip(TUTORIAL_NAMES[:4], LENET_NAMES[:4]):
        assert f"{old} -> {new}" in note[0]
    # following the note (the mapping it names) gives a checkpoint the lenet reader claims
    back = {k.replace(k.split(".")[0], dict(zip(TUTORIAL_NAMES, LENET_NAMES))[k.split(".")[0]], 1): v
            for k, v in tutorial.items()}  # fmt: skip
    torch.save(back, tmp_path / "renamed.pth")
    assert "architecture:  lenet" in ok("inspect", tmp_path / "renamed.pth").stdout


# --------------------------------------------------------------------------- 7. dead channels


@pytest.fixture()
def dead_ckpt(tmp_path):
    import torch

    gen = torch.Generator().manual_seed(7)
    w = torch.randn(4, 3, 3, 3, generator=gen)
    w[1] = 1e-38 * torch.where(torch.randn(3, 3, 3, generator=gen) > 0, 1.0, -1.0)  # dead channel
    w[2] = w[2] * 1e-19  # pruned
    torch.save({"conv.weight": w, "fc.weight": torch.randn(5, 8, generator=gen)}, tmp_path / "dead.pth")
    return tmp_path / "dead.pth", w.numpy()


@pytest.mark.parametrize("bits", [1, 2])
def test_dead_channels_are_exact_zeros_counted_and_named(dead_ckpt, tmp_path, bits):
    path, w = dead_ckpt
    r = ok("npy", path, "--bits", str(bits), "-o", tmp_path / "n", "--report", tmp_path / "r.json")
    notes = [line for line in r.stderr.splitlines() if "exact zeros" in line]
    assert len(notes) == 1 and "conv" in notes[0] and "(1, 2)" in notes[0], r.stderr
    a = npy_arrays(tmp_path / "n")
    m, s, alpha = a["conv.multiplier"], a["conv.shift"], a["conv.alpha"]
    assert m[1] == m[2] == 0 and s[1] == s[2] == 0 and alpha[1] == alpha[2] == 0
    rows = w.reshape(4, -1).astype(np.float64)
    for c in (0, 3):  # the live channels keep their scale within --max-scale-error
        if bits == 1:
            expected = np.abs(rows[c]).mean()
        else:
            delta = np.float32(0.7 * np.abs(rows[c]).mean())
            expected = np.abs(rows[c][np.abs(rows[c]) > delta]).mean()
        assert m[c] > 0 and abs(m[c] / 2.0 ** s[c] - expected) / expected <= 0.01
    report = {row["layer"]: row for row in json.loads((tmp_path / "r.json").read_text())["layers"]}
    assert report["conv"]["dead_channels"] == 2 and report["fc"]["dead_channels"] == 0
    for command, extra in (("cheader", ()), ("mem", ())):
        out = tmp_path / f"{command}_out"
        ok(command, path, "--bits", str(bits), "-o", out, *extra)
        assert out.exists()


def test_scale_error_advice_names_only_fixes_that_work(dead_ckpt, tmp_path):
    path, _ = dead_ckpt
    # per-channel alpha with 1-bit multipliers: --mult-bits helps, --scale-shift cannot (per channel)
    opts = ("--bits", "1", "--only", "conv", "--mult-bits", "1", "--max-scale-error", "0.001")
    line = one_line_error(run_cli("npy", path, *opts, "-o", tmp_path / "x"))
    assert "layer conv" in line and "--mult-bits" in line and "--scale-shift" not in line
    for fix in line.split("; use ")[1].split(" or "):  # every fix it names makes the export work
        ok("npy", path, *opts, *fix.split(), "-o", tmp_path / f"y{fix.split()[0]}")
    # per tensor: --scale-shift is a fix for that layer
    line = one_line_error(run_cli("npy", path, "--bits", "1", "--per-tensor", "--mult-bits", "1",
                                  "--max-scale-error", "0.001", "-o", tmp_path / "z"))  # fmt: skip
    assert "--scale-shift" in line
