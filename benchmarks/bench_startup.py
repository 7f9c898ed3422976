"""`qexport --help` start-up vs `python -c pass` (issue 9: goal <= 3x; issue 18: <= 2.5x).

    python benchmarks/bench_startup.py                  # 20 runs of each command
    python benchmarks/bench_startup.py --runs 30 --json out.json

Every command runs as a fresh process through the same interpreter (sys.executable); the runs
are interleaved (pass, module, script, pass, ...) so that load changes hit all commands alike,
and the median wall time of each is reported.  The goal is judged on
`python -m qexport.cli --help` against `python -c pass`; the installed `qexport` console script
is measured too when it is on PATH (its wrapper adds importlib.metadata-free start-up of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL = 2.5
ROOT = Path(__file__).resolve().parent.parent


def commands() -> dict[str, list[str]]:
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -m qexport.cli --help": [sys.executable, "-m", "qexport.cli", "--help"],
    }
    script = shutil.which("qexport")
    if script:
        cmds["qexport --help (console script)"] = [script, "--help"]
    return cmds


def run_once(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return elapsed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="runs of each command (default 20, at least 10 recommended)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON to this path")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    cmds = commands()
    for argv_ in cmds.values():  # warm the OS file cache and the bytecode caches
        run_once(argv_, env)
    runs: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(max(1, args.runs)):
        for name, argv_ in cmds.items():
            runs[name].append(run_once(argv_, env))
    med = {name: statistics.median(r) for name, r in runs.items()}
    base = med["python -c pass"]
    results = [{"name": name, "argv": cmds[name], "seconds": med[name], "runs": runs[name], "ratio": med[name] / base,
                "judged": name == "python -m qexport.cli --help"} for name in cmds]  # fmt: skip
    judged = next(r for r in results if r["judged"])
    report = {"benchmark": "startup", "runs": args.runs, "python": platform.python_version(),
              "executable": sys.executable, "goal": GOAL, "met": judged["ratio"] <= GOAL, "results": results}  # fmt: skip

    print(f"start-up, median of {args.runs} interleaved runs each; goal: `python -m qexport.cli --help` <= {GOAL:g}x "
          f"`python -c pass`\n")  # fmt: skip
    print(f"| {'command':32} | {'median s':>8} | {'ratio':>6} |")
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 8}|")
    for r in results:
        print(f"| {r['name']:32} | {r['seconds']:8.4f} | {r['ratio']:5.2f}x |")
    print(f"\ngoal {'met' if report['met'] else 'MISSED'}: {judged['ratio']:.2f}x (<= {GOAL:g}x)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
