"""benchmarks/bench_csource.py --tiny runs (LeNet, 2 images) and its table agrees with its JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT
from tools import require_tool


def test_bench_csource_smoke(tmp_path):
    for tool in ("gcc", "arm-none-eabi-gcc", "arm-none-eabi-size"):
        require_tool(tool)
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_csource.py"), "--tiny", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(out.read_text())
    assert row["arch"] == "lenet" and row["images"] == 2 and row["nodes"] == 8
    # flash of the Cortex-M4 object holds at least the parameters; bss the arena (+ the hook pointer)
    assert row["parameter_bytes"] <= row["m4_text"] and row["arena_bytes"] <= row["m4_bss"] <= row["arena_bytes"] + 16
    assert all(row[k] > 0 for k in ("c_per_s", "numpy_int_per_s", "numpy_float_plan_per_s", "torch_float_per_s"))
    assert f"| lenet | {row['c_per_s']:.1f} |" in res.stdout
