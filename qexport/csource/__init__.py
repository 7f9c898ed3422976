"""C source of the integer graph (issue 16): `<name>_inference.h` / `<name>_inference.c`, C99
without malloc or float, one static arena laid out by liveness, parameters as `static const`
arrays in the narrowest integer type, bit-exact with qexport.integer.run.run_integer.

    files = generate(igraph, "lenet")         # {"lenet_inference.h": bytes, "lenet_inference.c": bytes}
    write_csource(igraph, "lenet", folder)     # the same files written atomically into folder

API of the generated code (NAME = name upper-cased):
    int  name_run(const uint8_t *input, int32_t *output);   raw pixels C x H x W -> output codes; 0
    void name_set_hook(name_hook h);   h(node index, node name, codes, n) after every node
    NAME_INPUT_SIZE, NAME_OUTPUT_SIZE, NAME_OUTPUT_ZERO_POINT, NAME_NODE_COUNT, NAME_ARENA_SIZE
"""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_file
from ..integer.ir import IntGraph
from .emit import generate

__all__ = ["generate", "write_csource"]


def write_csource(igraph: IntGraph, name: str, folder: str | os.PathLike) -> list[Path]:
    """Write generate(igraph, name)'s files into the existing `folder`, each atomically."""
    files = generate(igraph, name)
    written = []
    for filename in sorted(files):
        target = Path(folder) / filename
        with atomic_file(target) as fh:
            fh.write(files[filename])
        written.append(target)
    return written
