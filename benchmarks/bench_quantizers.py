"""Quantizers on N float32 weights vs a plain numpy pass over the same array (issue 9).

    python benchmarks/bench_quantizers.py                 # 100 M weights, shape (1000, 100000)
    python benchmarks/bench_quantizers.py --n 1000000 --repeat 3 --json out.json

Floors (medians of the same number of runs, measured in the same process):
    w * 2               one read of the float32 array and one float32 write into a new array:
                        the PRIMARY floor, "a plain numpy pass over the same array"; the goal
                        (each quantizer <= 4x this floor) is judged against it.
    w.astype(np.uint8)  one read and a one-byte-per-element write: the same output size as the
                        8-bit codes; shown for comparison.
    codes * 2           (packing only) one pass over the int8 codes that packing reads: packing
                        never touches the float weights, so its goal is judged against this
                        (stricter) floor; its ratio to w * 2 is shown too.
Each operation and floor first runs once untimed (on this VM the first touch of memory the
process has not used before costs several times a plain pass: ~0.2 s per 100 MB), then each
repeat times the floors and then the operation back to back, so that every ratio compares
runs made under the same machine load; the table gives the median time of each and the ratio of
the medians.  Every operation runs through the public quantizer functions with the default
thread count (QEXPORT_THREADS overrides it; --threads sets it here).  The qexport package is the
one Python imports (the checkout when run from it; PYTHONPATH can point at another checkout to
measure an older version in the same conditions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

try:
    import qexport  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qexport.encode import pack  # noqa: E402
from qexport.quantize import affine, binary, ternary  # noqa: E402

GOAL = 4.0


def timed(fn, repeat: int) -> list[float]:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
        del result
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000_000, help="number of weights (default 100 M)")
    ap.add_argument("--rows", type=int, default=1000, help="output channels (rows); n is rounded to a multiple")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement; the median is reported")
    ap.add_argument("--threads", type=int, default=None, help="worker threads (default: QEXPORT_THREADS or all cores)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON to this path")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads is not None:
        os.environ["QEXPORT_THREADS"] = str(args.threads)
    rows = max(1, min(args.rows, args.n))
    cols = max(1, args.n // rows)
    rng = np.random.default_rng(args.seed)
    w = rng.standard_normal((rows, cols), dtype=np.float32)
    w *= np.float32(0.05)
    n = w.size
    codes = binary.binarize(w)

    floor_fns = {"w * 2": lambda: w * 2, "w.astype(uint8)": lambda: w.astype(np.uint8), "codes * 2": lambda: codes * 2}
    ops = [
        ("affine per-tensor 8-bit", lambda: affine.affine_quantize(w, 8, per_channel=False), "w * 2"),
        ("affine per-channel 8-bit", lambda: affine.affine_quantize(w, 8, per_channel=True), "w * 2"),
        ("affine per-tensor 8-bit truncate", lambda: affine.affine_quantize(w, 8, zero_point="truncate"), "w * 2"),
        ("binarize", lambda: binary.binarize(w), "w * 2"),
        ("binary_alpha per-channel", lambda: binary.binary_alpha(w), "w * 2"),
        ("binarize + alpha", lambda: (binary.binarize(w), binary.binary_alpha(w)), "w * 2"),
        ("ternarize per-channel", lambda: ternary.ternarize(w, per_channel=True), "w * 2"),
        ("ternarize per-tensor", lambda: ternary.ternarize(w, per_channel=False), "w * 2"),
        ("pack_binary 32-bit words", lambda: pack.pack_binary(codes, 32), "codes * 2"),
    ]
    all_floors: dict[str, list[float]] = {k: [] for k in floor_fns}
    all_floors["w.min(), w.max()"] = timed(lambda: (w.min(), w.max()), args.repeat)
    results = []
    for name, fn, judge in ops:
        with np.errstate(invalid="ignore"):  # warm-up runs, not counted
            for f in (*floor_fns.values(), fn):
                timed(f, 1)
        runs, floors = [], {k: [] for k in floor_fns}
        for _ in range(args.repeat):
            with np.errstate(invalid="ignore"):  # negative floats cast to uint8
                for k, f in floor_fns.items():
                    floors[k] += timed(f, 1)
            runs += timed(fn, 1)
        for k, v in floors.items():
            all_floors[k] += v
        t = statistics.median(runs)
        f = {k: statistics.median(v) for k, v in floors.items()}
        results.append({
            "name": name, "seconds": t, "runs": runs, "judged_against": judge,
            "floors": {k: {"seconds": f[k], "runs": floors[k]} for k in floor_fns},
            "ratio": t / f[judge], "ratio_w_times_2": t / f["w * 2"], "ratio_astype_uint8": t / f["w.astype(uint8)"],
            "goal": GOAL, "met": t / f[judge] <= GOAL,
        })  # fmt: skip
    med = {k: statistics.median(v) for k, v in all_floors.items()}

    threads = os.environ.get("QEXPORT_THREADS") or "default"
    try:
        from qexport.quantize import chunks

        threads = chunks.thread_count()
    except ImportError:  # before the chunked implementation
        pass
    report = {
        "benchmark": "quantizers", "n": n, "shape": list(w.shape), "repeat": args.repeat, "threads": threads,
        "numpy": np.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "floors": {k: {"seconds": med[k], "runs": v} for k, v in all_floors.items()},
        "primary_floor": "w * 2", "results": results,
    }  # fmt: skip

    print(f"quantizers on {n:,} float32 weights, shape {tuple(w.shape)}, median of {args.repeat} runs, "
          f"threads: {threads}")  # fmt: skip
    print("floors (medians over all runs): " + ", ".join(f"{k} {v:.4f} s" for k, v in med.items()))
    print("goal: each quantizer <= 4x the primary floor `w * 2` (packing: <= 4x `codes * 2`); ratios use the floor "
          "runs interleaved with that operation's runs\n")
    head = f"| {'operation':34} | {'ours s':>8} | {'judged vs':>9} | {'ratio':>6} | {'/ w*2':>6} | {'/ astype':>8} | goal |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in results:
        print(f"| {r['name']:34} | {r['seconds']:8.4f} | {r['judged_against']:>9} | {r['ratio']:5.2f}x | "
              f"{r['ratio_w_times_2']:5.2f}x | {r['ratio_astype_uint8']:7.2f}x | {'met' if r['met'] else 'MISS':4} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
