"""`qexport cifar-bmp`: CIFAR-10/100 python pickles to BMP or PNG images (library: qexport.cifar).

Imports neither torch nor the model pipeline.  Errors are QexportError subclasses raised by the
library; the group in qexport.cli turns them into one-line messages.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click


@click.command("cifar-bmp", short_help="Convert CIFAR-10/100 python pickles to BMP or PNG images.")
@click.argument("src", required=False, type=click.Path(readable=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(readable=False, path_type=Path), default=None,
              help="Output folder (default: cifar-10-bmp, cifar-100-bmp, or -png with --format png).")
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="all", show_default=True,
              help="Which part of the dataset to convert.")
@click.option("--format", "fmt", type=click.Choice(["bmp", "png"]), default="bmp", show_default=True,
              help="Image format: 24-bit uncompressed BMP, or PNG through Pillow.")
@click.option("--layout", type=click.Choice(["flat", "class-dirs"]), default="flat", show_default=True,
              help="flat: OUT/train/{label}_{index}.bmp (seed naming); class-dirs: OUT/train/airplane/00000.bmp.")
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
              help="Convert at most the first N images of each split.")
@click.option("--label", type=click.Choice(["fine", "coarse"]), default=None,
              help="CIFAR-100: which label names the files and folders (default fine).")
@click.option("--labels-csv", is_flag=True, help="Also write OUT/labels.csv (file, label, class_name).")
def cifar_bmp_cmd(src, output, split, fmt, layout, limit, label, labels_csv):
    """Convert the CIFAR-10 or CIFAR-100 python version to images, pixel-exact.

    SRC is a cifar-10-batches-py / cifar-100-python folder or the cifar-10-python.tar.gz /
    cifar-100-python.tar.gz archive, read in place (nothing is extracted).  Without SRC, the one of
    these four in the current folder is used.  Pickles are loaded with an allow-list: a pickle
    asking for anything but numpy array reconstruction is refused, never run.

    \b
    Examples:
      qexport cifar-bmp cifar-10-python.tar.gz            # -> cifar-10-bmp/train/6_0.bmp ...
      qexport cifar-bmp --layout class-dirs -o cifar10    # -> cifar10/train/frog/00000.bmp ...
      qexport cifar-bmp cifar-100-python --label coarse --labels-csv
    """
    from .cifar import convert

    bar = None
    stack = contextlib.ExitStack()

    def on_total(n):
        nonlocal bar
        if sys.stderr.isatty():  # a progress bar on a terminal, nothing on a pipe or file
            bar = stack.enter_context(click.progressbar(length=n, label="converting", file=sys.stderr))

    def progress(k):
        if bar is not None:
            bar.update(k)

    with stack:
        result = convert(src, output, split=split, fmt=fmt, layout=layout, limit=limit, label=label,
                         labels_csv=labels_csv, progress=progress, on_total=on_total)
    parts = ", ".join(f"{s} {n}" for s, n in result.counts.items())
    extra = f" and {result.labels_csv}" if result.labels_csv else ""
    click.echo(
        f"qexport: wrote {result.total} {result.fmt.upper()} images ({parts}) from {result.source} "
        f"({result.kind.upper()}) to {result.output}{extra}",
        err=True,
    )
