"""The static arena of the generated C (qexport.csource): every node's uint8 output gets an
offset in one buffer, laid out by liveness with a greedy first fit.

A node's output is live from the node that writes it to the last node that reads it (the graph's
output to the end of the run).  Nodes are placed in execution order; each takes the lowest offset
(aligned to ALIGN) where it overlaps no buffer still live, and its inputs are still live while it
writes, so an output never overwrites its own inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..integer.ir import IntGraph

ALIGN = 4


@dataclass(frozen=True)
class Arena:
    offsets: dict[str, int]  # node name -> byte offset in the arena
    sizes: dict[str, int]  # node name -> bytes (one image)
    size: int  # the arena's size in bytes


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def last_use(igraph: IntGraph) -> dict[str, int]:
    """{node name: index of the last node reading its output} (the graph's output: past the end)."""
    last = {n.name: i for i, n in enumerate(igraph.nodes)}
    for i, n in enumerate(igraph.nodes):
        for name in n.inputs:
            if name in last:
                last[name] = max(last[name], i)
    last[igraph.output] = len(igraph.nodes)
    return last


def plan_arena(igraph: IntGraph) -> Arena:
    order = {n.name: i for i, n in enumerate(igraph.nodes)}
    last = last_use(igraph)
    sizes = {n.name: int(np.prod(n.output_shape, dtype=np.int64)) for n in igraph.nodes}
    offsets: dict[str, int] = {}
    live: list[str] = []
    for n in igraph.nodes:
        i = order[n.name]
        live = [b for b in live if last[b] >= i]  # still read by this node or a later one
        busy = sorted((offsets[b], offsets[b] + sizes[b]) for b in live)
        at = 0
        for start, end in busy:
            if at + sizes[n.name] <= start:
                break
            at = max(at, _aligned(end))
        offsets[n.name] = at
        live.append(n.name)
    size = max((offsets[b] + sizes[b] for b in offsets), default=0)
    return Arena(offsets, sizes, max(size, 1))


def check_arena(igraph: IntGraph, arena: Arena) -> None:
    """No two buffers alive at the same node overlap (a self-check of the layout)."""
    last = last_use(igraph)
    names = [n.name for n in igraph.nodes]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if last[a] >= names.index(b):  # a is still live when b is written
                lo_a, hi_a = arena.offsets[a], arena.offsets[a] + arena.sizes[a]
                lo_b, hi_b = arena.offsets[b], arena.offsets[b] + arena.sizes[b]
                if lo_a < hi_b and lo_b < hi_a:
                    raise AssertionError(f"arena: {a} and {b} overlap while both are live")
