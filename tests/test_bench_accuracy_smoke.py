"""benchmarks/bench_accuracy.py on a few digits of LeNet, so that the script cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_accuracy_runs_and_writes_json(tmp_path):
    out = tmp_path / "accuracy.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_accuracy.py"), "--arch", "lenet",
                           "--samples", "8", "--calibration", "8", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["results"]
    assert row["arch"] == "lenet" and row["samples"] == 8 and row["calibration_samples"] == 8
    assert row["plan"] == "--bits 8" and all(0 <= row[k] <= 1 for k in ("float", "planned", "integer"))
    assert "| lenet | `--bits 8` | 8 (cal. 8) |" in proc.stdout
