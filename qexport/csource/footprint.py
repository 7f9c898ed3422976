"""Flash and RAM of the generated C (qexport.csource), from the generator itself:

* parameters: bytes of every `static const` array and geometry struct (flash);
* names: the node-name strings and their pointer table (flash; 4-byte pointers as on a Cortex-M4);
* arena: the static uint8 buffer of every node's output (RAM, bss);
* scratch: `qx_bits`, the packed binary layers' input bits (RAM, bss; 0 without such layers);
* stack: STACK_BOUND, a bound on `<name>_run`'s frame plus the deepest kernel's frame and the
  inline helpers they call (the user's hook excluded); no recursion, call depth 2.  A fixed bound,
  not computed per network: tests/test_csource_more.py checks it against `arm-none-eabi-gcc
  -fstack-usage` at -O2 and -Os for MobileNetV1 and the synthetic graph of every kernel kind
  (at most 336 B measured); it holds for the Cortex-M4 build only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..integer.ir import IntGraph
from .binary import packable

STACK_BOUND = 512  # bytes on a Cortex-M4; measured at most 336 (checked against -fstack-usage by the tests)
POINTER_BYTES = 4


@dataclass(frozen=True)
class Footprint:
    parameter_bytes: int
    name_bytes: int
    arena_bytes: int
    scratch_bytes: int
    stack_bytes: int
    accumulators: tuple[tuple[str, str, str], ...]  # (node, op, "int32" / "int64" / "-")


def footprint(igraph: IntGraph, name: str = "net") -> Footprint:
    from .emit import Emitter

    e = Emitter(igraph, name)
    e.source()
    names = sum(len(n.name.encode("utf-8")) + 1 + POINTER_BYTES for n in igraph.nodes)
    accs = tuple((n.name, n.op, ("int32, XNOR-popcount" if packable(igraph, n) else f"int{n.attrs['acc_bits']}")
                  if "acc_bits" in n.attrs else "-") for n in igraph.nodes)  # fmt: skip
    return Footprint(e.param_bytes, names, e.arena.size, 4 * e.bits_words, STACK_BOUND, accs)


def footprint_text(fp: Footprint) -> str:
    lines = [f"flash: {fp.parameter_bytes} B parameters (const arrays and geometry) + {fp.name_bytes} B node names "
             f"+ the kernels' code",
             f"RAM:   {fp.arena_bytes} B arena (static) + {fp.scratch_bytes} B packed-bit scratch (static) + stack <= {fp.stack_bytes} B on a Cortex-M4 "
             f"(run + deepest kernel, -fstack-usage bound; the hook's own frame not included)",
             f"{'node':<40} {'op':<18} accumulator"]  # fmt: skip
    lines += [f"{node:<40} {op:<18} {acc}" for node, op, acc in fp.accumulators]
    return "\n".join(lines)
