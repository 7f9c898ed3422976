"""Text writer (`qexport txt`): a folder with one .txt per array, `quant.txt` and `index.txt`.

Every array file starts with one `#` line holding a JSON object (name, shape, dtype, scheme, role,
layout, layer, attrs, the layer's scalar parameters, the number format), then *every* value:
one per line in C order (default) or one output channel per line (`--per-row`: row c holds
array[c].ravel()).  float32 is written with 9 significant digits (`%.9g`) and float64 with 17,
so `numpy.loadtxt(..., dtype=float32)` gives the exact values back; integers are decimal, or with
`--hex` two's complement hex of the dtype's width (int8 -1 -> ff, int32 -1 -> ffffffff).

Formatting is vectorised: integers of 8/16 bits through a lookup table of their decimal/hex
strings, everything else through one `%`-format call per chunk of rows.  No Python loop runs per
element and nothing is truncated (unlike `str(tensor)`, which elides tensors over 1000 values).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import click
import numpy as np

from ..atomic import atomic_dir
from ..errors import OutputError
from ..encode.arrange import EncodedModel
from ..encode.files import file_stems
from ..encode.jsonvalue import json_value
from ..encode.records import iter_arrays, layer_facts, param_items
from ..model import QuantLayer
from ..names import comment_text
from .base import WriterPlugin

QUANT_FILE = "quant.txt"
INDEX_FILE = "index.txt"
RESERVED_STEMS = ("quant", "index")
CHUNK = 1 << 18  # values formatted per `%` call (bounds memory for huge tensors)
LUT_MAX_ITEMSIZE = 2  # integer dtypes up to 16 bits use a lookup table


def number_format(dtype: np.dtype, hex_: bool) -> str:
    """The printf format of one value of `dtype`."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return "%.17g" if dtype.itemsize > 4 else "%.9g"
    if dtype.kind in "biu":
        return f"%0{2 * dtype.itemsize}x" if hex_ else "%d"
    raise OutputError(f"cannot write values of dtype {dtype} as text")


def _as_printable(a: np.ndarray, hex_: bool) -> np.ndarray:
    """The array whose Python values are printed: bool as uint8; for --hex, integers viewed as the
    unsigned type of the same width (two's complement)."""
    a = np.asarray(a, order="C")
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    if hex_ and a.dtype.kind == "i":
        a = a.view(f"u{a.dtype.itemsize}")
    return a


