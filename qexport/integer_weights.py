"""Checkpoints whose weights are already integer codes (seed 002's quant_model.pth stores int32
codes 0..255; older ones uint8).  They are passed through unchanged, never re-quantized."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import InputError

CODE_MIN, CODE_MAX = -(1 << 15), (1 << 16) - 1  # widest codes qexport itself writes: 16 bits


def classify_integer_weights(state: Mapping[str, np.ndarray], source: str):
    """Return (integer_codes, state, notes).  Integer `*.weight` tensors count as codes when their
    values fit 16-bit codes; int64 ones are then narrowed to int32.  Other int64 weights are refused."""
    notes: list[str] = []
    out = dict(state)
    found = False
    for name, a in state.items():
        if not name.endswith("weight") or a.dtype.kind not in "iu":
            continue
        lo, hi = int(a.min()), int(a.max())
        if lo < CODE_MIN or hi > CODE_MAX:
            raise InputError(
                f"{source}: tensor {name!r} holds {a.dtype} values {lo}..{hi}, which are not quantized codes "
                f"(at most 16 bits); save float weights instead"
            )
        if a.dtype == np.int64:
            out[name] = a.astype(np.int32)
            notes.append(f"{name}: int64 codes narrowed to int32 (values {lo}..{hi})")
        found = True
    if found:
        notes.append(
            "weights are already integer codes: exported unchanged, never re-quantized; their scale and "
            "zero point are not in the checkpoint and must be supplied (e.g. --scale-shift LAYER=m,s)"
        )
    return found, out, notes
