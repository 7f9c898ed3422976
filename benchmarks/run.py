"""Every benchmark of issue 9 in one run: our operations beside the tool a user would otherwise use.

    python benchmarks/run.py                      # full sizes, about 6-9 minutes on 2 cores
    python benchmarks/run.py --tiny               # tiny sizes (the smoke test), well under a minute
    python benchmarks/run.py --json out.json --markdown table.md

Realistic checkpoints are generated into a temporary folder first (outside every timing):
ResNet18-BNN at full size and the r=3 BinaryNet VGG with the source repo's three-linear classifier
(built with qexport.models.build, random initialisation, saved with torch.save), and a synthetic
state_dict of about 100 M float32 parameters (8 convs 1024x1024x3x3 + 2 linears 3072x4096).

Rows (every ratio is ours / reference, so below 1 means we are faster; medians of 3 to 20 runs):
- cheader writer: the C-header writer on N int8 codes vs `xxd -i` on the same N raw bytes (N = the
  ResNet18 parameter count and 100 M);
- end to end: `qexport cheader --bits 8 CKPT -o out.h` (a subprocess, as a user runs it) vs a
  subprocess doing `torch.load(weights_only=True, mmap=True)` and writing one uint8 per parameter
  (`tensor.to(torch.uint8)`, so every weight is read) to a file: the torch.load + raw-write floor;
- peak memory: ru_maxrss of that export (os.wait4) minus the peak of a process that only imports
  torch and the qexport modules the export uses (the fixed cost of the runtime), over the
  checkpoint's file size; the absolute peak is shown beside it;
- data writers: mat / npy folder / npz / h5 vs the bare scipy.io.savemat / numpy.save /
  numpy.savez / h5py call, and txt vs numpy.savetxt (benchmarks/bench_data_writers.py), at the
  ResNet18 size and (except txt) at 100 M;
- quantizers on 100 M float32 weights vs a plain numpy pass (benchmarks/bench_quantizers.py);
- `python -m qexport.cli --help` vs `python -c pass` (benchmarks/bench_startup.py);
- `cifar-bmp` on 60 000 images vs the plain os.write floor (benchmarks/bench_cifar.py).

Goals (issue 9): cheader <= 3x xxd -i; txt >= 5x faster than savetxt; mat/npy/h5 <= 1.5x the bare
call; quantizers <= 4x the numpy floor; end-to-end peak memory <= 2.5x the checkpoint size;
--help <= 2.5x python -c pass (issue 18); cifar-bmp <= 2x the file-write floor.  The end-to-end time has no
goal in the issue: its ratio is printed only.

The JSON (default benchmarks/results/latest.json, a git-ignored folder) holds every row, every
run's time and each sub-benchmark's full report; the Markdown table is printed on stdout (progress
goes to stderr) and written with --markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
try:
    import qexport  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import bench_cheader  # noqa: E402
import bench_cifar  # noqa: E402
import bench_data_writers  # noqa: E402
import bench_quantizers  # noqa: E402
import bench_startup  # noqa: E402
from bench_checkpoints import MiB, log, make_checkpoints  # noqa: E402
from run_table import build_rows, markdown  # noqa: E402


# Sizes of the full run and of --tiny (the smoke test).
FULL = {
    "resnet18": {"widths": (64, 128, 256, 512)},
    "vgg": {"infl_ratio": 3, "classifier": "three"},
    "synthetic": {"convs": 8, "conv": (1024, 1024, 3, 3), "linears": 2, "linear": (3072, 4096)},
    "cheader_n": "resnet18+synthetic",  # N of the writer-vs-xxd rows: these checkpoints' parameter counts
    "writers_params": (11_000_000, 100_000_000),
    "quant_n": 100_000_000,
    "cifar_n": 60_000,
    # Runs per measurement (median kept): 3 for the multi-second ones, more for the short ones,
    # whose ratios (tens of milliseconds against tens of milliseconds) are the noisiest.
    "repeat": {"e2e": 3, "cheader": 5, "writers": 7, "quantizers": 9, "startup": 20, "cifar": 3},
}
TINY = {
    "resnet18": {"widths": (8, 16, 32, 64)},
    "vgg": {"infl_ratio": 1, "classifier": "single"},
    "synthetic": {"convs": 2, "conv": (32, 32, 3, 3), "linears": 1, "linear": (64, 128)},
    "cheader_n": "resnet18+synthetic",
    "writers_params": (20_000, 60_000),
    "quant_n": 6_000,
    "cifar_n": 120,
    "repeat": {"e2e": 1, "cheader": 1, "writers": 1, "quantizers": 1, "startup": 2, "cifar": 1},
}

REFERENCE_SCRIPT = r"""
import sys, torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True, mmap=True)
with open(sys.argv[2], "wb") as fh:
    for t in state.values():
        fh.write(t.detach().reshape(-1).to(torch.uint8).numpy())  # one byte per parameter
