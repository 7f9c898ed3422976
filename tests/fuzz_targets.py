"""Fuzz targets shared by the CI tests (bounded budget) and `benchmarks/fuzz.py` (longer runs).

A target returns normally when qexport either succeeded or raised a QexportError (a clean,
one-line error); any other exception is a bug and propagates."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from qexport.errors import QexportError


def mutated_checkpoint(seeds: dict[str, bytes]):
    """Byte flips, truncations and splices of small real checkpoints, or random bytes."""

    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(sorted(seeds) + ["random"]))
        if kind == "random":
            return draw(st.binary(max_size=2048))
        blob = bytearray(seeds[kind])
        for _ in range(draw(st.integers(1, 8))):
            blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            blob = blob[: draw(st.integers(0, len(blob)))]
        return bytes(blob)

    return build()


def checkpoint_target(blob: bytes, path: Path) -> str:
    from qexport.checkpoint import load_checkpoint
    from qexport.export import load_model, plan_options_from, quantize

    path.write_bytes(blob)
    try:
        load_checkpoint(path)
    except QexportError:
        return "error"
    try:  # it loaded: the rest of the pipeline must cope too
        quantize(load_model(path), plan_options_from(bits=8))
    except QexportError:
        return "error"
    return "ok"
