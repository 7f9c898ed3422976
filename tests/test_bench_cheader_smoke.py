"""benchmarks/bench_cheader.py runs (tiny N) and reports the ratio to `xxd -i` as JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT
from tools import require_tool


def test_bench_cheader_smoke(tmp_path):
    require_tool("xxd")
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_cheader.py"), "--n", "3000", "--repeat", "1",
                          "--json", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "ratio qexport/xxd" in res.stdout
    result = json.loads(out.read_text())
    assert result["n"] == 3000
    assert result["qexport_seconds"] > 0 and result["xxd_seconds"] > 0
    assert result["ratio_qexport_over_xxd"] == result["qexport_seconds"] / result["xxd_seconds"]
    # xxd writes 0x%02x plus separators for each byte; the header holds all 3000 values too
    assert result["xxd_bytes"] > 3000 * 5 and result["qexport_bytes"] > 3000 * 3