"""
BASELINE_IMPORTS = ("import torch, qexport.cli, qexport.export, qexport.checkpoint, qexport.readers, "
                    "qexport.quantize.pipeline, qexport.quantize.plan, qexport.writers.cheader")  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Subprocesses with their peak memory


# The children are started through this small launcher, never forked from this process directly:
# Linux counts the RSS a child had *before* exec (the forked copy of its parent; with vfork, the
# parent's own memory) in the child's ru_maxrss, so a child forked from this benchmark, which holds
# hundreds of MB of test data, would report at least that much.  The launcher is a bare interpreter
# (about 10 MB); it times its child from fork to exit and reports the child's own ru_maxrss.
LAUNCHER = r"""
import json, os, sys, time
argv = sys.argv[1:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - t0
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "seconds": elapsed, "maxrss_kb": usage.ru_maxrss}))
"""


def run_child(argv: list[str], cwd: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one child process; raises if it fails."""
    proc = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *argv], cwd=cwd, capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        report = {"exit": proc.returncode}
    if proc.returncode != 0 or report["exit"] != 0:
        raise SystemExit(f"benchmark command failed ({report['exit']}): {' '.join(argv)}\n{proc.stderr[-2000:]}")
    return report["seconds"], report["maxrss_kb"] * 1024  # Linux: ru_maxrss is in kilobytes


def qexport_argv() -> list[str]:
    script = Path(sys.executable).parent / "qexport"  # the console script of this interpreter's env
    return [str(script)] if script.exists() else [sys.executable, "-m", "qexport.cli"]


def bench_end_to_end(ckpts: dict, folder: Path, repeat: int) -> dict:
    """`qexport cheader --bits 8` vs torch.load + raw write, interleaved; times and peak RSS."""
    out = folder / "e2e"
    out.mkdir()
    baseline = [run_child([sys.executable, "-c", BASELINE_IMPORTS], out)[1] for _ in range(repeat)]
    result = {"baseline_imports": BASELINE_IMPORTS, "baseline_peak_bytes": statistics.median(baseline),
              "baseline_runs": baseline, "qexport_argv": qexport_argv(),
              "reference_script": REFERENCE_SCRIPT.strip(), "checkpoints": {}}  # fmt: skip
    for key, ck in ckpts.items():
        ours_argv = qexport_argv() + ["cheader", "--bits", "8", ck["path"], "-o", str(out / "ours.h")]
        ref_argv = [sys.executable, "-c", REFERENCE_SCRIPT, ck["path"], str(out / "ref.bin")]
        runs = {"ours": [], "reference": []}
        sizes = {}
        for r in range(repeat + (1 if repeat > 1 else 0)):  # with several runs, the first is a warm-up
            for side, argv_ in (("ours", ours_argv), ("reference", ref_argv)):
                t, rss = run_child(argv_, out)
                target = out / ("ours.h" if side == "ours" else "ref.bin")
                sizes[side] = target.stat().st_size
                target.unlink()  # each run writes a fresh file; deletion is not timed
                if r > 0 or repeat == 1:
                    runs[side].append((t, rss))
        entry = {**ck, "output_bytes": sizes, "runs": runs}
        for side in runs:
            entry[f"{side}_seconds"] = statistics.median(t for t, _ in runs[side])
            entry[f"{side}_peak_bytes"] = statistics.median(m for _, m in runs[side])
        if sizes["reference"] != ck["params"]:
            raise SystemExit(f"reference wrote {sizes['reference']} bytes for {ck['params']} parameters")
        result["checkpoints"][key] = entry
        log(f"end to end {key}: ours {entry['ours_seconds']:.2f} s, peak {entry['ours_peak_bytes'] / MiB:.0f} MiB; "
            f"reference {entry['reference_seconds']:.2f} s")  # fmt: skip
    return result


# ------------------------------------------------------------------------------------------------
# The existing benchmark scripts, run through their main()s