def _lut_lines(m: np.ndarray, fmt: str) -> Iterator[str]:
    """Rows of small integers through a table of their strings (256 or 65536 entries at most)."""
    lo, hi = int(m.min()), int(m.max())
    table = np.array([fmt % v for v in range(lo, hi + 1)], dtype=object)
    rows, cols = m.shape
    step = max(1, CHUNK // max(cols, 1))
    for start in range(0, rows, step):
        block = table[m[start : start + step].astype(np.int64) - lo]
        if cols == 1:
            yield "\n".join(block.ravel().tolist()) + "\n"
        else:
            yield "\n".join(map(" ".join, block.tolist())) + "\n"


def _fmt_lines(m: np.ndarray, fmt: str) -> Iterator[str]:
    """Rows through one printf-style format call per chunk (C-level loop)."""
    rows, cols = m.shape
    row_fmt = " ".join([fmt] * cols) + "\n"
    step = max(1, CHUNK // max(cols, 1))
    for start in range(0, rows, step):
        block = m[start : start + step]
        yield (row_fmt * block.shape[0]) % tuple(block.ravel().tolist())


def format_values(a: np.ndarray, per_row: bool = False, hex_: bool = False) -> Iterator[str]:
    """Text of every value of `a`: one per line, or one output channel (first axis) per line."""
    fmt = number_format(a.dtype, hex_)
    p = _as_printable(a, hex_)
    if p.size == 0:
        return
    rows = (p.shape[0] if p.ndim else 1) if per_row else p.size
    m = p.reshape(rows, p.size // rows)
    if m.dtype.kind in "iu" and m.dtype.itemsize <= LUT_MAX_ITEMSIZE:
        yield from _lut_lines(m, fmt)
    else:
        yield from _fmt_lines(m, fmt)


def format_scalar(value: np.ndarray, hex_: bool = False) -> str:
    v = _as_printable(np.asarray(value).reshape(1), hex_)
    return number_format(v.dtype, hex_) % v.tolist()[0]


def array_stems(qmodel: EncodedModel) -> list[str]:
    """The file stem of every array iter_arrays yields (unique, case-insensitively, and never
    quant/index)."""
    return file_stems([name for name, _, _ in iter_arrays(qmodel)], RESERVED_STEMS)


def _layers_by_array(qmodel: EncodedModel) -> dict[tuple[str, str], tuple[QuantLayer, str]]:
    """(kind, array name) -> (quantized layer, key): a layer's weight ('weight') and per-channel params."""
    out: dict[tuple[str, str], tuple[QuantLayer, str]] = {}
    for q in qmodel.layers:
        if q.weight:
            out[("tensor", q.weight)] = (q, "weight")
        for key, value in param_items(q):
            if value.ndim:
                out[("param", f"{q.name}.{key}")] = (q, key)
    return out


def header(name: str, a: np.ndarray, kind: str, qmodel: EncodedModel, per_row: bool, hex_: bool,
           owner: tuple[QuantLayer, str] | None, stem_of: dict[tuple[str, str], str]) -> str:  # fmt: skip
    """The `#` line: one JSON object, ASCII only (names are JSON-escaped, so lossless)."""
    info: dict = {"name": name, "shape": list(a.shape), "dtype": str(a.dtype)}
    if kind == "tensor":
        t = qmodel.tensor(name)
        info.update(scheme=t.scheme, role=t.role, layout=t.layout)
        if t.layer:
            info["layer"] = t.layer
        if t.attrs:
            info["attrs"] = {str(k): json_value(v) for k, v in t.attrs.items()}
    else:
        q, key = owner
        info.update(scheme=q.scheme, role="param", layout="c", layer=q.name, param=key)
    if owner is not None and owner[1] == "weight":
        q = owner[0]
        info["bits"] = q.bits
        info["per_channel"] = q.per_channel
        params, files = {}, {}
        for key, value in param_items(q):
            if value.ndim == 0:
                params[key] = value.item()
            else:
                files[key] = stem_of[("param", f"{q.name}.{key}")] + ".txt"
        info["params"] = params
        if files:
            info["per_channel_params"] = files
    info["format"] = "one output channel per line" if per_row else "one value per line, C order"
    if a.dtype.kind in "biu":
        info["numbers"] = f"hex, two's complement, {2 * a.dtype.itemsize} digits" if hex_ else "decimal"
    else:
        info["numbers"] = "%.17g" if a.dtype.itemsize > 4 else "%.9g"
    return "# " + json.dumps(info, ensure_ascii=True, allow_nan=False) + "\n"


def quant_text(qmodel: EncodedModel, stem_of: dict[tuple[str, str], str]) -> str:
    """quant.txt: every parameter of every quantized layer, always in decimal."""
    lines = ["# qexport quantization parameters: one block per quantized layer, blocks separated by a blank line.",
             "# `key = value` lines describe the layer; `key:dtype = v` and `key:dtype[C] = v0 v1 ...` are its",
             "# parameters (per-channel ones also have their own .txt file). float32 %.9g, float64 %.17g,",
             "# integers in decimal (even with --hex); names are JSON strings."]  # fmt: skip
    lines += [f"# {comment_text(f'{k}: {v}')}" for k, v in qmodel.provenance().items()]
    for q in qmodel.layers:
        lines.append("")
        lines.append(f"layer = {json.dumps(q.name)}")
        lines.append(f"kind = {q.kind}")
        lines.append(f"scheme = {q.scheme}")
        lines.append(f"bits = {q.bits}")
        lines.append(f"per_channel = {int(bool(q.per_channel))}")
        for role, name in (("weight", q.weight), ("bias", q.bias)):
            if name:
                lines.append(f"{role} = {json.dumps(name)}")
                if ("tensor", name) in stem_of:
                    lines.append(f"{role}.file = {stem_of[('tensor', name)]}.txt")
        for key, text in layer_facts(q):
            lines.append(f"{key} = {json.dumps(text)}")
        for key, value in param_items(q):
            if value.ndim == 0:
                lines.append(f"{key}:{value.dtype} = {format_scalar(value)}")
            else:
                text = "".join(format_values(value.reshape(1, -1), per_row=True)).strip()
                lines.append(f"{key}:{value.dtype}[{value.shape[0]}] = {text}")
                lines.append(f"{key}.file = {stem_of[('param', f'{q.name}.{key}')]}.txt")
    return "\n".join(lines) + "\n"


def write(qmodel: EncodedModel, path, per_row: bool = False, hex: bool = False) -> Path:  # noqa: A002
    """Write the folder; `hex` is the --hex flag (named like the option so the provenance says --hex)."""
    path, hex_ = Path(path), bool(hex)
    arrays = list(iter_arrays(qmodel))
    stems = array_stems(qmodel)
    stem_of = {(kind, name): stem for (name, _, kind), stem in zip(arrays, stems)}
    owners = _layers_by_array(qmodel)
    index = ["# qexport txt export: one file per array (a `#` JSON header line, then every value).",
             "# columns: file, name (JSON string), kind, dtype, shape, scheme"]  # fmt: skip
    index += [f"# {comment_text(f'{k}: {v}')}" for k, v in qmodel.provenance().items()]
    with atomic_dir(path) as tmp:
        for (name, a, kind), stem in zip(arrays, stems):
            a = np.asarray(a)
            owner = owners.get((kind, name))
            with open(tmp / f"{stem}.txt", "w", encoding="ascii", newline="\n") as fh:
                fh.write(header(name, a, kind, qmodel, per_row, hex_, owner, stem_of))
                for chunk in format_values(a, per_row, hex_):
                    fh.write(chunk)
            scheme = qmodel.tensor(name).scheme if kind == "tensor" else "param"
            shape = "x".join(str(d) for d in a.shape) or "scalar"
            index.append("\t".join([f"{stem}.txt", json.dumps(name), kind, str(a.dtype), shape, scheme]))
        with open(tmp / QUANT_FILE, "w", encoding="ascii", newline="\n") as fh:
            fh.write(quant_text(qmodel, stem_of))
        with open(tmp / INDEX_FILE, "w", encoding="ascii", newline="\n") as fh:
            fh.write("\n".join(index) + "\n")
    return path


OPTIONS = (
    click.Option(["--per-row"], is_flag=True, default=False,
                 help="One output channel per line (values separated by spaces) instead of one value per line."),
    click.Option(["--hex"], is_flag=True, default=False,
                 help="Integers in hex, two's complement of their width (int8 -1 -> ff); floats stay decimal."),
)  # fmt: skip

WRITER = WriterPlugin(
    name="txt",
    help="Folder of .txt files: every value of every tensor, a JSON header line each, and quant.txt.",
    write=write,
    suffix="_txt",
    options=OPTIONS,
    output_is_dir=True,
)
