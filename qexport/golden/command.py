"""`qexport golden`: load and quantize the checkpoint, read the inputs, compute the golden vectors
of its architecture and write them."""

from __future__ import annotations

from pathlib import Path

import click

from ..encode.options import EncodeOptions
from ..errors import CannotHandle, UsageError
from ..model import QuantizedModel
from ..options import calibration_options, model_argument, plan_options
from ..prepare import require_graph
from .binary import binary_golden, binary_layers
from .inputs import load_inputs
from .lenet import lenet_golden, lenet_graph_difference
from .output import FORMATS, write_golden
from .stages import Golden, Inputs

ACTIVATIONS = ("gain", "uint8")


def golden_vectors(qmodel: QuantizedModel, inputs: Inputs, layers=(), encoding: EncodeOptions | None = None) -> Golden:
    """The golden vectors the network's graph allows (README "Golden vectors"): the integer pass of
    seed 002's LeNet graph, or the XNOR/popcount data of every binary conv/linear layer whose input
    is binarized; `encoding` gives the word size and layout of packed binary data."""
    require_graph(qmodel.model, "golden")
    lenet = lenet_graph_difference(qmodel.model)
    if lenet is None:
        if layers:
            raise UsageError("--layer selects binary layers; the LeNet integer pass always gives every stage")
        return lenet_golden(qmodel, inputs)
    if binary_layers(qmodel):
        return binary_golden(qmodel, inputs, layers, encoding or EncodeOptions())
    raise CannotHandle(f"{qmodel.model.source.name}: golden vectors exist for seed 002's LeNet graph (integer pass) and "
                       f"for binary conv/linear layers with binarized input; this network has neither ({lenet}; no "
                       f"binary layer with binarized input in this plan)")  # fmt: skip


def activations_for(activations: str | None, calibration_data) -> str:
    """`--activations`: gain (LeNet's pass in 1/G units) or uint8 (the calibrated integer graph);
    unset, uint8 exactly when calibration data is given (what golden did before the option)."""
    if activations is None:
        return "uint8" if calibration_data else "gain"
    if activations not in ACTIVATIONS:
        raise UsageError(f"--activations {activations!r}: choose one of {', '.join(ACTIVATIONS)}")
    if activations == "uint8" and not calibration_data:
        raise UsageError("--activations uint8 is the calibrated integer graph: give --calibrate DATA too "
                         "(or --activations gain for LeNet's fixed-input-gain pass)")  # fmt: skip
    if activations == "gain" and calibration_data:
        raise UsageError("--activations gain is the fixed-input-gain pass and is not calibrated: drop --calibrate, "
                         "or use --activations uint8 for the calibrated integer graph")  # fmt: skip
    return activations