def call_main(module, argv: list[str]) -> dict:
    """Run a bench module's main(argv) with --json into a temporary file; its printout goes to stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        with contextlib.redirect_stdout(sys.stderr):
            module.main(argv + ["--json", str(out)])
        return json.loads(out.read_text())


def bench_writers(params: int, repeat: int, only: tuple[str, ...]) -> dict:
    with contextlib.redirect_stdout(sys.stderr):
        result = bench_data_writers.run(params, repeat, only)
    log(f"data writers {result['params']:,}: " + ", ".join(
        f"{k} {v['ratio_ours_over_reference']:.2f}x" for k, v in result["pairs"].items()))  # fmt: skip
    return result


# ------------------------------------------------------------------------------------------------
# Rows and the table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes, one run each (the smoke test)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs of every measurement (default: 3 for the end-to-end exports, 5 to 20 for the "
                         "shorter ones; --tiny: 1)")  # fmt: skip
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json",
                    help="write every result here (default benchmarks/results/latest.json)")  # fmt: skip
    ap.add_argument("--markdown", type=Path, default=None, help="also write the Markdown table to this file")
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--cifar-dir", type=Path, default=None,
                    help="scratch folder of the cifar-bmp benchmark (default /dev/shm when it exists, see below)")
    args = ap.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    if args.repeat is not None and args.repeat < 1:
        ap.error("--repeat must be >= 1")
    repeat = {k: args.repeat or v for k, v in sizes["repeat"].items()}

    # cifar-bmp writes 60 000 files per method and run (720 000 in all): on a disk mounted with
    # `discard` (this machine's ext4) deleting them afterwards takes about 1 ms per file, longer than
    # the whole benchmark budget, so by default they go to the tmpfs /dev/shm (floor and qexport on
    # the same file system; the floor is lower there, so the ratio is, if anything, stricter).
    cifar_dir = args.cifar_dir
    if cifar_dir is None and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        cifar_dir = Path("/dev/shm")

    import torch

    started = time.perf_counter()
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="qexport_bench_", dir=args.dir) as tmp:
        folder = Path(tmp)
        ckpts = make_checkpoints(folder, sizes)
        ns = sorted({ckpts[k]["params"] for k in sizes["cheader_n"].split("+")})
        res["cheader"] = {}
        for n in ns:  # the 100 M one takes seconds per run: as many runs as the end-to-end exports
            r = bench_cheader.run(n, repeat["cheader" if n < 20_000_000 else "e2e"], folder)
            log(f"cheader writer {n:,}: ours {r['qexport_seconds']:.2f} s, xxd -i {r['xxd_seconds']:.2f} s")
            res["cheader"][str(n)] = r
        res["end_to_end"] = bench_end_to_end(ckpts, folder, repeat["e2e"])
        small, big = sizes["writers_params"]
        res["data_writers"] = [bench_writers(small, repeat["writers"], ()),
                               bench_writers(big, repeat["writers"], ("mat", "npy", "npz", "h5"))]  # fmt: skip
        log(f"quantizers on {sizes['quant_n']:,} weights")
        quant_argv = ["--n", str(sizes["quant_n"]), "--repeat", str(repeat["quantizers"])]
        res["quantizers"] = call_main(bench_quantizers, quant_argv + (["--rows", "3"] if args.tiny else []))
        log("start-up")
        res["startup"] = call_main(bench_startup, ["--runs", str(repeat["startup"])])
        log(f"cifar-bmp on {sizes['cifar_n']:,} images")
        res["cifar"] = call_main(bench_cifar, ["--n", str(sizes["cifar_n"]), "--runs", str(repeat["cifar"]),
                                               "--dir", str(cifar_dir or folder)])  # fmt: skip
        res["cifar"]["where"] = "tmpfs /dev/shm" if str(cifar_dir) == "/dev/shm" else str(cifar_dir or folder)
        log("removing the scratch folder")
    duration = time.perf_counter() - started

    meta = {"mode": "tiny" if args.tiny else "full", "repeat": repeat, "duration_seconds": duration,
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cpus": os.cpu_count(), "machine": platform.machine(), "load_average_at_end": os.getloadavg(),
            "scratch_dir": str(args.dir or tempfile.gettempdir()), "cifar_dir": str(cifar_dir or args.dir or tempfile.gettempdir()),
            "checkpoints": {k: {x: v[x] for x in ("label", "params", "file_bytes")} for k, v in ckpts.items()},
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    rows = build_rows(res, ckpts)
    table = markdown(rows, meta)
    print(table, end="")
    missed = [r["operation"] for r in rows if r["met"] is False]
    print(f"\n{len(rows)} rows, {sum(r['met'] is True for r in rows)} goals met, {len(missed)} missed; "
          f"{duration:.0f} s in total")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "rows": rows, "details": res}, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    log(f"wrote {args.json}" + (f" and {args.markdown}" if args.markdown else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
