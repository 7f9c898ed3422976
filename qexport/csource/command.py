"""`qexport csource MODEL --calibrate DATA -o DIR`: C source of the integer graph (README "C source")."""

from __future__ import annotations

from pathlib import Path

import click

from ..options import calibration_options, model_argument, plan_options


def csource(model_path=None, output=None, name: str | None = None, calibration_data=None,
            calibration_samples: int = 256, percentile=None, mean=None, std=None, **plan_kw):  # fmt: skip
    """Library entry point: (files written, IntGraph, QuantizedModel)."""
    from ..integer.calibrate import calibrated_graph
    from ..prepare import checkpoint_stem, find_default_model, prepare
    from ..encode.options import encode_options_from
    from ..quantize.plan import seed_unless_asked
    from . import generate

    model_path = Path(model_path) if model_path else find_default_model()
    name = name or checkpoint_stem(model_path).replace("-", "_").replace(".", "_")
    out = Path(output) if output else Path(f"{name}_csource")
    encoding = encode_options_from(True, **plan_kw)  # usage errors before anything is loaded
    seed_note = seed_unless_asked(plan_kw, "the integer graph's weights")
    prepared = prepare(model_path, command="csource", plan_kw=plan_kw, needs_graph=True, outputs=(out,))
    igraph, cal, _, _ = calibrated_graph(prepared.quantized, calibration_data, calibration_samples, percentile,
                                         mean, std)  # fmt: skip
    files = generate(igraph, name)  # every refusal (an op without a kernel) before anything is written
    from ..atomic import atomic_dir
    from ..encode.arrange import arrange
    from ..writers import cheader

    encoded = arrange(prepared.quantized, encoding)
    with atomic_dir(out) as tmp:  # all files or none
        for filename in sorted(files):
            (tmp / filename).write_bytes(files[filename])
        cheader.write(encoded, tmp / f"{name}.h")  # the parameter header `qexport cheader` writes for this plan
    notes = ((seed_note,) if seed_note else ()) + prepared.quantized.notes
    return sorted([out / f for f in files] + [out / f"{name}.h"]), igraph, prepared.quantized, notes


@click.command("csource")
@model_argument
@click.option("-o", "--output", type=click.Path(readable=False, path_type=str),
              help="Output folder (default: <checkpoint name>_csource).")
@click.option("--name", default=None, help="C prefix of the API (default: the checkpoint's name).")
@calibration_options
@plan_options
def csource_cmd(model, output, name, **kw):
    """C99 source of the integer graph: <name>_inference.h/.c, no malloc, no float, one static arena,
    and <name>.h, the parameter header `qexport cheader` writes for the same plan.  -v: flash, RAM
    and every node's accumulator width."""
    from ..export import print_notes

    files, igraph, qmodel, notes = csource(model, output, name, **kw)
    print_notes(notes + qmodel.model.notes + ((qmodel.model.assumption,) if qmodel.model.assumption else ()))
    wide = sum(1 for n in igraph.nodes if n.attrs.get("acc_bits") == 64)
    click.echo(f"qexport: integer graph of {len(igraph.nodes)} nodes ({wide} with int64 accumulators)", err=True)
    if kw.get("verbose"):
        from .footprint import footprint, footprint_text

        click.echo(footprint_text(footprint(igraph)), err=True)
    click.echo(f"qexport: wrote {' and '.join(str(f) for f in files)}", err=True)
