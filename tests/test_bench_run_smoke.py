"""benchmarks/run.py --tiny end to end: every operation issue 9 lists is measured and reported, in the
JSON and in the Markdown table, so that the one benchmark command cannot rot (no timing is asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

QUANTIZERS = ("affine per-tensor 8-bit", "affine per-channel 8-bit", "affine per-tensor 8-bit truncate", "binarize",
              "binary_alpha per-channel", "binarize + alpha", "ternarize per-channel", "ternarize per-tensor",
              "pack_binary 32-bit words")  # fmt: skip
CHECKPOINTS = ("resnet18", "vgg", "synthetic")


def test_bench_run_tiny(tmp_path):
    out, md = tmp_path / "latest.json", tmp_path / "table.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--tiny", "--json", str(out),
                           "--markdown", str(md), "--dir", str(tmp_path), "--cifar-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    meta, rows = report["meta"], {r["id"]: r for r in report["rows"]}
    assert meta["mode"] == "tiny" and meta["repeat"]["e2e"] == 1 and meta["duration_seconds"] > 0
    assert len(rows) == len(report["rows"])  # ids are unique

    # Every operation of issue 9, with the goal the issue sets (None: a ratio printed without a goal).
    params = {k: meta["checkpoints"][k]["params"] for k in CHECKPOINTS}
    writer_sizes = [w["params"] for w in report["details"]["data_writers"]]
    expected = {f"cheader_writer_{params['resnet18']}": 3.0, f"cheader_writer_{params['synthetic']}": 3.0,
                "startup_help": 2.5, "cifar_bmp": 2.0, "cifar_bmp_vs_atomic": None, "cifar_bmp_vs_pillow": None}  # fmt: skip
    for key in CHECKPOINTS:
        expected[f"e2e_cheader_{key}"] = None
        expected[f"peak_memory_{key}"] = 2.5
    for size, writers in zip(writer_sizes, (("mat", "npy", "npz", "h5", "txt"), ("mat", "npy", "npz", "h5"))):
        for name in writers:
            expected[f"writer_{name}_{size}"] = 0.2 if name == "txt" else 1.5
    for name in QUANTIZERS:
        expected[f"quantizer_{name.replace(' ', '_')}"] = 4.0
    assert len(set(writer_sizes)) == 2
    missing = set(expected) - set(rows)
    assert not missing, missing
    assert set(rows) - set(expected) <= {"startup_help_script"}

    for rid, goal in expected.items():
        r = rows[rid]
        assert r["goal"] == goal, rid
        assert r["met"] is (None if goal is None else bool(r["ratio"] <= goal)), rid
        assert r["reference"] > 0 and math.isclose(r["ratio"], r["ours"] / r["reference"]), rid
        if r["unit"] == "s":
            assert r["ours"] > 0, rid  # a real, positive timing
        else:  # peak memory: bytes above the import baseline, against the checkpoint's file size
            key = rid.removeprefix("peak_memory_")
            assert r["unit"] == "bytes" and r["reference"] == meta["checkpoints"][key]["file_bytes"]
            assert r["baseline_peak_bytes"] > 50 * 2**20  # the interpreter with torch imported
            assert r["ours"] == r["absolute_peak_bytes"] - r["baseline_peak_bytes"]
            assert r["reference_process_peak_bytes"] > 0

    # End to end: both sides ran on every checkpoint and wrote what they should.
    e2e = report["details"]["end_to_end"]["checkpoints"]
    for key in CHECKPOINTS:
        assert e2e[key]["output_bytes"]["reference"] == params[key]
        assert e2e[key]["output_bytes"]["ours"] > 4 * params[key]  # at least "  v," per quantized weight
        assert len(e2e[key]["runs"]["ours"]) == len(e2e[key]["runs"]["reference"]) == 1
    assert params["vgg"] > params["resnet18"] > params["synthetic"]

    # The Markdown table, on stdout and in --markdown, lists every row with its ratio.
    table = md.read_text()
    assert "| operation | ours | reference | ratio | goal | met? |" in table
    for r in report["rows"]:
        line = next((ln for ln in table.splitlines() if ln.startswith(f"| {r['operation']} |")), None)
        assert line is not None, r["operation"]
        assert f"| {r['ratio']:.2f}x |" in line
        assert line.endswith("| - |" if r["met"] is None else "| yes |" if r["met"] else "| **no** |")
        assert line in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "table.md"]  # scratch removed
