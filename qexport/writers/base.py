"""What a writer plugin is.

A writer turns an EncodedModel (qexport.encode.arrange: the quantized arrays in the layout and
packing asked for) into files; it serialises, and never quantizes.  It must write through `qexport.atomic` (no partial
output, never clobber a good file), produce byte-identical output for the same input and options,
never embed timestamps or absolute paths, and never loop in Python over tensor elements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class WriterPlugin:
    name: str
    help: str
    # write(qmodel, path: pathlib.Path, **writer_options) -> the path written, or a tuple of them with
    # the main one first (None: `path` itself)
    write: Callable[..., object]
    suffix: str  # default output is <checkpoint stem><suffix> in the current folder
    options: tuple = ()  # extra click parameters for this writer's command
    needs_graph: bool = False  # refuse the graph-less generic reader
    pack: bool = False  # bit-pack binary/ternary weights unless --no-pack
    output_is_dir: bool = False