def golden(model_path=None, inputs=(), output=None, fmt: str = "npy", samples: int | None = None, layers=(),
           calibration_data=None, calibration_samples: int = 256, percentile: float | None = None,
           mean: str | None = None, std: str | None = None, activations: str | None = None,
           **plan_kw):  # fmt: skip
    """Library entry point: (output folder, Golden, QuantizedModel).  With calibration_data
    (activations "uint8"): the integer graph's golden vectors, every node (README "Integer
    inference"); without ("gain"): the LeNet integer pass, or binary layers' popcount data."""
    from dataclasses import replace

    from ..encode.options import encode_options_from
    from ..prepare import checkpoint_stem, find_default_model, prepare
    from ..quantize.plan import seed_unless_asked

    model_path = Path(model_path) if model_path else find_default_model()
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    explicit_gain = activations == "gain"
    activations = activations_for(activations, calibration_data)
    encoding = encode_options_from(**plan_kw)
    out = Path(output) if output else Path(checkpoint_stem(model_path) + "_golden")
    seed_note = seed_unless_asked(plan_kw)  # golden vectors are integers: --plan seed unless asked
    cal_kw = {"calibrate": calibration_data and Path(calibration_data).name, "percentile": percentile,
              "mean": mean, "std": std, "calibration_samples": calibration_samples if calibration_data else None}
    prepared = prepare(model_path, command="golden", plan_kw=plan_kw, outputs=(out,), needs_graph=True,
                       text_kw={**plan_kw, "format": fmt, "layer": tuple(layers), **cal_kw})  # fmt: skip
    qmodel = prepared.quantized
    qmodel = replace(qmodel, notes=(seed_note,) + qmodel.notes) if seed_note else qmodel
    from ..graph.stage import network_input_shape

    shape = network_input_shape(qmodel.model)
    data = load_inputs(inputs, samples, shape, qmodel.model.graph_origin or qmodel.arch)
    if calibration_data:
        from ..integer.calibrate import calibrated_graph
        from .integer import integer_golden

        if layers:
            raise UsageError("--layer selects binary layers; the integer graph's golden vectors give every node")
        igraph, cal, _, _ = calibrated_graph(qmodel, calibration_data, calibration_samples, percentile, mean, std)
        g = integer_golden(igraph, data, cal)
    elif mean or std or percentile is not None:
        raise UsageError("--mean, --std and --percentile shape the integer graph: give --calibrate DATA too")
    else:
        difference = lenet_graph_difference(qmodel.model) if explicit_gain else None
        if difference is not None:
            raise CannotHandle(f"{qmodel.model.source.name}: --activations gain is seed 002's LeNet integer pass and "
                               f"this network differs ({difference}); give --calibrate DATA for the integer graph, or "
                               f"leave --activations out for its binary layers' popcount data")  # fmt: skip
        g = golden_vectors(qmodel, data, tuple(layers), encoding)
    write_golden(qmodel, g, out, fmt)
    return out, g, qmodel


@click.command("golden")
@model_argument
@click.option("-i", "--input", "inputs", multiple=True, type=click.Path(readable=False, path_type=str), metavar="FILE",
              help="Input images: an image file (PNG/BMP/PGM... converted to the model's channels), a .npy of "
                   "uint8 images, or a .npz with 'images' (and 'labels'). Repeatable.")
@click.option("-n", "--samples", type=int, default=None, metavar="N",
              help="Use the first N inputs; without --input, the first N of the digits test split (LeNet).")
@click.option("-o", "--output", type=click.Path(readable=False, path_type=str),
              help="Output folder (default: <checkpoint>_golden).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="npy", show_default=True,
              help="npy: one .npy per stage; mem: one $readmemh .mem per stage; cheader: golden.h.")
@click.option("--layer", "layers", multiple=True, metavar="GLOB",
              help="Binary architectures: only the binary layers matching GLOB (repeatable; default: all).")
@click.option("--activations", type=click.Choice(ACTIVATIONS), default=None,
              help="gain: LeNet's integer pass, integers in 1/G units (--input-gain), no calibration; uint8: the "
                   "calibrated integer graph, every node (needs --calibrate). Default: uint8 with --calibrate, "
                   "else gain.")
@calibration_options
@plan_options
def golden_cmd(model, inputs, samples, output, fmt, layers, activations, calibration_data, calibration_samples,
               percentile, mean, std, **kw):  # fmt: skip
    """Golden vectors: per-layer integer activations of the reference pass (LeNet) or the
    XNOR/popcount outputs of binary layers, for checking firmware or RTL layer by layer."""
    from ..export import print_notes, write_report

    out, g, qmodel = golden(model, inputs, output, fmt, samples, layers, calibration_data, calibration_samples,
                            percentile, mean, std, activations, **kw)  # fmt: skip
    if not model:
        click.echo(f"qexport: using {qmodel.model.source.name}", err=True)
    from ..commands import assumed_network

    print_notes(qmodel.model.notes + qmodel.notes + tuple(g.notes) + assumed_network(qmodel.model))
    if kw.get("report"):
        write_report(qmodel, kw["report"])
    if kw.get("verbose"):
        from ..report import format_report

        click.echo(format_report(qmodel), err=True)
    n = int(g.inputs.images.shape[0])
    if g.accuracy is not None:
        click.echo(f"qexport: golden: {n} input(s), accuracy {g.accuracy:.4f} against the labels "
                   f"({'float model, dequantized weights' if g.kind == 'binary-popcount' else 'integer pass'})",
                   err=True)  # fmt: skip
    click.echo(f"qexport: wrote {out} ({len(g.stages)} stages, {n} input(s))", err=True)
