"""The one-screen quantization report (`-v`)."""

from __future__ import annotations

from .model import QuantizedModel


def _fmt(value, spec: str) -> str:
    if value is None:
        return "exact"
    return format(value, spec)


def format_report(qmodel: QuantizedModel) -> str:
    rows = [("layer", "scheme", "bits", "SQNR dB", "max|err|", "sat", "zero-a", "w==0", "empty", "m>>s err", "widened", "dead")]
    for r in qmodel.report:
        rows.append((
            r.layer, r.scheme, str(r.bits), _fmt(r.sqnr_db, ".2f"), _fmt(r.max_abs_error, ".3g"), str(r.saturated),
            str(r.zero_alpha_channels), str(r.binary_exact_zeros), str(r.empty_ternary_channels),
            "-" if r.scale_error is None else f"{r.scale_error:.2e}", str(r.widened_channels),
            str(r.dead_channels),
        ))  # fmt: skip
    if len(rows) == 1:
        return "qexport: no layer is quantized (exported as trained; --bits N or --plan seed quantizes)"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]  # fmt: skip
    return "\n".join(lines)
