"""`qexport tflite MODEL --calibrate DATA -o model.tflite`: the network in TFLite's int8 profile as a
`.tflite` flatbuffer (README "TFLite")."""

from __future__ import annotations

from pathlib import Path

import click

from ..options import calibration_options, model_argument, plan_options


def calibration_for(qmodel, calibration_data, calibration_samples=256, percentile=None, mean=None, std=None):
    """The Calibration of the CLI's calibration options (the same images and ranges as the default profile)."""
    from ..data import load_data, parse_normalisation
    from ..errors import UsageError
    from ..graph.stage import network_input_shape
    from ..integer.calibrate import calibrate

    if not calibration_data:
        raise UsageError("give --calibrate DATA: the int8 activation ranges come from real images")
    shape = network_input_shape(qmodel.model)
    m, s = parse_normalisation(mean, std, shape[0])
    images = load_data(calibration_data, channels=shape[0], size=tuple(shape[1:]), limit=calibration_samples).images
    return calibrate(qmodel, images, m, s, percentile=percentile)


def tflite(model_path=None, output=None, input_type: str = "int8", calibration_data=None,
           calibration_samples: int = 256, percentile=None, mean=None, std=None, **plan_kw):  # fmt: skip
    """Library entry point: (path written, TflGraph, QuantizedModel, notes)."""
    from ..atomic import atomic_file
    from ..prepare import checkpoint_stem, find_default_model, prepare
    from ..quantize.plan import seed_unless_asked
    from .flatbuffer import schema, tflite_bytes
    from ..graph.stage import model_graph
    from .profile import lower_tflite, refuse_binarized

    model_path = Path(model_path) if model_path else find_default_model()
    out = Path(output) if output else Path(f"{checkpoint_stem(model_path)}.tflite")
    schema()  # a missing tflite-micro is said before any work
    seed_note = seed_unless_asked(plan_kw, "the weights the tflite profile re-quantizes")
    cal_kw = {"calibrate": calibration_data and Path(calibration_data).name, "percentile": percentile,
              "mean": mean, "std": std, "calibration_samples": calibration_samples if calibration_data else None}
    prepared = prepare(model_path, command="tflite", plan_kw=plan_kw, needs_graph=True, outputs=(out,),
                       text_kw={**plan_kw, "input_type": input_type, **cal_kw})  # fmt: skip
    refuse_binarized(model_graph(prepared.quantized.model))  # before the slow calibration
    cal = calibration_for(prepared.quantized, calibration_data, calibration_samples, percentile, mean, std)
    tgraph = lower_tflite(prepared.quantized, cal, input_type)  # every refusal before anything is written
    data = tflite_bytes(tgraph, prepared.quantized.provenance())
    with atomic_file(out) as fh:
        fh.write(data)
    notes = ((seed_note,) if seed_note else ()) + prepared.quantized.notes
    return out, tgraph, prepared.quantized, notes


@click.command("tflite")
@model_argument
@click.option("-o", "--output", type=click.Path(readable=False, path_type=str),
              help="Output file (default: <checkpoint name>.tflite).")
@click.option("--input-type", type=click.Choice(["int8", "uint8"]), default="int8", show_default=True,
              help="int8: the input is pixel - 128; uint8: raw pixels, then a QUANTIZE to int8.")
@calibration_options
@plan_options
def tflite_cmd(model, output, input_type, **kw):
    """The network as a TFLite int8 model (.tflite): per-channel int8 weights, int8 activations
    calibrated on real data, checked against the TFLite Micro interpreter."""
    from ..export import print_notes

    path, tgraph, qmodel, notes = tflite(model, output, input_type, **kw)
    print_notes(notes + qmodel.model.notes + ((qmodel.model.assumption,) if qmodel.model.assumption else ()))
    click.echo(f"qexport: {len(tgraph.ops)} TFLite operators ({', '.join(sorted({o.op for o in tgraph.ops}))})", err=True)
    click.echo(f"qexport: wrote {path}", err=True)
