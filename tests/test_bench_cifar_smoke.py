"""benchmarks/bench_cifar.py runs end to end at a tiny size and reports the three timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_cifar_smoke(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_cifar.py"), "--n", "200", "--runs", "1",
                        "--json", str(out), "--dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["n"] == 200 and result["runs"] == 1
    assert {"floor", "qexport", "pillow"} <= set(result["timings"])
    for timing in result["timings"].values():
        assert timing["median_s"] > 0 and len(timing["all_s"]) == 1
        assert timing["images_per_s"] == 200 / timing["median_s"]
    assert result["ratio_to_floor"]["floor"] == 1.0
    for method in result["timings"]:
        assert f"\n{method} " in r.stdout  # the table
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # the scratch folder was removed
