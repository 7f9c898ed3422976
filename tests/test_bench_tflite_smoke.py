"""benchmarks/bench_tflite.py on a few digits of LeNet, so that the script cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_tflite_runs_and_writes_json(tmp_path):
    out = tmp_path / "tflite.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_tflite.py"), "--arch", "lenet",
                           "--samples", "8", "--calibration", "8", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["results"]
    assert row["arch"] == "lenet" and row["samples"] == 8 and row["calibration_samples"] == 8
    assert row["tflm_equal"] == 8 and row["tflite_bytes"] > 10_000 and row["arena_bytes"] > 1_000
    assert all(0 <= row[k] <= 1 for k in ("float", "tflite_int8"))
    assert "| lenet | `--bits 8` | 8 (cal. 8) |" in proc.stdout
