"""benchmarks/bench_quantizers.py on a tiny array, so that the script cannot rot (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quantizers_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_quantizers.py"), "--n", "6000", "--rows", "3",
                           "--repeat", "2", "--threads", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["benchmark"] == "quantizers" and report["n"] == 6000 and report["shape"] == [3, 2000]
    assert report["primary_floor"] == "w * 2" and report["threads"] == 2
    assert {"w * 2", "w.astype(uint8)", "codes * 2"} <= set(report["floors"])
    names = [r["name"] for r in report["results"]]
    for expected in ("affine per-tensor 8-bit", "affine per-channel 8-bit", "binarize", "binarize + alpha",
                     "ternarize per-channel", "pack_binary 32-bit words"):  # fmt: skip
        assert expected in names
    for r in report["results"]:
        assert len(r["runs"]) == 2 and r["seconds"] > 0 and r["ratio"] > 0 and r["goal"] == 4.0
        assert r["judged_against"] in r["floors"] and isinstance(r["met"], bool)
        assert r["ratio"] == r["seconds"] / r["floors"][r["judged_against"]]["seconds"]
        assert f"| {r['name']}" in proc.stdout
    assert "goal" in proc.stdout and "w * 2" in proc.stdout
