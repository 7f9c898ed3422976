"""Benchmark the integer executor (qexport.integer.run.run_integer) against the float torch forward
of the same network, per documented architecture.

Each architecture is built with qexport.models.build (random initialisation, fixed seed, and the
randomised BatchNorm statistics of tests/conftest.make_state, which the test suite uses), saved,
read back and lowered exactly as `qexport eval` does (qexport.prepare.prepare, then
qexport.integer.calibrate.calibrated_graph on a .npy of random uint8 images); outside the timing.
Then, on the same batch:

  integer  run_integer(igraph, pixels): every node's uint8 codes, the int64 reference
  torch    the plan's float network as a torch module (qexport.writers.onnx_module.build_module:
           qexport's module carrying the dequantized weights), float32, torch.no_grad()

interleaved over --runs rounds; medians are reported with ratio = integer / torch (the issue's goal:
at most 10x, i.e. at least 1/10 of the float forward's speed).

    python benchmarks/bench_integer.py [--batch 64] [--runs 3] [--arch NAME ...] [--tiny] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # conftest.make_state: the test suite's random checkpoints
try:
    import qexport  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

GOAL = 10.0  # integer / torch
# (arch, config at full size, config with --tiny, plan options the integer graph needs)
ARCHS = {
    "lenet": ("lenet", {}, {}, {"bits": 8}),
    "vgg": ("vgg_cifar10_binary", {"infl_ratio": 1, "classifier": "single"}, {"infl_ratio": 1, "classifier": "single"},
            {"plan": "seed"}),
    "twn": ("twn_nin_gc", {}, {"cfg": (16, 16, 16, 32, 32, 32, 64, 64)}, {"bits": 2, "only": ("*",)}),
    "resnet18": ("resnet18_bnn", {"num_classes": 10}, {"num_classes": 10, "widths": (8, 8, 16, 16)},
                 {"bits": 1, "only": ("*",)}),
    "mobilenet": ("mobilenet_v1", {"num_classes": 10}, {"num_classes": 10}, {"plan": "seed"}),
}  # fmt: skip


def lowered(arch: str, config: dict, plan_kw: dict, pixels: np.ndarray, folder: Path):
    """(IntGraph, torch module) for one architecture, through the functions `qexport eval` uses."""
    import torch
    from conftest import make_state

    from qexport.integer.calibrate import calibrated_graph
    from qexport.prepare import prepare
    from qexport.writers.onnx_module import build_module

    ckpt = folder / f"{arch}.pth"
    torch.save(make_state(arch, config), ckpt)
    data = folder / f"{arch}_images.npy"
    np.save(data, pixels)
    qmodel = prepare(ckpt, command="eval", plan_kw=dict(plan_kw), needs_graph=True).quantized
    igraph = calibrated_graph(qmodel, str(data), pixels.shape[0])[0]
    return igraph, build_module(qmodel)[0].float().eval()


def measure(igraph, module, pixels: np.ndarray, runs: int) -> dict:
    import torch

    from qexport.integer.run import run_integer

    x = torch.from_numpy(pixels.astype(np.float32) / 255.0)
    times = {"integer": [], "torch": []}
    with torch.no_grad():
        module(x)  # warm-up (allocators, oneDNN primitives)
        run_integer(igraph, pixels[:1])
        for r in range(runs):
            for name in (("integer", "torch") if r % 2 == 0 else ("torch", "integer")):
                t0 = time.perf_counter()
                run_integer(igraph, pixels) if name == "integer" else module(x)
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"integer_s": med["integer"], "torch_s": med["torch"], "ratio": med["integer"] / med["torch"],
            "all_s": times}  # fmt: skip


def table(rows: dict, batch: int) -> str:
    lines = [f"integer executor vs float torch forward, batch {batch}; ratio = integer / torch (goal <= {GOAL:g}x)",
             "",
             f"{'network':<10} {'integer':>10} {'torch':>10} {'ratio':>8}  met?"]  # fmt: skip
    for name, r in rows.items():
        lines.append(f"{name:<10} {r['integer_s']:>9.4f}s {r['torch_s']:>9.4f}s {r['ratio']:>7.2f}x  "
                     f"{'yes' if r['ratio'] <= GOAL else 'no'}")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--arch", action="append", choices=sorted(ARCHS), help="only these (repeatable)")
    ap.add_argument("--tiny", action="store_true", help="small widths for TWN and ResNet18 (the smoke test)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import torch

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.arch or ARCHS:
            arch, full, tiny, plan_kw = ARCHS[name]
            from qexport.models import INPUT_SHAPES

            pixels = np.random.default_rng(0).integers(0, 256, (args.batch, *INPUT_SHAPES[arch]), dtype=np.uint8)
            igraph, module = lowered(arch, tiny if args.tiny else full, plan_kw, pixels, Path(tmp))
            rows[name] = measure(igraph, module, pixels, args.runs)
            print(f"{name}: integer {rows[name]['integer_s']:.4f} s, torch {rows[name]['torch_s']:.4f} s",
                  file=sys.stderr)  # fmt: skip
    print(table(rows, args.batch))
    if args.json:
        args.json.write_text(json.dumps({
            "batch": args.batch, "runs": args.runs, "tiny": args.tiny, "goal": GOAL, "rows": rows,
            "machine": {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                        "torch_threads": torch.get_num_threads(), "cpus": __import__("os").cpu_count()},
        }, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
