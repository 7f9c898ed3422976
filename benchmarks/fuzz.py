"""Fuzz qexport's input parsers for longer than CI does (issue 10).

    python benchmarks/fuzz.py --seconds 300 --json fuzz.json     # both targets, 150 s each
    python benchmarks/fuzz.py --examples 20000 --target cifar

The targets are the ones the CI tests run with a small budget (tests/fuzz_targets.py,
QEXPORT_FUZZ_EXAMPLES examples each):

  checkpoint  byte flips, splices and truncations of small real torch checkpoints (zip and legacy
              formats) and random bytes -> qexport.checkpoint.load_checkpoint, and for what loads,
              the reader and the quantization pipeline (--bits 8)
  cifar       byte flips, inserts, deletes and truncations of small real CIFAR-10/100 batch and
              meta pickles (written as cPickle wrote the official files) and random bytes -> the
              restricted unpickler and the batch/meta validation, and for what parses, BMP encoding

Every input must end in success ("ok") or a QexportError ("error": the one-line message the CLI
prints); any other exception is a bug: it is printed with its input, the input is saved under
--crashes, and the script exits 1.  Inputs slower than --slow seconds are reported (and saved)
too: the C unpickler's memo growth, an allocation bomb, was found that way.  The address space is
limited (--max-memory-gb) so that such a bomb fails here instead of waking the OOM killer.

Hypothesis generates the inputs (random generation only: no shrinking, no example database), in
rounds of 100 examples until the budget is spent; the JSON records, per target, how many inputs
were tried and the outcome counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # fuzz_targets, cifar_data
try:
    import qexport  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import qexport  # noqa: E402
from fuzz_targets import checkpoint_seeds, checkpoint_target, cifar_seeds, cifar_target, mutated_checkpoint, mutated_cifar  # noqa: E402

ROUND = 100  # examples per hypothesis run; a time budget is checked between runs


class Target:
    def __init__(self, name: str, strategy, run, crashes: Path, slow: float):
        self.name, self.strategy, self.run = name, strategy, run
        self.crashes, self.slow = crashes, slow
        self.counts: collections.Counter = collections.Counter()
        self.failures: list[dict] = []
        self.slowest: list[dict] = []
        self.seconds = 0.0

    def _save(self, kind: str, blob: bytes, role: str | None) -> str:
        self.crashes.mkdir(parents=True, exist_ok=True)
        path = self.crashes / f"{self.name}-{kind}-{len(self.failures) + len(self.slowest)}.bin"
        path.write_bytes(blob)
        if role:
            path.with_suffix(".role").write_text(role + "\n")
        return str(path)

    def one(self, value) -> None:
        role, blob = value if isinstance(value, tuple) else (None, value)
        t0 = time.perf_counter()
        try:
            outcome = self.run(value)
        except Exception as exc:  # a bug: not success, not a clean QexportError
            outcome = "failure"
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.failures.append({"exception": text, "size": len(blob), "role": role,
                                  "input": self._save("failure", blob, role),
                                  "traceback": traceback.format_exc()[-2000:]})  # fmt: skip
            print(f"FAILURE in {self.name}: {text} (input saved to {self.failures[-1]['input']})", file=sys.stderr)
        dt = time.perf_counter() - t0
        self.counts[outcome] += 1
        if dt > self.slow:
            self.slowest.append({"seconds": round(dt, 3), "outcome": outcome, "size": len(blob), "role": role,
                                 "input": self._save("slow", blob, role)})  # fmt: skip
            print(f"slow input in {self.name}: {dt:.2f} s ({outcome}, {len(blob)} bytes)", file=sys.stderr)

    def fuzz(self, examples: int | None, seconds: float | None) -> None:
        start = time.perf_counter()
        while True:
            tried = sum(self.counts.values())
            if examples is not None and tried >= examples:
                break
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
            n = ROUND if examples is None else min(ROUND, examples - tried)

            @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(data=st.data())
            def round_(data):
                self.one(data.draw(self.strategy))

            round_()
        self.seconds = time.perf_counter() - start

    def report(self) -> dict:
        return {
            "inputs_tried": sum(self.counts.values()),
            "outcomes": {k: self.counts.get(k, 0) for k in ("ok", "error", "failure")},
            "seconds": round(self.seconds, 1),
            "failures": self.failures,
            "slow_inputs": sorted(self.slowest, key=lambda s: -s["seconds"])[:20],
        }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--examples", type=int, help="inputs per target")
    budget.add_argument("--seconds", type=float, help="total time, shared equally by the targets (default 120)")
    ap.add_argument("--target", choices=["checkpoint", "cifar", "all"], default="all")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"), help="where failing/slow inputs are saved")
    ap.add_argument("--slow", type=float, default=1.0, help="report inputs slower than this many seconds")
    ap.add_argument("--max-memory-gb", type=float, default=8.0, help="address-space limit (0: none)")
    args = ap.parse_args(argv)
    if args.examples is None and args.seconds is None:
        args.seconds = 120.0
    if args.max_memory_gb > 0:
        limit = int(args.max_memory_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    names = ["checkpoint", "cifar"] if args.target == "all" else [args.target]
    per_target = args.seconds / len(names) if args.seconds is not None else None
    work = Path(tempfile.mkdtemp(prefix="qexport-fuzz-"))
    targets = []
    for name in names:
        if name == "checkpoint":
            strategy = mutated_checkpoint(checkpoint_seeds(work))
            path = work / "f.pth"
            run = lambda blob, path=path: checkpoint_target(blob, path)  # noqa: E731
        else:
            strategy = mutated_cifar(cifar_seeds())
            run = lambda value: cifar_target(*value)  # noqa: E731
        target = Target(name, strategy, run, args.crashes, args.slow)
        target.fuzz(args.examples, per_target)
        targets.append(target)
    shutil.rmtree(work, ignore_errors=True)

    report = {
        "benchmark": "fuzz",
        "qexport": qexport.__version__,
        "python": platform.python_version(),
        "budget": {"examples": args.examples} if args.examples is not None else {"seconds": args.seconds},
        "targets": {t.name: t.report() for t in targets},
    }
    print(f"{'target':<12} {'inputs':>8} {'ok':>8} {'error':>8} {'failure':>8} {'slow':>6} {'seconds':>8}")
    for t in targets:
        r = report["targets"][t.name]
        o = r["outcomes"]
        print(f"{t.name:<12} {r['inputs_tried']:>8} {o['ok']:>8} {o['error']:>8} {o['failure']:>8} "
              f"{len(t.slowest):>6} {r['seconds']:>8}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(t.failures for t in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
