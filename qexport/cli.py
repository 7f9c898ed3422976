"""The `qexport` command line.

Start-up stays light: `qexport --help` imports click and this module only (no numpy, no torch).
Commands are loaded when invoked; writer commands are built from the writer registry, so a
third-party writer plugin gets a command like the built-ins.  Library errors (QexportError) become
click errors here and nowhere else: one line on stderr, exit 1 (2 for usage), no traceback
unless --debug.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

import click

from . import __version__, interrupts

# Commands that are not writers: name -> ("module:attr", one-line help shown by --help).
COMMANDS = {
    "inspect": ("qexport.commands:inspect_cmd", "Show architecture, tensors, plan and sizes of a checkpoint."),
    "formats": ("qexport.commands:formats_cmd", "List reader and writer plugins (built-in and third-party)."),
    "golden": ("qexport.golden:golden_cmd", "Per-layer integer activations (golden vectors) for RTL/firmware checks."),
    "eval": ("qexport.integer.command:eval_cmd", "Top-1 of the float and the integer network on labelled images."),
    "csource": ("qexport.csource.command:csource_cmd", "C99 source of the integer graph (no malloc, no float)."),
    "tflite": ("qexport.tflite.command:tflite_cmd", "TFLite int8 model (.tflite) of the network, checked by TFLite Micro."),
    "cifar-bmp": ("qexport.cifar_cli:cifar_bmp_cmd", "Convert CIFAR-10/100 python pickles to BMP or PNG images."),
}


def _debug(ctx: click.Context | None) -> bool:
    root = ctx.find_root() if ctx else None
    return bool(os.environ.get("QEXPORT_DEBUG")) or bool(root and (root.obj or {}).get("debug"))


class QexportGroup(click.Group):
    """Lazy command loading, registry-driven writer commands, one place for error conversion."""

    def list_commands(self, ctx):
        from .registry import writer_names

        return sorted(set(COMMANDS) | set(writer_names()))

    def get_command(self, ctx, name):
        if name in COMMANDS:
            module_name, _, attr = COMMANDS[name][0].partition(":")
            return getattr(importlib.import_module(module_name), attr)
        from .registry import writer_names

        if name in writer_names():
            from .commands import writer_command

            return writer_command(name)
        return None

    def format_commands(self, ctx, formatter):
        # Uses the registry's help strings: listing commands must not import any plugin module, nor
        # importlib.metadata (help_entries reads the entry points files directly).
        from .registry import help_entries

        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        rows += [(e.name, f"Export: {e.help}.") for e in help_entries("writers")]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))

    def invoke(self, ctx):
        from .errors import QexportError

        try:
            return super().invoke(ctx)
        except QexportError as exc:
            if _debug(ctx):
                raise
            if exc.exit_code == 2:
                raise click.UsageError(str(exc), ctx=None) from None
            err = click.ClickException(str(exc))
            err.exit_code = exc.exit_code
            raise err from None
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            # The atomic writers have removed their temporary files: nothing partial is left.
            by = f" by {interrupts.signal_name()}" if interrupts.received else ""
            raise click.ClickException(f"interrupted{by}; no partial output was left") from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # a bug, not bad input: still one line unless --debug
            if _debug(ctx):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {exc}; rerun with --debug for the traceback"
            ) from None


@click.group(cls=QexportGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qexport")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx, debug):
    """Export trained PyTorch networks to firmware, FPGA, MATLAB, HDF5, numpy and ONNX,
    with exact integer quantization.  Typical: `qexport cheader --bits 8 model.pth`."""
    ctx.obj = {"debug": debug}


def _interrupt(signum, frame):
    # SIGINT and SIGTERM unwind as KeyboardInterrupt, so atomic writers delete their temporary
    # files; the signal is also recorded, for the commit check when C code swallows the exception.
    interrupts.record(signum)
    raise KeyboardInterrupt


def main(argv=None):
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        cli.main(args=argv, prog_name="qexport", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - click converts it to Abort normally
        click.echo("Error: interrupted; nothing was written", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
