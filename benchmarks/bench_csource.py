"""Benchmark of `qexport csource`: sizes and throughput of the generated C per architecture.

    python benchmarks/bench_csource.py [--archs lenet,mobilenet_v1,...] [--images 8] [--json F] [--markdown F]
    python benchmarks/bench_csource.py --tiny      # LeNet, 2 images: what the smoke test runs

Per architecture (qexport.models.build at the widths below, fixed-seed random weights: sizes and
speed do not depend on the values; LeNet uses the bundled trained fixture when found), with the
README's plans, calibrated on random images:
* sizes: the generator's parameter bytes, arena bytes and stack bound (qexport.csource.footprint)
  next to `arm-none-eabi-size` of the Cortex-M4 object built with -Os (text = code + constants,
  bss = arena);
* throughput, in the same run: the C built with host gcc -O2 (one process running every image
  R times (about a second); its wall time minus that of a run of 0 repetitions: start-up and loading), the numpy int64 reference (qexport.integer.run.run_integer on the batch), and the
  float network of the plan (qexport.integer.network.planned_network run by
  qexport.graph.execute.run_graph in float32 numpy) and the architecture's torch module forward
  (float32, torch.no_grad, batch of all images); inferences/s and ratios C / other.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# arch -> (config, plan options, mean, std)
ARCHS = {
    "lenet": ({}, {"bits": 8}, "0.0", "1.0"),
    "mobilenet_v1": ({"num_classes": 10}, {"bits": 8}, "0.5", "0.25"),
    "vgg_cifar10_binary": ({"infl_ratio": 1, "classifier": "single"}, {"plan": "seed"}, "0.0", "1.0"),
    "twn_nin_gc": ({}, {"bits": 2, "only": ("*",)}, "0.0", "1.0"),
    "resnet18_bnn": ({"num_classes": 10}, {"bits": 1, "only": ("*",)}, "0.0", "1.0"),
}

MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "NAME_inference.h"
int main(int argc, char **argv)
{
    static uint8_t img[UNAME_INPUT_SIZE], out[UNAME_OUTPUT_SIZE];
    long i, reps = atol(argv[2]);
    unsigned long check = 0;
    FILE *f = fopen(argv[1], "rb");
    uint8_t *all;
    size_t n = 0, k;
    if (f == NULL) return 2;
    all = (uint8_t *)malloc(UNAME_INPUT_SIZE * 1024);
    while (n < 1024 && fread(all + n * UNAME_INPUT_SIZE, 1, UNAME_INPUT_SIZE, f) == UNAME_INPUT_SIZE) n++;
    for (i = 0; i < reps; i++)
        for (k = 0; k < n; k++) {
            size_t j;
            for (j = 0; j < UNAME_INPUT_SIZE; j++) img[j] = all[k * UNAME_INPUT_SIZE + j];
            NAME_run(img, out);
            check += out[0];
        }
    printf("%lu\n", check);
    return 0;
}
"""


def _state(arch: str, config: dict, folder: Path) -> Path:
    import torch

    from qexport.models import build

    if arch == "lenet" and (ROOT / "fixtures" / "lenet_digits.pth").exists():
        return ROOT / "fixtures" / "lenet_digits.pth"
    torch.manual_seed(0)
    model = build(arch, config)
    state = model.state_dict()
    gen = torch.Generator().manual_seed(1)
    for key, value in state.items():  # BN statistics away from the identity, as a trained net has
        if key.endswith("running_mean"):
            value.copy_(torch.randn(value.shape, generator=gen) * 0.1)
        elif key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
    path = folder / f"{arch}.pth"
    torch.save(state, path)
    return path


