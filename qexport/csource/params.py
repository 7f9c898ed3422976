"""Parameters of the generated C (qexport.csource) as `static const` arrays: the narrowest C
integer type that holds the values (w_minus_z int8/int16/int32, b_q int32/int64), m int32, s uint8,
tables uint8; printed in decimal, 16 values a line, so the bytes depend on the values only."""

from __future__ import annotations

import numpy as np

PER_LINE = 16
CTYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "int32_t": 4, "int64_t": 8}

RANGES = (("int8_t", -(1 << 7), (1 << 7) - 1), ("int16_t", -(1 << 15), (1 << 15) - 1),
          ("int32_t", -(1 << 31), (1 << 31) - 1), ("int64_t", -(1 << 63), (1 << 63) - 1))  # fmt: skip


def narrowest(values: np.ndarray, at_least: str = "int8_t") -> str:
    a = np.asarray(values, np.int64)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    names = [r[0] for r in RANGES]
    for ctype, tlo, thi in RANGES[names.index(at_least):]:
        if tlo <= lo and hi <= thi:
            return ctype
    raise ValueError(f"values {lo}..{hi} do not fit int64")


def literal(v: int, ctype: str) -> str:
    """A decimal constant of `ctype`; the most negative int32/int64 is written as (-MAX - 1) so
    that no constant is out of range for its type."""
    if ctype == "int64_t":
        if v == -(1 << 63):
            return "(-INT64_C(9223372036854775807) - 1)"
        return f"INT64_C({v})" if not -(1 << 31) < v < (1 << 31) else str(v)
    if ctype == "int32_t" and v == -(1 << 31):
        return "(-2147483647 - 1)"
    return str(v)


def c_array(ctype: str, ident: str, values, comment: str = "") -> str:
    """`static const CTYPE IDENT[N] = {...};` (C99 and C++11)."""
    flat = np.asarray(values, np.int64).ravel().tolist()
    if not flat:
        flat = [0]  # C has no empty arrays; the kernel never reads it
    items = [literal(v, ctype) for v in flat] if ctype in ("int32_t", "int64_t") else list(map(str, flat))
    lines = [", ".join(items[i:i + PER_LINE]) for i in range(0, len(items), PER_LINE)]
    head = f"/* {comment} */\n" if comment else ""
    return f"{head}static const {ctype} {ident}[{len(flat)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def weight_codes(w_minus_z: np.ndarray) -> tuple[str, np.ndarray, np.ndarray | None]:
    """(C type, stored values, per-output-channel zero point or None) for a layer's w - Z_w.
    Values that fit int8 (binary, ternary, narrow affine) are stored as they are; wider ones whose
    every output channel spans at most 256 values (8-bit affine codes, negated channels included)
    as uint8 codes q = (w - Z_w) + zw[o], zw[o] = -min over the channel (q is the plan's code when
    the channel uses code 0): half the flash of int16 w - Z_w."""
    w = np.asarray(w_minus_z, np.int64)
    wt = narrowest(w)
    if wt == "int8_t" or w.size == 0:
        return wt, w, None
    flat = w.reshape(w.shape[0], -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    if (hi - lo).max() > 255:
        return wt, w, None
    return "uint8_t", w - lo.reshape((-1,) + (1,) * (w.ndim - 1)), -lo
