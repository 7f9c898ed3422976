"""Benchmark of `qexport csource`: sizes and throughput of the generated C per architecture.

    python benchmarks/bench_csource.py [--archs lenet,mobilenet_v1,...] [--images 8] [--json F] [--markdown F]
    python benchmarks/bench_csource.py --tiny      # LeNet, 2 images: what the smoke test runs

Per architecture, the trained fixture (fixtures/trained.py: checkpoint, plan PLANS) through
qexport.csource.command.csource (what `qexport csource` runs), calibrated on the first
--calibration training digits, run on the first --images held-out digits:
* sizes: the generator's parameter bytes, arena bytes, packed-bit scratch bytes and stack bound
  (qexport.csource.footprint) next to `arm-none-eabi-size` of the Cortex-M4 object built with
  `arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -Os -std=c99` (text = code + constants, bss = arena
  + scratch + the hook pointer);
* throughput, in the same run: the C built with host gcc -O2 (one process running every image
  R times (about a second); its wall time minus that of a run of 0 repetitions: start-up and
  loading), the numpy int64 reference (qexport.integer.run.run_integer on the batch), the float
  network of the plan (qexport.integer.network.planned_network run by
  qexport.graph.execute.run_graph in float32 numpy) and the architecture's torch module forward
  with the fixture's weights (float32, one thread, torch.no_grad, batch of all images, pixel /
  divisor as trained); inferences/s and ratios C / other.  Each timing: the median of 3 after a
  warm-up.
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

sys.path.insert(0, str(ROOT / "fixtures"))
import trained  # noqa: E402

MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "NAME_inference.h"
int main(int argc, char **argv)
{
    static uint8_t img[UNAME_INPUT_SIZE];
    static int32_t out[UNAME_OUTPUT_SIZE];
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
            check += (unsigned long)out[0];
        }
    printf("%lu\n", check);
    return 0;
}
"""


def _seconds(fn, repeat: int = 3) -> float:
    """Median wall time of `repeat` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_arch(arch: str, n_images: int, n_cal: int, folder: Path) -> dict:
    import torch

    from qexport.csource.command import csource
    from qexport.csource.footprint import footprint
    from qexport.graph.execute import run_graph
    from qexport.integer.network import planned_network
    from qexport.integer.run import run_integer
    from qexport.models import build

    cal, cal_labels = trained.train_digits(arch)
    np.savez(folder / "cal.npz", images=cal[:n_cal], labels=cal_labels[:n_cal])
    images = trained.held_out(arch)[0][:n_images]
    images = images[:, None] if images.ndim == 3 else images  # LeNet: one channel
    ckpt = trained.checkpoint(arch, folder)
    out = folder / arch
    files, igraph, qmodel, _ = csource(ckpt, out, "net", folder / "cal.npz", n_cal, None, None, None,
                                       **trained.plan_kw(arch))  # fmt: skip
    fp = footprint(igraph)
    row = {"arch": arch, "plan": " ".join(trained.PLANS[arch]), "nodes": len(igraph.nodes),
           "parameter_bytes": fp.parameter_bytes, "arena_bytes": fp.arena_bytes, "scratch_bytes": fp.scratch_bytes,
           "stack_bound": fp.stack_bytes,
           "images": n_images, "calibration_images": n_cal}  # fmt: skip
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
    x = images.astype(np.float32) / trained.INPUT_DIVISOR[arch]  # the fixtures' input: no mean/std
    plan_time = _seconds(lambda: run_graph(graph, state, x, np.float32))
    if arch == "lenet":
        module = build("lenet", {})
        module.load_state_dict(torch.load(ckpt, weights_only=True))
    else:
        config = json.loads((ROOT / "fixtures" / f"{arch}_digits.json").read_text())["config"]
        module = build(arch, config)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in trained.state_arrays(arch).items()})
    module.eval()
    torch.set_num_threads(1)  # like the C and numpy: one thread (the machine is shared)
    tx = torch.from_numpy(x)
    with torch.no_grad():
        torch_time = _seconds(lambda: module(tx))
    for key, t in (("c", c_time), ("numpy_int", np_time), ("numpy_float_plan", plan_time), ("torch_float", torch_time)):
        row[f"{key}_per_s"] = n_images / t
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| network (plan) | nodes | parameters B | arena B | bit scratch B | stack bound B | M4 -Os text B | "
             "M4 bss B |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['arch']} (`{r['plan']}`) | {r['nodes']} | {r['parameter_bytes']:,} | {r['arena_bytes']:,} | "
                     f"{r['scratch_bytes']:,} | {r['stack_bound']} | {r.get('m4_text', '-'):,} | "
                     f"{r.get('m4_bss', '-'):,} |")  # fmt: skip
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
    ap.add_argument("--archs", default=",".join(trained.ARCHS))
    ap.add_argument("--images", type=int, default=8, help="held-out digits timed (default 8)")
    ap.add_argument("--calibration", type=int, default=16, help="training digits to calibrate on (default 16)")
    ap.add_argument("--tiny", action="store_true", help="LeNet, 2 images (the smoke test)")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    args = ap.parse_args(argv)
    archs, n = (["lenet"], 2) if args.tiny else (args.archs.split(","), args.images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            folder = Path(tmp) / arch
            folder.mkdir()
            rows.append(bench_arch(arch, n, args.calibration, folder))
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