def _seconds(fn, repeat: int = 3) -> float:
    """Median wall time of `repeat` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_arch(arch: str, n_images: int, folder: Path) -> dict:
    import torch

    from qexport.csource.command import csource
    from qexport.csource.footprint import footprint
    from qexport.graph.execute import run_graph
    from qexport.integer.network import planned_network
    from qexport.integer.run import run_integer
    from qexport.models import INPUT_SHAPES, build

    config, plan, mean, std = ARCHS[arch]
    shape = INPUT_SHAPES[arch]
    rng = np.random.default_rng(0)
    np.save(folder / "cal.npy", rng.integers(0, 256, (16, *shape)).astype(np.uint8))
    images = rng.integers(0, 256, (n_images, *shape)).astype(np.uint8)
    ckpt = _state(arch, config, folder)
    out = folder / arch
    files, igraph, qmodel, _ = csource(ckpt, out, "net", folder / "cal.npy", 16, None, mean, std, **dict(plan))
    fp = footprint(igraph)
    row = {"arch": arch, "plan": " ".join(f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, tuple) else v}"
                                          for k, v in plan.items()),
           "nodes": len(igraph.nodes), "parameter_bytes": fp.parameter_bytes, "arena_bytes": fp.arena_bytes,
           "stack_bound": fp.stack_bytes, "images": n_images}  # fmt: skip
    if shutil.which("arm-none-eabi-gcc"):
        subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c99", "-c", "-o", "m4.o",
                        "net_inference.c"], cwd=out, check=True)  # fmt: skip
        size = subprocess.run(["arm-none-eabi-size", "m4.o"], cwd=out, capture_output=True, text=True, check=True)
        row["m4_text"], row["m4_data"], row["m4_bss"] = (int(v) for v in size.stdout.splitlines()[1].split()[:3])
    (out / "main.c").write_text(MAIN.replace("UNAME", "NET").replace("NAME", "net"))
    subprocess.run(["gcc", "-std=c99", "-O2", "-o", "prog", "main.c", "net_inference.c"], cwd=out, check=True)
    (out / "images.bin").write_bytes(images.tobytes())

    def c_run(reps):
        return lambda: subprocess.run([str(out / "prog"), "images.bin", str(reps)], cwd=out, check=True,
                                      capture_output=True)  # fmt: skip

    once = _seconds(c_run(1), 1)
    reps = int(min(max(3, 1.0 / max(once, 1e-3)), 200))  # about a second of inference
    c_time = max(_seconds(c_run(reps)) - _seconds(c_run(0)), 1e-9) / reps  # minus start-up and loading
    np_time = _seconds(lambda: run_integer(igraph, images))
    graph, state = planned_network(qmodel)
    x = (images.astype(np.float32) / 255 - float(mean)) / float(std)
    plan_time = _seconds(lambda: run_graph(graph, state, x, np.float32))
    module = build(arch, config)
    tx = torch.from_numpy(x)
    with torch.no_grad():
        torch_time = _seconds(lambda: module(tx))
    for key, t in (("c", c_time), ("numpy_int", np_time), ("numpy_float_plan", plan_time), ("torch_float", torch_time)):
        row[f"{key}_per_s"] = n_images / t
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| network (plan) | nodes | parameters B | arena B | stack bound B | M4 -Os text B | M4 bss B |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['arch']} (`{r['plan']}`) | {r['nodes']} | {r['parameter_bytes']:,} | {r['arena_bytes']:,} | "
                     f"{r['stack_bound']} | {r.get('m4_text', '-'):,} | {r.get('m4_bss', '-'):,} |")  # fmt: skip
    lines += ["", "| network | C gcc -O2 inf/s | numpy int64 inf/s | C / numpy | float plan (numpy f32) inf/s | "
              "C / float plan | torch f32 inf/s | C / torch |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        c = r["c_per_s"]
        lines.append(f"| {r['arch']} | {c:.1f} | {r['numpy_int_per_s']:.1f} | {c / r['numpy_int_per_s']:.2f}x | "
                     f"{r['numpy_float_plan_per_s']:.1f} | {c / r['numpy_float_plan_per_s']:.2f}x | "
                     f"{r['torch_float_per_s']:.1f} | {c / r['torch_float_per_s']:.2f}x |")  # fmt: skip
    return "\n".join(lines).replace(",", " ")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--tiny", action="store_true", help="LeNet, 2 images (the smoke test)")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    args = ap.parse_args(argv)
    archs, n = (["lenet"], 2) if args.tiny else (args.archs.split(","), args.images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            rows.append(bench_arch(arch, n, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # kept if a later network is interrupted
    text = markdown(rows)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
