"""The tflite int8 profile on the trained fixtures: float top-1, int8 top-1 (qexport's reference
executor), how many held-out digits the TFLite Micro interpreter computes exactly as the reference
(output and every intermediate tensor), the `.tflite` size and the TFLM arena (print_allocations).

    python benchmarks/bench_tflite.py                            # all 359 held-out digits, 256 calibration
    python benchmarks/bench_tflite.py --arch lenet --samples 8 --calibration 8 --json out.json

Calibration on training digits (fixtures/trained.py train_digits), plans from fixtures/trained.py
PLANS.  Needs tflite-micro.  Prints a markdown table (progress on stderr).
"""

from __future__ import annotations

import re
import subprocess
import sys
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
from bench_accuracy import fixture_bench_main  # noqa: E402

ARCHS = ("lenet", "mobilenet_v1", "twn_nin_gc")
ARENA = "import sys; from tflite_micro.python.tflite_micro import runtime as rt; rt.Interpreter.from_file(sys.argv[1]).print_allocations()"


def arena_bytes(path: Path) -> int:
    """TFLM's 'Arena allocation total' (printed by the C++ side, hence a child process)."""
    run = subprocess.run([sys.executable, "-c", ARENA, str(path)], capture_output=True, text=True, check=True)
    return int(re.search(r"Arena allocation total (\d+) bytes", run.stdout + run.stderr).group(1))


def tflm_matches(path: Path, tgraph, pixels: np.ndarray, ref: dict) -> int:
    """How many images TFLM computes with every activation tensor equal to the reference's."""
    from tflite_micro.python.tflite_micro import runtime as rt

    from qexport.tflite.flatbuffer import schema
    from qexport.tflite.reference import model_input

    data = path.read_bytes()
    fb = schema()
    names = [t.name.decode() for t in fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0)).subgraphs[0].tensors]
    compared = [(k, n) for k, n in enumerate(names) if n in ref]
    assert {n for _, n in compared} == set(ref)
    interp = rt.Interpreter.from_bytes(data, intrepreter_config=rt.InterpreterConfig.kPreserveAllTensors)
    x = model_input(tgraph, pixels)
    equal = 0
    for i in range(x.shape[0]):
        interp.set_input(x[i:i + 1], 0)
        interp.invoke()
        equal += all(np.array_equal(interp.GetTensor(k, 0)["tensor_data"].reshape(ref[n][i:i + 1].shape), ref[n][i:i + 1])
                     for k, n in compared)  # fmt: skip
    return equal


def measure(arch: str, samples: int | None, calibration: int, folder: Path) -> dict:
    from qexport.graph.execute import run_graph
    from qexport.graph.stage import model_graph
    from qexport.integer.calibrate import normalised
    from qexport.tflite.command import tflite
    from qexport.tflite.reference import run_tflite

    images, labels = trained.held_out(arch)
    if samples:  # spread over the whole set
        idx = np.linspace(0, len(images) - 1, samples).round().astype(int)
        images, labels = images[idx], labels[idx]
    pixels = images[:, None] if images.ndim == 3 else images
    train_images, _ = trained.train_digits(arch)
    np.save(folder / f"{arch}_cal.npy", train_images[:calibration])
    t0 = time.time()
    path, tgraph, qmodel, _ = tflite(trained.checkpoint(arch, folder), folder / f"{arch}.tflite",
                                     calibration_data=str(folder / f"{arch}_cal.npy"), calibration_samples=calibration,
                                     **trained.plan_kw(arch))  # fmt: skip
    graph = model_graph(qmodel.model)
    state = {k: np.asarray(v, np.float64) for k, v in qmodel.model.tensors.items() if np.asarray(v).dtype.kind == "f"}
    float_top1 = int8_top1 = equal = 0
    for k in range(0, len(labels), 32):  # batches: the reference keeps every tensor
        x, y = pixels[k:k + 32], labels[k:k + 32]
        float_top1 += int((run_graph(graph, state, normalised(x, 0.0, 1.0))[graph.output].argmax(1) == y).sum())
        ref = run_tflite(tgraph, x)
        int8_top1 += int((ref[tgraph.output].reshape(len(y), -1).argmax(1) == y).sum())
        equal += tflm_matches(path, tgraph, x, ref)
    n = len(labels)
    return {"arch": arch, "plan": " ".join(trained.PLANS[arch]), "samples": n, "calibration_samples": calibration,
            "float": float_top1 / n, "tflite_int8": int8_top1 / n, "tflm_equal": equal,
            "tflite_bytes": path.stat().st_size, "arena_bytes": arena_bytes(path), "seconds": time.time() - t0}  # fmt: skip


def markdown(rows: list[dict]) -> str:
    def pct(v):
        return f"{100 * v:.2f} %"

    lines = ["| network | plan | images | float top-1 | tflite int8 top-1 | TFLM = reference (every tensor) | "
             "`.tflite` | TFLM arena |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['arch']} | `{r['plan']}` | {r['samples']} (cal. {r['calibration_samples']}) | "
                     f"{pct(r['float'])} | {pct(r['tflite_int8'])} | {r['tflm_equal']} / {r['samples']} | "
                     f"{r['tflite_bytes']:,} B | {r['arena_bytes']:,} B |".replace(",", " "))  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> None:
    fixture_bench_main(argv, __doc__, ARCHS, measure, markdown, "tflite", "The tflite int8 profile on the trained fixtures")

if __name__ == "__main__":
    main()
