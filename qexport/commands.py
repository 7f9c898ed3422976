"""The `inspect` and `formats` commands, and the factory that builds one command per writer."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import SHARED_OPTION_NAMES, calibration_options, model_argument, output_option, plan_options


def _split(kw: dict) -> tuple[dict, dict]:
    plan = {k: kw.pop(k) for k in list(kw) if k in SHARED_OPTION_NAMES}
    return plan, kw


def assumed_network(model) -> tuple[str, ...]:
    """What qexport assumed about the network (a documented architecture without --model-def), as a
    note every command prints; the same text is in every output's provenance."""
    return (model.assumption,) if model.assumption else ()


def writer_command(name: str) -> click.Command:
    from . import registry

    writer = registry.load_writer(name)

    @click.pass_context
    def run(ctx, model, output, **kw):
        from .export import export, print_notes
        from .report import format_report

        plan_kw, writer_kw = _split(kw)
        outs, qmodel = export(name, model, output, writer_options=writer_kw, **plan_kw)
        if not model:
            click.echo(f"qexport: using {qmodel.model.source.name}", err=True)
        print_notes(qmodel.model.notes + qmodel.notes + assumed_network(qmodel.model))
        if plan_kw.get("verbose"):
            click.echo(format_report(qmodel), err=True)
        click.echo(f"qexport: wrote {' and '.join(map(str, outs))}", err=True)

    kind = "folder" if writer.output_is_dir else "file"
    cmd = click.Command(name, callback=run, help=writer.help, short_help=writer.help.split("\n")[0])
    cmd.params = []
    decorated = model_argument(output_option(f"Output {kind} (default: <checkpoint name>{writer.suffix}).")(plan_options(lambda: None)))
    cmd.params.extend(decorated.__click_params__[::-1])
    cmd.params.extend(writer.options)
    return cmd


@click.command("inspect")
@model_argument
@plan_options
@click.option("--graph", "show_graph", is_flag=True,
              help="Print only the network graph (README \"The network graph\").")
@calibration_options
def inspect_cmd(model, show_graph=False, calibration_data=None, calibration_samples=256, percentile=None, mean=None,
                std=None, **kw):  # fmt: skip
    """Show the detected architecture, every tensor, the plan that would apply, the sizes and the
    network graph (traced from the module that defines it); with --calibrate DATA also the flash,
    RAM and accumulator widths of `qexport csource`'s C for the plan."""
    from .graph.command import graph_report
    from .inspect_model import inspect_text
    from .prepare import find_default_model, plan_options_from, prepare

    path = Path(model) if model else find_default_model()
    if not model:
        click.echo(f"qexport: using {path.name}", err=True)
    prepared = prepare(path, command="inspect", plan_kw=kw, quantize_model=False)
    if show_graph:
        click.echo(graph_report(prepared.model))
        return
    click.echo(inspect_text(prepared.model, plan_options_from(**kw)))
    if prepared.model.has_graph:
        click.echo("\n" + graph_report(prepared.model, header=False))
    if calibration_data:
        from .csource.footprint import footprint, footprint_text
        from .integer.calibrate import calibrated_graph
        from .prepare import options_text, quantize

        qmodel = quantize(prepared.model, plan_options_from(**kw), options_text(kw))
        igraph = calibrated_graph(qmodel, calibration_data, calibration_samples, percentile, mean, std)[0]
        click.echo("\nC source (qexport csource) of the integer graph:\n" + footprint_text(footprint(igraph)))
    if kw.get("verbose") or kw.get("report"):
        from .export import print_notes, write_report
        from .prepare import options_text, quantize
        from .report import format_report

        qmodel = quantize(prepared.model, plan_options_from(**kw), options_text(kw))
        print_notes(qmodel.notes)
        if kw.get("verbose"):
            click.echo(format_report(qmodel), err=True)
        if kw.get("report"):
            write_report(qmodel, kw["report"])


@click.command("formats")
def formats_cmd():
    """List reader and writer plugins, built-in and third-party (no plugin is imported)."""
    from .registry import entries

    for kind in ("readers", "writers"):
        click.echo(f"{kind}:")
        for e in entries(kind):
            origin = "built-in" if e.builtin else f"plugin ({e.dist or 'unknown package'})"
            click.echo(f"  {e.name:<20} {origin:<10} {e.help}  [{e.target}]")
    sys.stdout.flush()
