"""File-level encodings shared by the writers and golden vectors: unique file stems, the .npy
format written through Python, and manifest JSON."""

from __future__ import annotations

import json
import re

import numpy as np

from ..names import file_stem, unique


def _plain_stem(name: str) -> str:
    return file_stem(re.sub(r"[^A-Za-z0-9_-]", "_", name))


def file_stems(names: list[str], reserved=("manifest",), plain: bool = False) -> list[str]:
    """One file stem per name, unique case-insensitively and never one of `reserved`.
    plain: only A-Z a-z 0-9 _ - (`features.3.weight` -> `features_3_weight`), for memory files
    whose tools dislike dots."""
    reserved = list(reserved)
    return unique(reserved + list(names), _plain_stem if plain else file_stem, maxlen=200)[len(reserved):]


def write_npy(fh, a: np.ndarray) -> None:
    """`a` (C order) in the .npy format to the open file `fh`: the bytes numpy.save writes.

    numpy.lib.format.write_array writes the data to a real file with ndarray.tofile, whose error
    for a failed write has no errno ("48000 requested and 3968 written" on a full disk); written
    through fh.write, the OSError keeps it and the user is told the disk is full."""
    a = np.asarray(a, order="C")
    np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(a))
    fh.write(memoryview(a.reshape(-1)).cast("B"))


def json_bytes(data: dict) -> bytes:
    """A manifest as written: sorted keys, 2-space indent, ASCII, no NaN, one final newline."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False)
    return (text + "\n").encode("ascii")
