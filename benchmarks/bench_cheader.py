"""Benchmark: `qexport cheader` formatting N int8 codes vs `xxd -i` on the same N raw bytes.

    python benchmarks/bench_cheader.py [--n 8000000] [--repeat 3] [--json result.json]

Both sides write a C array of the same N bytes to a file: qexport through its writer (the whole
header: provenance, macros, aligned `static const int8_t` array in decimal), xxd through
`xxd -i raw.bin > out.h` (a subprocess, as a user would run it).  The sides alternate, --repeat
runs each, each into a fresh file; the medians are kept and the ratio is qexport time / xxd time
(below 1: qexport is faster).  benchmarks/run.py uses this same function.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_qmodel(codes: np.ndarray):
    from qexport.encode.arrange import arrange
    from qexport.encode.options import EncodeOptions
    from qexport.model import ExportTensor, Model, PlanOptions, QuantizedModel, QuantPlan, Source, frozen_map

    model = Model("generic", frozen_map({"codes": codes}), (), Source("bench.pth", "0" * 64, int(codes.nbytes)),
                  has_graph=False)  # fmt: skip
    tensor = ExportTensor("codes", codes, None, "weight", "int8", "c")
    return arrange(QuantizedModel(model, QuantPlan((), PlanOptions()), (tensor,), (), options_text="--bench"),
                   EncodeOptions())


def run(n: int, repeat: int, folder: Path | None = None) -> dict:
    """Both sides `repeat` times, interleaved, each run into a fresh output file (as a first export
    writes); medians are reported, every run is kept in "runs"."""
    from qexport.writers.cheader import WRITER

    xxd = shutil.which("xxd")
    if not xxd:
        raise SystemExit("bench_cheader: xxd not found (apt-get install xxd)")
    codes = np.random.default_rng(0).integers(-128, 128, size=n, dtype=np.int8)
    q = synthetic_qmodel(codes)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        work = Path(tmp)
        raw = work / "codes.bin"
        raw.write_bytes(codes.tobytes())
        header, xxd_out = work / "codes.h", work / "codes_xxd.h"

        def qexport_once():
            WRITER.write(q, header)

        def xxd_once():
            with open(xxd_out, "wb") as fh:
                subprocess.run([xxd, "-i", raw.name], cwd=work, stdout=fh, check=True)

        if repeat > 1 and n < 20_000_000:
            qexport_once(), xxd_once()  # warm-up (lookup tables, file cache); not worth its time on the biggest N
        runs = {"qexport": [], "xxd": []}
        for _ in range(repeat):
            for side, fn, target in (("qexport", qexport_once, header), ("xxd", xxd_once, xxd_out)):
                target.unlink(missing_ok=True)
                start = time.perf_counter()
                fn()
                runs[side].append(time.perf_counter() - start)
        size_q, size_x = header.stat().st_size, xxd_out.stat().st_size
    t_q, t_x = statistics.median(runs["qexport"]), statistics.median(runs["xxd"])
    return {
        "n": n,
        "repeat": repeat,
        "runs": runs,
        "qexport_seconds": t_q,
        "xxd_seconds": t_x,
        "ratio_qexport_over_xxd": t_q / t_x if t_x > 0 else float("inf"),
        "qexport_bytes": size_q,
        "xxd_bytes": size_x,
        "qexport_mb_per_s": n / t_q / 1e6 if t_q > 0 else float("inf"),
        "xxd_mb_per_s": n / t_x / 1e6 if t_x > 0 else float("inf"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8_000_000, help="number of int8 codes (default 8000000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the median is kept (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        parser.error("--n and --repeat must be >= 1")
    result = run(args.n, args.repeat)
    print(f"N = {result['n']} int8 codes (median of {result['repeat']})")
    print(f"  qexport cheader: {result['qexport_seconds']:.4f} s  {result['qexport_mb_per_s']:.1f} M values/s  "
          f"{result['qexport_bytes']} bytes")  # fmt: skip
    print(f"  xxd -i:          {result['xxd_seconds']:.4f} s  {result['xxd_mb_per_s']:.1f} M values/s  "
          f"{result['xxd_bytes']} bytes")  # fmt: skip
    print(f"  ratio qexport/xxd: {result['ratio_qexport_over_xxd']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
