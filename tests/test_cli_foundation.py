"""Foundation CLI: --version, --help and formats without torch, inspect, default MODEL, bad input,
and a third-party plugin registered through a real entry point."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import LENET, ROOT, run_cli
from qexport import __version__


def _modules_after(argv: list[str]) -> set[str]:
    code = textwrap.dedent(f"""
        import sys
        from qexport.cli import cli
        try:
            cli.main(args={argv!r}, prog_name="qexport", standalone_mode=False)
        except SystemExit:
            pass
        print("MODULES: " + " ".join(sorted(sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.strip().splitlines()[-1].removeprefix("MODULES: ").split())


@pytest.mark.parametrize("argv", [["--help"], ["formats"], ["--version"], ["mat", "--help"]])
def test_startup_does_not_import_torch(argv):
    mods = _modules_after(argv)
    assert "click" in mods  # the probe really ran the CLI
    assert "torch" not in mods
    if argv in (["--help"], ["--version"]):
        assert "numpy" not in mods
        # issue 18: importlib.metadata (~40 ms) is for plugin discovery by commands, not for --help
        assert "importlib.metadata" not in mods
        assert not any(m.startswith(("qexport.commands", "qexport.export", "qexport.readers", "qexport.writers"))
                       for m in mods)  # fmt: skip


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and __version__ in r.stdout
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("mat", "txt", "npy", "h5", "cheader", "onnx", "mem", "inspect", "formats", "cifar-bmp", "golden"):
        assert f"  {cmd} " in r.stdout


def test_formats_lists_builtins():
    r = run_cli("formats")
    assert r.returncode == 0
    for name in ("lenet", "vgg_cifar10_binary", "twn_nin_gc", "resnet18_bnn", "mobilenet_v1", "generic",
                 "mat", "txt", "npy", "h5", "cheader", "onnx", "mem"):  # fmt: skip
        assert f"  {name} " in r.stdout


def test_inspect_lenet():
    r = run_cli("inspect", LENET)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "architecture:  lenet" in out
    assert "c5.weight" in out and "(120, 16, 5, 5)" in out and "float32" in out
    assert "affine uint8 per-tensor" in out
    assert "parameters:    61706" in out
    # sizes of the same count under each scheme: float32 = 4 bytes, 2-bit = n/4 bytes
    assert "float32 241.0 KiB" in out and "2-bit 15.1 KiB" in out


def test_inspect_shows_metadata_and_plan_override(checkpoint):
    r = run_cli("inspect", checkpoint("vgg_cifar10_binary", "binarynet"), "--bits", "2", "--only", "features.*")
    assert r.returncode == 0, r.stderr
    assert "epoch=42" in r.stdout and "best_prec1=88.5" in r.stdout
    assert "ternary per-channel" in r.stdout


def test_model_defaults_to_the_one_checkpoint_in_cwd(tmp_path):
    (tmp_path / "only.pth").write_bytes(LENET.read_bytes())
    r = run_cli("inspect", cwd=tmp_path)
    assert r.returncode == 0 and "using only.pth" in r.stderr
    (tmp_path / "second.pt").write_bytes(LENET.read_bytes())
    r = run_cli("inspect", cwd=tmp_path)
    assert r.returncode == 2 and "several checkpoints" in r.stderr


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    import torch

    from qexport.models import build

    cases = {}
    cases["missing"] = (tmp / "missing.pth", "no such file")
    (tmp / "adir.pth").mkdir()
    cases["directory"] = (tmp / "adir.pth", "is a directory")
    (tmp / "empty.pth").write_bytes(b"")
    cases["empty file"] = (tmp / "empty.pth", "file is empty")
    good = LENET.read_bytes()
    (tmp / "trunc.pth").write_bytes(good[: len(good) // 2])
    cases["truncated"] = (tmp / "trunc.pth", "truncated")
    (tmp / "random.pth").write_bytes(os.urandom(4096))
    cases["random bytes"] = (tmp / "random.pth", "checkpoint")
    (tmp / "plain.pkl").write_bytes(pickle.dumps({"a": [1, 2, 3]}))
    cases["plain pickle"] = (tmp / "plain.pkl", "not a PyTorch checkpoint")
    torch.save({}, tmp / "emptydict.pth")
    cases["empty state_dict"] = (tmp / "emptydict.pth", "empty")
    state = torch.load(LENET, weights_only=True)
    state["c3.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp / "nan.pth")
    cases["nan"] = (tmp / "nan.pth", "'c3.weight' has 1 non-finite")
    state["c3.weight"][0, 0, 0, 0] = float("inf")
    torch.save(state, tmp / "inf.pth")
    cases["inf"] = (tmp / "inf.pth", "'c3.weight' has 1 non-finite")
    torch.save(build("lenet"), tmp / "whole.pth")
    cases["whole module"] = (tmp / "whole.pth", "refused")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "evil": Payload(tmp / "MARKER")}, tmp / "payload.pth")
    cases["reduce payload"] = (tmp / "payload.pth", "refused")
    return cases


def test_bad_inputs_give_one_line_and_exit_1(tmp_path):
    for label, (path, expected) in _bad_inputs(tmp_path).items():
        r = run_cli("inspect", path)
        assert r.returncode == 1, (label, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, (label, r.stderr)
        assert path.name in lines[0] and expected in lines[0], (label, lines[0])
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "MARKER").exists()  # the payload was never executed


def test_debug_shows_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "qexport.cli", "--debug", "inspect", str(tmp_path / "nope.pth")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_third_party_plugin_through_entry_points(tmp_path):
    """A fake installed distribution registers a reader and a writer; both are listed and used."""
    site = tmp_path / "site"
    (site / "fakeplug-1.0.dist-info").mkdir(parents=True)
    (site / "fakeplug-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n")
    (site / "fakeplug-1.0.dist-info" / "entry_points.txt").write_text(
        "[qexport.writers]\ncsvsum = fakeplug:WRITER\n\n[qexport.readers]\ntinynet = fakeplug:READER\n"
    )
    (site / "fakeplug.py").write_text(textwrap.dedent("""
        from qexport.writers.base import WriterPlugin
        from qexport.readers.base import Detection, ReaderPlugin
        from qexport.readers.generic import build as generic_build

        def write(qmodel, path, **opts):
            with open(path, "w") as fh:
                for t in qmodel.tensors:
                    fh.write(f"{t.name},{t.data.dtype},{int(t.data.astype('int64').sum())}\\n")

        WRITER = WriterPlugin("csvsum", "sums as CSV", write, ".csv")

        def detect(state):
            ok = set(state) == {"tiny.weight"}
            return Detection("tinynet", ok, 1.0 if ok else 0.0)

        def build(ckpt, det):
            from dataclasses import replace
            return replace(generic_build(ckpt, det), arch="tinynet")

        READER = ReaderPlugin("tinynet", "a tiny test net", detect, build, lambda m: {})
    """))
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{ROOT}")
    r = run_cli("formats", env=env)
    assert r.returncode == 0, r.stderr
    assert "csvsum" in r.stdout and "plugin (fakeplug)" in r.stdout and "tinynet" in r.stdout
    r = run_cli("--help", env=env)
    assert "csvsum" in r.stdout

    import torch

    torch.save({"tiny.weight": torch.full((2, 3), 2.0)}, tmp_path / "tiny.pth")
    r = run_cli("inspect", tmp_path / "tiny.pth", env=env)
    assert r.returncode == 0 and "architecture:  tinynet" in r.stdout, r.stderr
    r = run_cli("csvsum", tmp_path / "tiny.pth", "-o", tmp_path / "out.csv", "--bits", "8", env=env)
    assert r.returncode == 0, r.stderr
    # --bits 8 on a constant 2.0 tensor: exact constant rule -> every code is 1 (scale 2.0)
    assert (tmp_path / "out.csv").read_text() == "tiny.weight,uint8,6\n"


@pytest.mark.parametrize("writer, suffix", [("cheader", ".h"), ("onnx", ".onnx")])
def test_cli_and_library_record_the_same_options(writer, suffix, tmp_path):
    """The CLI passes every option (defaults included); provenance records only non-defaults, so
    the same effective options give the same bytes from the CLI and from `qexport.export.export`."""
    from qexport.export import export

    (tmp_path / "cli").mkdir()
    (tmp_path / "lib").mkdir()
    r = run_cli(writer, "--bits", "8", "--word-bits", "32", LENET, "-o", tmp_path / "cli" / f"m{suffix}")
    assert r.returncode == 0, r.stderr
    export(writer, LENET, tmp_path / "lib" / f"m{suffix}", bits=8)
    cli, lib = (tmp_path / d / f"m{suffix}" for d in ("cli", "lib"))
    assert cli.read_bytes() == lib.read_bytes()
    assert b"--bits 8" in lib.read_bytes() and b"--word-bits" not in lib.read_bytes()


def test_bad_output_folder_is_reported_before_loading(tmp_path):
    """The output folder is checked before the (possibly slow) load: with a checkpoint that would
    fail to load, the error is still the output's."""
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    r = run_cli("cheader", garbage, "-o", tmp_path / "missing" / "m.h")
    assert r.returncode == 1 and "output folder" in r.stderr and "missing" in r.stderr
    r = run_cli("txt", LENET, "--report", tmp_path / "missing" / "r.json", "-o", tmp_path / "out")
    assert r.returncode == 1 and "r.json" in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["golden", "inspect"])
def test_golden_and_inspect_check_their_outputs_before_loading(command, tmp_path):
    """golden (-o, --report) and inspect (--report) go through the same preparation as the
    writers: with a checkpoint that would fail to load, the error is the output folder's."""
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    args = ["--report", tmp_path / "missing" / "r.json"]
    if command == "golden":
        args = ["-o", tmp_path / "missing" / "g"]
    r = run_cli(command, garbage, *args)
    assert r.returncode == 1 and "output folder" in r.stderr and "missing" in r.stderr, r.stderr
    assert "garbage.pth" not in r.stderr  # the checkpoint was never read


def test_options_text_keeps_zero_values():
    from qexport.prepare import options_text

    assert options_text({"max_scale_error": 0.0, "bits": 8, "per_channel": False, "only": ()}) == \
        "--bits 8 --max-scale-error 0.0"
    assert options_text({"max_scale_error": 0.01, "keep_float": ("f6",)}) == "--keep-float f6"
