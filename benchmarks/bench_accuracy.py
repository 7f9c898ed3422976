"""Top-1 of the five trained fixtures on held-out digits: the float network as trained, the float
network of the plan (dequantized weights) and the integer graph (qexport.integer.command.evaluate,
what `qexport eval` runs), calibrated on training digits (not the held-out ones).

    python benchmarks/bench_accuracy.py                       # all 359 held-out digits, 256 calibration
    python benchmarks/bench_accuracy.py --samples 8 --calibration 8 --arch lenet --json out.json

Plans: fixtures/trained.py PLANS.  Prints a markdown table (progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "fixtures"))
try:
    import qexport  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import trained  # noqa: E402


def measure(arch: str, samples: int | None, calibration: int, folder: Path) -> dict:
    from qexport.integer.command import evaluate

    images, labels = trained.held_out(arch)
    if samples:  # spread over the whole set
        idx = np.linspace(0, len(images) - 1, samples).round().astype(int)
        images, labels = images[idx], labels[idx]
    train_images, train_labels = trained.train_digits(arch)
    np.savez(folder / f"{arch}_test.npz", images=images, labels=labels)
    np.savez(folder / f"{arch}_cal.npz", images=train_images[:calibration], labels=train_labels[:calibration])
    t0 = time.time()
    result = evaluate(trained.checkpoint(arch, folder), data=folder / f"{arch}_test.npz",
                      calibration_data=folder / f"{arch}_cal.npz", calibration_samples=calibration,
                      **trained.plan_kw(arch))  # fmt: skip
    return {"arch": arch, "plan": " ".join(trained.PLANS[arch]), "samples": result["samples"],
            "calibration_samples": result["calibration_samples"], "float": result["float"],
            "planned": result["planned"], "integer": result["integer"], "seconds": time.time() - t0}  # fmt: skip


def markdown(rows: list[dict]) -> str:
    def pct(v):
        return f"{100 * v:.2f} %"

    lines = ["| architecture | plan | images | float | plan's float network | integer graph | integer − plan |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['arch']} | `{r['plan']}` | {r['samples']} (cal. {r['calibration_samples']}) | "
                     f"{pct(r['float'])} | {pct(r['planned'])} | {pct(r['integer'])} | "
                     f"{100 * (r['integer'] - r['planned']):+.2f} pp |")  # fmt: skip
    return "\n".join(lines)


def fixture_bench_main(argv, doc: str, archs, measure, markdown, name: str, title: str) -> None:
    """The command line of the trained-fixture benchmarks (this one, bench_tflite): --arch (repeatable),
    --samples, --calibration, --json; one row measure(arch, samples, calibration, folder) per fixture,
    printed as markdown(rows) under `title`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--arch", action="append", choices=archs, help=f"repeatable; default {', '.join(archs)}")
    parser.add_argument("--samples", type=int, default=None, help="held-out digits (default: all)")
    parser.add_argument("--calibration", type=int, default=256, help="training digits to calibrate on")
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch or archs:
            print(f"{arch}...", file=sys.stderr, flush=True)
            rows.append(measure(arch, args.samples, args.calibration, Path(tmp)))
    print(f"{title}, Python {platform.python_version()}, numpy {np.__version__}.\n")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"benchmark": name, "results": rows}, indent=2) + "\n")


def main(argv=None) -> None:
    fixture_bench_main(argv, __doc__, trained.ARCHS, measure, markdown, "accuracy", "Accuracy of the trained fixtures")

if __name__ == "__main__":
    main()
