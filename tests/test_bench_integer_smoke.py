"""benchmarks/bench_integer.py at tiny widths and batch, so that the script cannot rot (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_integer_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_integer.py"), "--tiny", "--batch", "2",
                           "--runs", "1", "--arch", "lenet", "--arch", "resnet18", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["batch"] == 2 and report["runs"] == 1 and report["goal"] == 10.0
    assert set(report["rows"]) == {"lenet", "resnet18"}
    for name, row in report["rows"].items():
        assert row["integer_s"] > 0 and row["torch_s"] > 0 and row["ratio"] == row["integer_s"] / row["torch_s"]
        assert len(row["all_s"]["integer"]) == 1
        assert f"\n{name} " in proc.stdout  # the table
