"""benchmarks/fuzz.py on a tiny budget, so that the script cannot rot, and its bookkeeping: a
target that raises something other than a QexportError is reported as a failure, with its input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import strategies as st

from conftest import import_file

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "fuzz.py"


def test_fuzz_script_runs_and_writes_json(tmp_path):
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--examples", "40", "--json", str(out),
                           "--crashes", str(tmp_path / "crashes")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["benchmark"] == "fuzz" and report["budget"] == {"examples": 40}
    assert set(report["targets"]) == {"checkpoint", "cifar"}
    for name, r in report["targets"].items():
        assert r["inputs_tried"] == 40 and sum(r["outcomes"].values()) == 40
        assert r["outcomes"]["failure"] == 0 and r["failures"] == []
        assert r["outcomes"]["error"] > 0  # most mutations are caught as clean errors
        assert f"{name} " in proc.stdout
    assert not (tmp_path / "crashes").exists()


def test_a_raw_exception_is_a_failure(tmp_path):
    fuzz = import_file(SCRIPT, "qexport_bench_fuzz")

    def run(blob: bytes) -> str:  # a target: "ok", "error" (a QexportError was raised), or a bug
        if blob.startswith(b"\xff"):
            raise IndexError("boom")
        return "error" if blob.startswith(b"\x00") else "ok"

    target = fuzz.Target("t", st.binary(min_size=1, max_size=4), run, tmp_path / "crashes", slow=60.0)
    for blob in (b"\xff\x01", b"\x00", b"ok"):
        target.one(blob)
    r = target.report()
    assert r["inputs_tried"] == 3 and r["outcomes"] == {"ok": 1, "error": 1, "failure": 1}
    assert r["failures"][0]["exception"] == "IndexError: boom"
    assert Path(r["failures"][0]["input"]).read_bytes() == b"\xff\x01"
    target.fuzz(examples=5, seconds=None)  # the hypothesis-driven loop stops at the budget
    assert target.report()["inputs_tried"] == 5
