"""benchmarks/bench_startup.py with a few runs, so that the script cannot rot (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_startup_runs_and_writes_json(tmp_path):
    out = tmp_path / "startup.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_startup.py"), "--runs", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["benchmark"] == "startup" and report["runs"] == 2 and report["goal"] == 2.5
    by_name = {r["name"]: r for r in report["results"]}
    assert by_name["python -c pass"]["argv"] == [sys.executable, "-c", "pass"]
    assert by_name["python -m qexport.cli --help"]["argv"] == [sys.executable, "-m", "qexport.cli", "--help"]
    assert by_name["python -m qexport.cli --help"]["judged"] and isinstance(report["met"], bool)
    for r in report["results"]:
        assert len(r["runs"]) == 2 and r["seconds"] > 0 and f"| {r['name']}" in proc.stdout
    assert by_name["python -c pass"]["ratio"] == 1.0
