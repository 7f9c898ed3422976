"""Benchmark `qexport cifar-bmp` on a full-size CIFAR-10 (issue 7, goal from issue 9: <= 2x the floor).

A CIFAR-10 set in the original format (Python 2 protocol-2 pickles, 5 x 10000 training images and
10000 test images by default) is generated into a temporary folder first, outside the timing.
Four ways of producing the same 60 000 BMP files (3126 bytes each) are then timed, each into a
fresh output folder, interleaved over --runs rounds (order rotated each round); the median is
reported, with the median of same-round ratios to the floor:

  floor    plain os.open/os.write/os.close of 60 000 files of the final size, paths and contents
           prepared beforehand: the cost of creating the files at all
  atomic_floor  the same plus what per-file atomicity costs at least: temporary name + rename
  qexport  qexport.cifar.convert(): load + validate pickles, build the BMPs, atomic write per file
  pillow   seed-style loop: trusted pickle.load, then Image.fromarray(img).save(path, "BMP") per image

Dirty pages are flushed (os.sync) before every timed run, so one run's write-back does not land in
the next one's timing, and outputs are deleted only at the very end (mass deletion, with TRIM on a
`discard` mount, made the following rounds several times slower).  Scratch space needed:
about n x 4 KB x 4 methods x runs (5 GB for the defaults).

    python benchmarks/bench_cifar.py [--n 60000] [--runs 3] [--json results.json] [--dir TMP]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # cifar_data: the original-format generator shared with the tests
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cifar_data import make_cifar10  # noqa: E402
from qexport import cifar  # noqa: E402

BMP_SIZE = 14 + 40 + 32 * 32 * 3


def sizes_for(n: int) -> tuple[list[int], int]:
    """5 training batches and one test batch, in the real 5:1 proportion (10000 each for 60000)."""
    train = n * 5 // 6
    batches = [train // 5 + (1 if j < train % 5 else 0) for j in range(5)]
    return batches, n - train


def expected_names(made) -> list[str]:
    names = []
    for split in ("train", "test"):
        labels = made.splits[split].labels["fine"]
        names += [f"{split}/{int(lab)}_{i}.bmp" for i, lab in enumerate(labels)]
    return names


def run_floor(src: Path, out: Path, names: list[str]) -> float:
    payload = bytes(range(256)) * (BMP_SIZE // 256) + bytes(BMP_SIZE % 256)
    for split in ("train", "test"):
        (out / split).mkdir(parents=True)
    paths = [str(out / n) for n in names]
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    t0 = time.perf_counter()
    for p in paths:
        fd = os.open(p, flags, 0o644)
        os.write(fd, payload)
        os.close(fd)
    return time.perf_counter() - t0


def run_atomic_floor(src: Path, out: Path, names: list[str]) -> float:
    """The floor of writing each file atomically: temporary name, write, close, rename (dir-relative)."""
    payload = bytes(range(256)) * (BMP_SIZE // 256) + bytes(BMP_SIZE % 256)
    fds = {}
    for split in ("train", "test"):
        (out / split).mkdir(parents=True)
        fds[split] = os.open(out / split, os.O_RDONLY)
    jobs = [(fds[n.split("/")[0]], n.split("/")[1], "." + n.split("/")[1] + ".tmp") for n in names]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    t0 = time.perf_counter()
    for dfd, name, tmp in jobs:
        fd = os.open(tmp, flags, 0o644, dir_fd=dfd)
        os.write(fd, payload)
        os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    elapsed = time.perf_counter() - t0
    for fd in fds.values():
        os.close(fd)
    return elapsed


def run_qexport(src: Path, out: Path, names: list[str]) -> float:
    t0 = time.perf_counter()
    result = cifar.convert(src, out)
    elapsed = time.perf_counter() - t0
    assert result.total == len(names)
    return elapsed


def run_pillow(src: Path, out: Path, names: list[str]) -> float:
    from PIL import Image

    t0 = time.perf_counter()
    for split in ("train", "test"):
        (out / split).mkdir(parents=True)
    index = 0
    for j in range(1, 6):
        with open(src / f"data_batch_{j}", "rb") as fh:
            d = pickle.load(fh, encoding="bytes")  # trusted: the seed's way
        for i in range(len(d[b"data"])):
            img = np.reshape(d[b"data"][i], (3, 32, 32)).transpose(1, 2, 0)
            Image.fromarray(img).save(out / "train" / f"{d[b'labels'][i]}_{index}.bmp", "BMP")
            index += 1
    with open(src / "test_batch", "rb") as fh:
        d = pickle.load(fh, encoding="bytes")
    for i in range(len(d[b"data"])):
        img = np.reshape(d[b"data"][i], (3, 32, 32)).transpose(1, 2, 0)
        Image.fromarray(img).save(out / "test" / f"{d[b'labels'][i]}_{i}.bmp", "BMP")
    return time.perf_counter() - t0


METHODS = {"floor": run_floor, "atomic_floor": run_atomic_floor, "qexport": run_qexport, "pillow": run_pillow}


def check_output(out: Path, names: list[str], made, with_content: bool) -> None:
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == sorted(names), "output file names differ from the expected set"
    assert all((out / n).stat().st_size == BMP_SIZE for n in names[:: max(1, len(names) // 97)])
    if with_content:  # qexport and pillow must agree byte for byte with Pillow's encoder
        from PIL import Image
        import io

        data = made.splits["train"].data
        for i in (0, len(data) // 2, len(data) - 1):
            buf = io.BytesIO()
            Image.fromarray(np.reshape(data[i], (3, 32, 32)).transpose(1, 2, 0)).save(buf, "BMP")
            label = int(made.splits["train"].labels["fine"][i])
            assert (out / "train" / f"{label}_{i}.bmp").read_bytes() == buf.getvalue()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60000, help="images in total (default 60000, the real CIFAR-10)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per method (median reported)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="bench_cifar_", dir=args.dir))
    try:
        batches, test = sizes_for(args.n)
        t0 = time.perf_counter()
        made = make_cifar10(scratch, batch_sizes=batches, test_size=test)
        gen = time.perf_counter() - t0
        names = expected_names(made)
        print(f"generated {args.n} images ({batches} + test {test}) in {gen:.1f}s under {scratch}", file=sys.stderr)
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        loads = []
        order = list(METHODS)
        for r in range(args.runs):
            for method in order[r % len(order) :] + order[: r % len(order)]:  # rotate, so no method always follows another
                out = scratch / f"out_{method}_{r}"  # kept until the end: no deletion during the rounds
                os.sync()
                loads.append(os.getloadavg()[0])
                times[method].append(METHODS[method](made.root, out, names))
                print(f"run {r + 1}/{args.runs} {method:8s} {times[method][-1]:8.2f}s", file=sys.stderr)
                if r == 0:
                    check_output(out, names, made, with_content=method in ("qexport", "pillow"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    med = {m: statistics.median(v) for m, v in times.items()}
    result = {
        "n": args.n,
        "runs": args.runs,
        "file_bytes": BMP_SIZE,
        "python": platform.python_version(),
        "timings": {m: {"median_s": med[m], "all_s": times[m], "images_per_s": args.n / med[m]} for m in METHODS},
        "ratio_to_floor": {m: med[m] / med["floor"] for m in METHODS},
        # Same-round ratios: less sensitive to a disk whose speed drifts between rounds.
        "median_round_ratio_to_floor": {
            m: statistics.median(t / f for t, f in zip(times[m], times["floor"])) for m in METHODS
        },
        "scratch_dir": str(args.dir or tempfile.gettempdir()),
        "load_average_at_runs": loads,
    }
    rr = result["median_round_ratio_to_floor"]
    print(f"\n{'method':12s} {'median s':>10s} {'images/s':>10s} {'x floor':>8s} {'x floor/round':>14s}")
    for m in METHODS:
        print(f"{m:12s} {med[m]:10.2f} {args.n / med[m]:10.0f} {med[m] / med['floor']:8.2f} {rr[m]:14.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
