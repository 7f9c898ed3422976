"""Benchmark: the data writers against the bare library call doing the same work.

    python benchmarks/bench_data_writers.py [--params 11000000] [--repeat 3] [--json result.json]

The model is a synthetic QuantizedModel shaped like ResNet18-BNN (scaled to --params parameters):
binary int8 codes of 3x3 convs with per-channel alpha/multiplier/shift, float32 BatchNorm
vectors, a float32 stem and classifier.  No torch is involved: only the writers are timed.

- mat: `qexport mat` (structs, name map, provenance, fixed header) vs `scipy.io.savemat` of the
  same arrays;
- npy: the folder writer (manifest.json included) vs `numpy.save` of each array into a folder,
  and `--npz` vs `numpy.savez`;
- h5: `qexport h5` (groups, attributes, per-channel datasets) vs `h5py` create_dataset of each
  array in one flat file;
- txt: `qexport txt` (every value, one per line, %.9g / %d) vs `numpy.savetxt` with the same
  formats (issue 9's goal: at least 5x faster).

Each side runs --repeat times; the median is kept.  Ratios are ours / reference (below 1: we are
faster); for txt the speed-up reference / ours is printed too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# ResNet18-BNN-like conv shapes (C_out, C_in, 3, 3): 4 stages x 4 binary convs.
STAGES = ((64, 64), (128, 128), (256, 256), (512, 512))


def synthetic_qmodel(params: int):
    """A QuantizedModel shaped like ResNet18-BNN with about `params` parameters."""
    from qexport.encode.arrange import arrange
    from qexport.encode.options import EncodeOptions
    from qexport.model import (ExportTensor, Model, PlanOptions, QuantizedModel, QuantLayer, QuantPlan, Source,
                               frozen_map)  # fmt: skip

    rng = np.random.default_rng(0)
    full = sum(4 * o * i * 9 for o, i in STAGES)
    scale = max(params / full, 1e-6)
    tensors, layers = [], []
    stem = rng.standard_normal((64, 3, 3, 3)).astype(np.float32)
    tensors.append(ExportTensor("conv1.weight", stem, "conv1", "weight", "float", "oihw"))
    for s, (o, i) in enumerate(STAGES, start=1):
        o = max(1, int(round(o * np.sqrt(scale))))
        i = max(1, int(round(i * np.sqrt(scale))))
        for b in range(4):
            name = f"layer{s}.{b}.conv"
            codes = np.where(rng.standard_normal((o, i, 3, 3)) > 0, 1, -1).astype(np.int8)
            tensors.append(ExportTensor(f"{name}.weight", codes, name, "weight", "binary", "oihw",
                                        frozen_map({"values": "-1,+1"})))  # fmt: skip
            for key in ("weight", "bias", "running_mean", "running_var"):
                vec = rng.standard_normal(o).astype(np.float32)
                tensors.append(ExportTensor(f"layer{s}.{b}.bn.{key}", vec, f"layer{s}.{b}.bn", "bn", "float", "c"))
            alpha = np.abs(rng.standard_normal(o)).astype(np.float32) + 0.01
            params_ = {"n": np.asarray(i * 9, np.int32), "alpha": alpha,
                       "multiplier": rng.integers(1 << 14, 1 << 15, o).astype(np.int32),
                       "shift": rng.integers(16, 20, o).astype(np.int32),
                       "scale_error": rng.random(o) * 1e-5}  # fmt: skip
            layers.append(QuantLayer(name, "conv", "binary", 1, True, f"{name}.weight", None, frozen_map(params_)))
    fc = rng.standard_normal((10, max(1, int(512 * np.sqrt(scale))))).astype(np.float32)
    tensors.append(ExportTensor("fc.weight", fc, "fc", "weight", "float", "oi"))
    tensors.append(ExportTensor("fc.bias", rng.standard_normal(10).astype(np.float32), "fc", "bias", "float", "c"))
    n = int(sum(t.data.size for t in tensors))
    model = Model("resnet18_bnn", frozen_map({t.name: t.data for t in tensors}), (),
                  Source("bench.pth", "0" * 64, n * 4))  # fmt: skip
    return arrange(QuantizedModel(model, QuantPlan((), PlanOptions()), tuple(tensors), tuple(layers),
                                  options_text="--bench"), EncodeOptions())  # what a writer receives


def median_time(repeat: int, fn) -> float:
    """Median wall time of fn(run) over `repeat` runs; each run writes a fresh output (run = 0, 1, ...),
    as a first export does: no side gains from overwriting, or pays for replacing, an old output."""
    times = []
    for run in range(repeat):
        start = time.perf_counter()
        fn(run)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def flat_arrays(q) -> dict[str, np.ndarray]:
    return {t.name.replace(".", "_"): t.data for t in q.tensors}


def run(params: int, repeat: int, only: tuple[str, ...] = ()) -> dict:
    import h5py
    import scipy.io

    from qexport.writers import h5 as h5w, mat as matw, npy as npyw, txt as txtw

    q = synthetic_qmodel(params)
    arrays = flat_arrays(q)
    results: dict = {"params": int(sum(a.size for a in arrays.values())), "repeat": repeat, "pairs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        def pair(name, ours, reference):
            if only and name not in only:
                return
            ours(-1)  # warm-up (imports, lookup tables)
            t_ours = median_time(repeat, ours)
            t_ref = median_time(repeat, reference)
            results["pairs"][name] = {"ours_seconds": t_ours, "reference_seconds": t_ref,
                                      "ratio_ours_over_reference": t_ours / t_ref if t_ref else float("inf")}  # fmt: skip

        pair("mat", lambda r: matw.write(q, folder / f"a{r}.mat"),
             lambda r: scipy.io.savemat(folder / f"b{r}.mat", arrays))  # fmt: skip

        def np_save_folder(r):
            out = folder / f"b{r}_npy"
            out.mkdir()
            for key, a in arrays.items():
                np.save(out / f"{key}.npy", a, allow_pickle=False)

        pair("npy", lambda r: npyw.write(q, folder / f"a{r}_npy"), np_save_folder)
        pair("npz", lambda r: npyw.write(q, folder / f"a{r}.npz", npz=True),
             lambda r: np.savez(folder / f"b{r}.npz", **arrays))  # fmt: skip

        def h5py_flat(r):
            with h5py.File(folder / f"b{r}.h5", "w") as f:
                for key, a in arrays.items():
                    f.create_dataset(key, data=a)

        pair("h5", lambda r: h5w.write(q, folder / f"a{r}.h5"), h5py_flat)

        def savetxt_all(r):
            out = folder / f"b{r}_txt"
            out.mkdir()
            for key, a in arrays.items():
                fmt = "%.9g" if a.dtype.kind == "f" else "%d"
                np.savetxt(out / f"{key}.txt", a.reshape(-1), fmt=fmt, header=key)

        pair("txt", lambda r: txtw.write(q, folder / f"a{r}_txt"), savetxt_all)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=int, default=11_000_000, help="about how many parameters (default 11 M)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the median is kept (default 3)")
    parser.add_argument("--only", action="append", choices=["mat", "npy", "npz", "h5", "txt"], default=[],
                        help="run only this pair (repeatable)")  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.params < 1 or args.repeat < 1:
        parser.error("--params and --repeat must be >= 1")
    result = run(args.params, args.repeat, tuple(args.only))
    print(f"{result['params']} parameters, median of {result['repeat']} runs")
    print(f"  {'writer':<6} {'qexport s':>10} {'reference s':>12} {'ours/ref':>9}  reference")
    refs = {"mat": "scipy.io.savemat", "npy": "numpy.save per array", "npz": "numpy.savez", "h5": "h5py create_dataset",
            "txt": "numpy.savetxt"}  # fmt: skip
    for name, r in result["pairs"].items():
        extra = f"  (speed-up {1 / r['ratio_ours_over_reference']:.1f}x)" if name == "txt" else ""
        print(f"  {name:<6} {r['ours_seconds']:>10.3f} {r['reference_seconds']:>12.3f} "
              f"{r['ratio_ours_over_reference']:>9.2f}  {refs[name]}{extra}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
