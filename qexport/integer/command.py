"""`qexport eval MODEL --data DATA [--calibrate DATA]`: top-1 of the float network as trained, of
the float network the plan stands for, and of the integer graph (README "Integer inference")."""

from __future__ import annotations

import click

from ..options import calibration_options, model_argument, plan_options


def evaluate(model_path=None, data=None, calibration_data=None, calibration_samples: int = 256,
             percentile: float | None = None, mean: str | None = None, std: str | None = None,
             samples: int | None = None, arithmetic: str = "default", **plan_kw) -> dict:  # fmt: skip
    """Library entry point: {"samples", "float", "planned", "integer", "notes", "graph"} (accuracies
    as fractions; None without labels)."""
    import numpy as np

    from ..data import load_data
    from ..errors import UsageError
    from ..graph.execute import run_graph
    from ..graph.stage import model_graph
    from ..prepare import prepare
    from ..quantize.plan import seed_unless_asked
    from .calibrate import calibrated_graph, normalised
    from .fold_input import fold_input_std
    from .network import planned_network
    from .run import run_integer

    if not data:
        raise UsageError("give --data DATA (images with labels: .npy/.npz, an image folder, CIFAR or MNIST files)")
    seed_note = seed_unless_asked(plan_kw, "the integer graph's weights")
    prepared = prepare(model_path, command="eval", plan_kw=plan_kw, needs_graph=True)
    qmodel = prepared.quantized
    graph = model_graph(qmodel.model)
    channels, *size = graph.input_shape
    evaluation = load_data(data, channels=channels, size=tuple(size), limit=samples)
    x = evaluation.images
    if arithmetic == "tflite":  # the tflite int8 profile (README "TFLite")
        from ..tflite.command import calibration_for
        from ..tflite.evaluate import tflite_outputs

        cal = calibration_for(qmodel, calibration_data or data, calibration_samples, percentile, mean, std)
        m, s = cal.mean, cal.std
        codes, rows = tflite_outputs(qmodel, cal, x)
    else:
        igraph, cal, m, s = calibrated_graph(qmodel, calibration_data or data, calibration_samples, percentile, mean, std)
    float_logits = run_graph(graph, {k: np.asarray(v) for k, v in qmodel.model.tensors.items()},
                             normalised(x, m, s))[graph.output]  # fmt: skip
    folded, folded_std = fold_input_std(qmodel, s)  # the plan the integer graph was lowered from
    pgraph, state = planned_network(folded)
    planned = run_graph(pgraph, state, normalised(x, m, folded_std))
    planned_logits = planned[pgraph.output]
    if arithmetic != "tflite":
        all_codes = run_integer(igraph, x)
        codes = all_codes[igraph.output].reshape(x.shape[0], -1)
        rows = [(n.name, n.op, n.source or (n.name,), n.out.real(all_codes[n.name])) for n in igraph.nodes]
    y = evaluation.labels
    nodes = [{"node": name, "op": op, "computes": list(computes), "sqnr_db": node_sqnr(planned[computes[-1]], real)}
             for name, op, computes, real in rows if computes[-1] in planned]  # fmt: skip

    def top1(pred):
        return None if y is None else float(np.mean(pred == y))

    notes = ((seed_note,) if seed_note else ()) + qmodel.model.notes + qmodel.notes
    if not calibration_data:
        notes += (f"calibrated on the first {cal.samples} images of the evaluation data; give --calibrate for "
                  f"separate calibration data",)  # fmt: skip
    return {"samples": int(x.shape[0]), "float": top1(float_logits.argmax(1)), "planned": top1(planned_logits.argmax(1)),
            "integer": top1(codes.argmax(1)), "notes": notes, "assumption": qmodel.model.assumption,
            "calibration_samples": cal.samples, "nodes": nodes}  # fmt: skip


def node_sqnr(reference, got) -> float | None:
    """10 log10(sum ref^2 / sum (ref - got)^2) in dB: the integer activations against the float
    network of the plan (what ST's validate and ONNX Runtime's qdq_loss_debug report); None when
    they are equal (infinite) or the reference is all zero."""
    import numpy as np

    ref, err = np.asarray(reference, np.float64), np.asarray(reference, np.float64) - np.asarray(got, np.float64)
    signal, noise = float(np.sum(ref * ref)), float(np.sum(err * err))
    if noise == 0.0 or signal == 0.0:
        return None
    return float(10.0 * np.log10(signal / noise))


@click.command("eval")
@model_argument
@click.option("--data", metavar="DATA", help="Evaluation images with labels (.npy/.npz, image folder, CIFAR, MNIST).")
@click.option("-n", "--samples", type=click.IntRange(1), default=None, help="Evaluate the first N images.")
@click.option("--arithmetic", type=click.Choice(["default", "tflite"]), default="default", show_default=True,
              help="The integer graph's profile: qexport's uint8 contract, or TFLite's int8 (README \"TFLite\").")
@calibration_options
@plan_options
def eval_cmd(model, **kw):
    """Top-1 accuracy of the float network, of the plan's dequantized network and of the integer
    graph (uint8 activations calibrated on real data) on labelled images."""
    from ..export import print_notes

    result = evaluate(model, **kw)
    print_notes(result["notes"] + ((result["assumption"],) if result["assumption"] else ()))

    def text(v):
        return "n/a (no labels)" if v is None else f"{100 * v:.2f} %"

    click.echo(f"images:            {result['samples']} (calibrated on {result['calibration_samples']})")
    click.echo(f"float (as trained): {text(result['float'])}")
    click.echo(f"float (plan):       {text(result['planned'])}")
    click.echo(f"integer graph:      {text(result['integer'])}" + (" (tflite int8)" if kw.get("arithmetic") == "tflite" else ""))
    click.echo("")
    click.echo(f"{'node':<28} {'op':<18} SQNR vs the plan's float network")
    for row in result["nodes"]:
        sqnr = "exact" if row["sqnr_db"] is None else f"{row['sqnr_db']:.1f} dB"
        click.echo(f"{row['node']:<28} {row['op']:<18} {sqnr}")
    if kw.get("report"):
        import json

        from ..atomic import atomic_file

        with atomic_file(kw["report"], "w") as fh:
            json.dump({k: v for k, v in result.items() if k != "notes"} | {"notes": list(result["notes"])}, fh,
                      indent=2, sort_keys=True, allow_nan=False)  # fmt: skip
            fh.write("\n")
