"""`qexport cheader`: a C header (or a .h + .c pair) for MCU / FPGA-soft-core firmware.

What is written (README "C headers"):

- an include guard, `#include <stdint.h>`, `extern "C"` guards and a provenance comment
  (qexport version, source file name and sha256, architecture, options: no timestamp, no path);
- the overridable attribute macros `QEXPORT_ALIGN(n)` and `QEXPORT_SECTION`, placed on every array;
- per quantized layer: `PREFIX_<LAYER>_<PARAM>` macros for per-tensor parameters (zero point,
  multiplier m, shift s, scale, alpha, popcount length n, ...) and arrays `prefix_<layer>_<param>`
  for per-channel ones, plus the layer's scheme, bits and geometry;
- per tensor: `PREFIX_<TENSOR>_NDIM/_DIM<k>/_COUNT/_BYTES/_LAYOUT/_SCHEME` (+ packing macros for
  packed words) and one flat array `prefix_<tensor>` of the exact C integer type (uint8_t codes,
  int8_t +-1/0 codes, int32_t biases and thresholds, uintN_t packed words, float for tensors kept
  float), row-major in the stated layout.

Arrays are `static const` in the single-header form; with `--split-source` the header holds
`extern const` declarations and a `.c` file beside it the definitions.

Formatting is vectorised: every array becomes a fixed-width byte matrix (a lookup table for 8-bit
values, digit extraction for wider integers, `np.char.mod('%.9g')` for floats), laid out in lines of
a fixed width by reshaping; no Python loop runs over elements.  Output is deterministic.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path

import click
import numpy as np

from ..atomic import atomic_file
from ..errors import OutputError, UsageError
from ..model import ExportTensor, QuantizedModel, QuantLayer
from ..names import c_identifier, comment_text, unique
from .base import WriterPlugin
from .common import describe, param_items, provenance_lines

# ------------------------------------------------------------------------------------------------
# C types and literal formatting

C_TYPES = {
    "bool": "uint8_t", "uint8": "uint8_t", "int8": "int8_t", "uint16": "uint16_t", "int16": "int16_t",
    "uint32": "uint32_t", "int32": "int32_t", "uint64": "uint64_t", "int64": "int64_t",
    "float16": "float", "float32": "float", "float64": "double",
}  # fmt: skip
# Literal suffixes that give each value its type on every target (16-bit int included).
INT_SUFFIX = {"uint32": b"U", "uint64": b"ULL", "int64": b"LL"}
# The most negative values have no plain literal (2147483648 does not fit int32).
INT_MIN_TOKENS = {"int32": (-(2**31), b"(-2147483647 - 1)"), "int64": (-(2**63), b"(-9223372036854775807LL - 1)")}
IDENT_MAXLEN = 64  # per sanitised tensor/layer name, before the prefix and the macro suffixes
MAX_PREFIX = 32
SECTION_RE = re.compile(r"^[A-Za-z0-9_.$,]{1,200}$")
PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$")
SPACE, COMMA, NEWLINE = 32, 44, 10
_HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)


def _char_matrix(strings: np.ndarray) -> np.ndarray:
    """bytes array ('S' dtype) -> (n, width) uint8 matrix, right-aligned with spaces."""
    strings = np.asarray(strings).astype(np.bytes_)
    width = max(int(strings.dtype.itemsize), 1)
    just = np.char.rjust(strings, width)
    return np.frombuffer(just.astype(f"S{width}").tobytes(), dtype=np.uint8).reshape(-1, width).copy()


def _decimal_matrix(values: np.ndarray) -> np.ndarray:
    """Integers -> right-aligned decimal digits (n, width) uint8, width = the widest value."""
    v = np.asarray(values).reshape(-1)
    if v.dtype.kind == "b":
        v = v.astype(np.uint8)
    if v.dtype.kind == "u":
        neg = np.zeros(v.shape, dtype=bool)
        mag = v.astype(np.uint64)
    else:
        v64 = v.astype(np.int64)
        neg = v64 < 0
        with np.errstate(over="ignore"):  # |INT64_MIN| = 2**63 fits uint64 via ~v + 1
            mag = np.where(neg, (~v64).astype(np.uint64) + np.uint64(1), v64.astype(np.uint64))
    ndigits = len(str(int(mag.max()))) if mag.size else 1
    count = np.ones(mag.shape, dtype=np.int64)  # digits of each value
    for k in range(1, ndigits):
        count += mag >= np.uint64(10**k)
    width = ndigits + 1
    out = np.full((mag.size, width), SPACE, dtype=np.uint8)
    rest = mag.copy()
    for k in range(ndigits):  # a loop over digit positions (<= 20), each over the whole array
        col = width - 1 - k
        digit = (rest % np.uint64(10)).astype(np.uint8) + ord("0")
        out[:, col] = np.where(k < count, digit, SPACE)
        rest //= np.uint64(10)
    rows = np.nonzero(neg)[0]
    out[rows, width - 1 - count[rows]] = ord("-")
    need = int((count + neg).max()) if mag.size else 1
    return out[:, width - need:]


@lru_cache(maxsize=None)
def _small_table(dtype_name: str) -> np.ndarray:
    """Lookup table: decimal strings of every value of an 8- or 16-bit type, right-aligned."""
    info = np.iinfo(dtype_name)
    return _decimal_matrix(np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype_name))


@lru_cache(maxsize=None)
def _table_widths(dtype_name: str) -> np.ndarray:
    table = _small_table(dtype_name)
    return (table != SPACE).sum(axis=1)


def _hex_matrix(values: np.ndarray) -> np.ndarray:
    """Unsigned integers -> 0x%0*X digits (n, 2 + 2 * itemsize) uint8."""
    v = np.asarray(values).reshape(-1)
    nhex = 2 * v.dtype.itemsize
    out = np.empty((v.size, 2 + nhex), dtype=np.uint8)
    out[:, 0], out[:, 1] = ord("0"), ord("x")
    if v.dtype.itemsize == 1:
        out[:, 2] = _HEX[v >> 4]
        out[:, 3] = _HEX[v & 15]
        return out
    w = v.astype(np.uint64)
    for k in range(nhex):
        out[:, 2 + nhex - 1 - k] = _HEX[((w >> np.uint64(4 * k)) & np.uint64(15)).astype(np.intp)]
    return out


def _append(matrix: np.ndarray, suffix: bytes) -> np.ndarray:
    if not suffix:
        return matrix
    tail = np.broadcast_to(np.frombuffer(suffix, dtype=np.uint8), (matrix.shape[0], len(suffix)))
    return np.concatenate([matrix, tail], axis=1)


def _float_strings(values: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(values).reshape(-1)
    if not np.isfinite(v).all():
        raise OutputError(f"{name}: non-finite value cannot be written as a C constant")
    if v.dtype == np.float64:
        text = np.char.mod("%.17g", v)
        suffix = ""
    else:  # float32 (and float16, exact in float32): 9 significant digits round-trip
        text = np.char.mod("%.9g", v.astype(np.float32).astype(np.float64))
        suffix = "f"
    plain = (np.char.find(text, ".") < 0) & (np.char.find(text, "e") < 0)
    text = np.where(plain, np.char.add(text, ".0"), text)
    if suffix:
        text = np.char.add(text, suffix)
    return text.astype(np.bytes_)


CHUNK = 1 << 20  # elements formatted at a time (bounds the memory of intermediate arrays)


def _value_chunk(v: np.ndarray, name: str, hex_: bool) -> np.ndarray:
    kind, dname = v.dtype.kind, v.dtype.name
    if kind == "f":
        return _char_matrix(_float_strings(v, name))
    if kind == "b":
        v, dname = v.astype(np.uint8), "uint8"
    if v.dtype.kind not in "iu":
        raise OutputError(f"{name}: dtype {v.dtype} has no C type")
    if hex_ and v.dtype.kind == "u":
        return _append(_hex_matrix(v), INT_SUFFIX.get(dname, b""))
    if v.dtype.itemsize <= 2:  # lookup table of every value's digits
        index = v.astype(np.int64) - np.iinfo(v.dtype).min
        width = int(_table_widths(dname)[index].max()) if v.size else 1
        table = _small_table(dname)
        return table[index, table.shape[1] - width:]
    mat = _append(_decimal_matrix(v), INT_SUFFIX.get(dname, b""))
    if dname in INT_MIN_TOKENS:
        lowest, token = INT_MIN_TOKENS[dname]
        rows = np.nonzero(v == lowest)[0]
        if rows.size:
            mat = _pad_left(mat, len(token))
            mat[rows] = SPACE
            mat[rows, mat.shape[1] - len(token):] = np.frombuffer(token, dtype=np.uint8)
    return mat


def _pad_left(mat: np.ndarray, width: int) -> np.ndarray:
    if mat.shape[1] >= width:
        return mat
    pad = np.full((mat.shape[0], width - mat.shape[1]), SPACE, dtype=np.uint8)
    return np.concatenate([pad, mat], axis=1)


def value_parts(values: np.ndarray, name: str, hex_: bool = False) -> list[np.ndarray]:
    """Every element of `values` as a C literal of its exact type, CHUNK elements per part:
    (k, width_i) uint8 matrices, right-aligned; the array's column width is the widest part's."""
    v = np.asarray(values).reshape(-1)
    if v.dtype == np.float16:
        v = v.astype(np.float32)  # exact
    return [_value_chunk(v[i:i + CHUNK], name, hex_) for i in range(0, max(v.size, 1), CHUNK)]


def value_matrix(values: np.ndarray, name: str, hex_: bool = False) -> np.ndarray:
    """Every element of `values` as a C literal of its exact type: (n, width) uint8, right-aligned
    in one column width (the widest literal of the array)."""
    parts = value_parts(values, name, hex_)
    width = max(p.shape[1] for p in parts)
    return np.concatenate([_pad_left(p, width) for p in parts]) if len(parts) > 1 else parts[0]


def scalar_literal(value: np.ndarray, name: str) -> str:
    """One value as a C constant expression for a macro (negative values parenthesised)."""
    text = value_matrix(np.asarray(value).reshape(1), name).tobytes().decode("ascii").strip()
    return f"({text})" if text.startswith("-") else text


GRID_LINES = 1 << 14  # lines formatted at a time by grid_blocks (bounds its intermediate arrays)


def _items(cells: np.ndarray) -> np.ndarray:
    """cells (n, w) -> items (n, w + 2): " " + value + ","."""
    n, w = cells.shape
    items = np.empty((n, w + 2), dtype=np.uint8)
    items[:, 0] = SPACE
    items[:, 1:w + 1] = cells
    items[:, w + 1] = COMMA
    return items


def grid_blocks(parts: list[np.ndarray], line_width: int, indent: int = 2):
    """Initializer body: the rows of `parts` in order (each padded to the widest part's width) as
    lines `<indent> v, v, ... v,` of a fixed width, yielded in byte blocks of at most GRID_LINES
    lines: the text is never built whole."""
    width = max((p.shape[1] for p in parts), default=1)
    item = width + 2  # " " + value + ","
    per_line = max(1, (line_width - indent) // item)
    step = per_line * GRID_LINES
    carry = np.empty((0, width), dtype=np.uint8)  # cells of an unfinished line, carried into the next part
    for part in parts:
        cells = _pad_left(part, width)
        if carry.shape[0]:
            cells = np.concatenate([carry, cells])
        full = cells.shape[0] // per_line * per_line
        for start in range(0, full, step):
            block = _items(cells[start:min(start + step, full)])
            lines = np.empty((block.shape[0] // per_line, indent + per_line * item + 1), dtype=np.uint8)
            lines[:, :indent] = SPACE
            lines[:, indent:-1] = block.reshape(lines.shape[0], per_line * item)
            lines[:, -1] = NEWLINE
            yield lines.tobytes()
        carry = cells[full:]
    if carry.shape[0]:
        yield b" " * indent + _items(carry).tobytes() + b"\n"


def string_literal(text: str) -> str:
    """A C string literal of comment-safe text: no escapes left, no trigraphs ('?' escaped)."""
    safe = comment_text(text).replace("\\", "\\\\").replace('"', '\\"').replace("?", "\\?")
    return f'"{safe}"'


# ------------------------------------------------------------------------------------------------
# Names


def _sanitize(name: str) -> str:
    ident = re.sub(r"_+", "_", c_identifier(name).lower())
    return ident or "t"


RESERVED = ("qexport_version", "arch", "source", "source_sha256", "options")


def _names(qmodel: QuantizedModel) -> tuple[dict, dict, dict]:
    """Sanitised, unique base names of tensors, layers and layer parameters, in one namespace
    (tensors first, so they keep their natural names; later duplicates get _2, _3, ...)."""
    tensors = [("t", t.name) for t in qmodel.tensors]
    layers = [("l", q.name) for q in qmodel.layers]
    params = [("p", f"{q.name}.{key}") for q in qmodel.layers for key, _ in param_items(q)]
    reserved = [("r", name) for name in RESERVED]
    bases = unique(reserved + tensors + layers + params, lambda item: _sanitize(item[1]), IDENT_MAXLEN)
    bases = bases[len(reserved):]
    t_names = dict(enumerate(bases[: len(tensors)]))
    l_names = dict(zip((q.name for q in qmodel.layers), bases[len(tensors): len(tensors) + len(layers)]))
    keys = [(q.name, key) for q in qmodel.layers for key, _ in param_items(q)]
    p_names = dict(zip(keys, bases[len(tensors) + len(layers):]))
    return t_names, l_names, p_names


def check_prefix(prefix: str) -> str:
    if not PREFIX_RE.match(prefix) or len(prefix) > MAX_PREFIX:
        raise UsageError(
            f"--prefix {prefix!r}: use a letter followed by letters, digits and single underscores "
            f"(at most {MAX_PREFIX} characters, no leading/trailing/double underscore)"
        )
    return prefix


def check_align(align) -> int:
    if isinstance(align, bool) or not isinstance(align, (int, np.integer)) or not 1 <= align <= 65536 \
            or align & (align - 1):  # fmt: skip
        raise UsageError(f"--align {align}: must be a power of two from 1 to 65536")
    return int(align)


def check_section(section: str) -> str:
    if not SECTION_RE.match(section):
        raise UsageError(f"--section {section!r}: use 1-200 characters from A-Z a-z 0-9 _ . $ ,")
    return section


def check_line_width(width) -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or not 40 <= width <= 4096:
        raise UsageError(f"--line-width {width}: must be from 40 to 4096")
    return int(width)


def _callback(check):
    """Click callback running a check early (before the model is loaded); None passes through."""
    return lambda ctx, param, value: value if value is None else check(value)


def default_prefix(qmodel: QuantizedModel) -> str:
    prefix = _sanitize(qmodel.arch).strip("_")[:MAX_PREFIX].strip("_")
    return prefix if prefix and prefix[0].isalpha() else "qx"


# ------------------------------------------------------------------------------------------------
# Emission


class _Sink:
    """Where emitted text goes: kept in memory (render), or written straight to an open file (write,
    which so never holds the whole text: peak memory stays near the arrays being formatted)."""

    def __init__(self, fh=None):
        self.fh = fh
        self.parts: list[bytes] = []

    def append(self, data: bytes) -> None:
        if self.fh is not None:
            self.fh.write(data)
        else:
            self.parts.append(data)

    def extend(self, chunks) -> None:
        for data in chunks:
            self.append(data)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class _Emitter:
    def __init__(self, qmodel: QuantizedModel, prefix: str, align: int, section: str | None, hex_: bool,
                 line_width: int, split: bool, header: _Sink, source: _Sink):  # fmt: skip
        self.q = qmodel
        self.lower = prefix.lower()
        self.upper = prefix.upper()
        self.align = align
        self.section = section
        self.hex = hex_
        self.line_width = line_width
        self.split = split
        self.t_names, self.l_names, self.p_names = _names(qmodel)
        self.header = header  # declarations and macros (the .h; the definitions too unless split)
        self.source = source  # definitions (the .c when split)
        self.identifiers: dict[str, str] = {}  # every emitted identifier -> what it is, for collisions

    # -- helpers -------------------------------------------------------------------------------
    def _claim(self, ident: str, what: str) -> str:
        if ident in self.identifiers:
            raise OutputError(f"C identifier {ident} would name both {self.identifiers[ident]} and {what}; "
                              f"rename the tensor or use --prefix")  # fmt: skip
        self.identifiers[ident] = what
        return ident

    def h(self, text: str = "") -> None:
        self.header.append(text.encode("ascii") + b"\n")

    def define(self, macro: str, value, what: str) -> None:
        self._claim(macro, what)
        self.h(f"#define {macro} {value}")

    def macro(self, base: str, suffix: str = "") -> str:
        return f"{self.upper}_{base.upper()}{'_' + suffix if suffix else ''}"

    def array_name(self, base: str) -> str:
        return f"{self.lower}_{base}"

    # -- one array -----------------------------------------------------------------------------
    def array(self, base: str, data: np.ndarray, label: str, comment: str, extra: list[tuple[str, object]]) -> None:
        data = np.asarray(data)
        ctype = C_TYPES.get(data.dtype.name)
        if ctype is None:
            raise OutputError(f"{label}: dtype {data.dtype} has no C type")
        self.h(f"/* {comment} */")
        M = lambda suffix: self.macro(base, suffix)  # noqa: E731
        self.define(M("NDIM"), data.ndim, label)
        for k, dim in enumerate(data.shape):
            self.define(M(f"DIM{k}"), int(dim), label)
        count = int(data.size)
        self.define(M("COUNT"), count, label)
        itemsize = 4 if data.dtype == np.float16 else data.dtype.itemsize
        self.define(M("BYTES"), count * itemsize, label)
        for suffix, value in extra:
            self.define(M(suffix), value, label)
        if count == 0:
            self.h("/* no array: C has no zero-length arrays */")
            self.h()
            return
        name = self._claim(self.array_name(base), label)
        align = max(self.align, itemsize)
        dims = f"[{M('COUNT')}]"
        if self.split:
            self.h(f"extern const {ctype} {name}{dims};")
            self.source.append(f"/* {comment} */\nconst {ctype} {name}{dims} QEXPORT_ALIGN({align}) QEXPORT_SECTION = {{\n"
                               .encode("ascii"))  # fmt: skip
            target = self.source
        else:
            self.h(f"static const {ctype} {name}{dims} QEXPORT_ALIGN({align}) QEXPORT_SECTION = {{")
            target = self.header
        target.extend(grid_blocks(value_parts(data, label, self.hex), self.line_width))
        target.append(b"};\n\n" if self.split else b"};\n")
        self.h()

    # -- tensors -------------------------------------------------------------------------------
    def tensor(self, index: int, t: ExportTensor) -> None:
        base = self.t_names[index]
        extra: list[tuple[str, object]] = [("LAYOUT", string_literal(t.layout)), ("SCHEME", string_literal(t.scheme))]
        if t.data.ndim == 4 and t.layout in ("oihw", "ohwi"):
            extra.append(("LAYOUT_OHWI", int(t.layout == "ohwi")))
        attrs = dict(t.attrs)
        for key, suffix in (("bits", "BITS"), ("per_channel", "PER_CHANNEL"), ("signed", "SIGNED"),
                            ("word_bits", "WORD_BITS"), ("n", "N")):  # fmt: skip
            if key in attrs and isinstance(attrs[key], (bool, int, np.integer)):
                extra.append((suffix, int(attrs[key])))
        if t.role == "packed" and t.data.ndim == 2:
            extra.append(("WORDS_PER_ROW", int(t.data.shape[1])))
        if "bit_order" in attrs:
            extra.append(("BIT_ORDER", string_literal(str(attrs["bit_order"]))))
            extra.append(("LSB_FIRST", int(attrs["bit_order"] == "lsb-first")))
        for key, suffix in (("values", "VALUES"), ("encoding", "ENCODING"), ("mode", "TERNARY_MODE"),
                            ("plane", "PLANE")):  # fmt: skip
            if key in attrs:
                extra.append((suffix, string_literal(str(attrs[key]))))
        if "layout" in attrs:
            extra.append(("ELEMENT_LAYOUT", string_literal(str(attrs["layout"]))))
            extra.append(("ELEMENT_LAYOUT_OHWI", int(attrs["layout"] == "ohwi")))
        self.array(base, t.data, f"tensor {t.name!r}", describe(t), extra)

    # -- layers --------------------------------------------------------------------------------
    def layer(self, q: QuantLayer) -> None:
        base = self.l_names[q.name]
        label = f"layer {q.name!r}"
        mode = "per-channel" if q.per_channel else "per-tensor"
        self.h(f"/* ---- layer {comment_text(q.name)}: {comment_text(q.kind)}, {comment_text(q.scheme)} "
               f"{q.bits}-bit, {mode} ---- */")  # fmt: skip
        if q.weight:
            self.h(f"/* weight: {comment_text(q.weight)}; bias: {comment_text(q.bias or 'none')} */")
        for key in ("folded_bn", "threshold_rule"):
            if key in q.attrs:
                self.h(f"/* {key}: {comment_text(q.attrs[key])} */")
        self.define(self.macro(base, "SCHEME"), string_literal(q.scheme), label)
        self.define(self.macro(base, "KIND"), string_literal(q.kind), label)
        self.define(self.macro(base, "BITS"), int(q.bits), label)
        self.define(self.macro(base, "PER_CHANNEL"), int(bool(q.per_channel)), label)
        for key in ("in_channels", "out_channels", "in_features", "out_features", "groups"):
            value = q.attrs.get(key)
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                self.define(self.macro(base, key.upper()), int(value), label)
        for key in ("kernel", "stride", "padding"):
            value = q.attrs.get(key)
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                value = (value, value)
            if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value):
                self.define(self.macro(base, key.upper() + "_H"), int(value[0]), label)
                self.define(self.macro(base, key.upper() + "_W"), int(value[1]), label)
        arrays = []
        for key, value in param_items(q):
            pbase = self.p_names[(q.name, key)]
            if value.ndim == 0:
                self.define(self.macro(pbase), scalar_literal(value, f"{q.name}.{key}"), label)
            else:
                arrays.append((pbase, key, value))
        self.h()
        for pbase, key, value in arrays:
            comment = comment_text(f"{q.name}.{key} per-channel {value.dtype} ({value.shape[0]},) of layer {q.name}")
            self.array(pbase, value, f"parameter {q.name}.{key}", comment, [])

    # -- whole file ----------------------------------------------------------------------------
    def body(self) -> None:
        quant = {q.name: q for q in self.q.layers}
        done: set[str] = set()
        for index, t in enumerate(self.q.tensors):
            if t.layer in quant and t.layer not in done:
                done.add(t.layer)
                self.layer(quant[t.layer])
            self.tensor(index, t)
        for q in self.q.layers:
            if q.name not in done:
                self.layer(q)


def _legend(prefix: str) -> list[str]:
    p, P = prefix.lower(), prefix.upper()
    return [
        f"Arrays: {p}_<tensor> (lower case), flat, row-major in the stated layout.",
        f"Macros: {P}_<TENSOR>_NDIM/_DIM<k>/_COUNT/_BYTES/_LAYOUT/_SCHEME; per layer",
        f"  {P}_<LAYER>_SCHEME/_BITS/_PER_CHANNEL/... and {P}_<LAYER>_<PARAM> (per-tensor value)",
        f"  or the array {p}_<layer>_<param> (per channel).",
        "Affine layer: acc = sum x*(w_q - Z) + b_q (int64); y = (acc * m) >> s (floor shift).",
        "Binary words: bit 1 = +1, bit 0 = -1, LSB-first, padding bits 0;",
        "  dot = 2*popcount(XNOR(a, w) & mask(N)) - N = N - 2*popcount((a ^ w) & mask(N)).",
    ]


def _checked(qmodel: QuantizedModel, prefix, align, section, line_width) -> tuple:
    prefix = check_prefix(prefix) if prefix is not None else default_prefix(qmodel)
    section = check_section(section) if section is not None else None
    return prefix, check_align(align), section, check_line_width(line_width)


def render(qmodel: QuantizedModel, header_name: str, *, prefix: str | None = None, align: int = 4,
           section: str | None = None, hex_: bool = False, line_width: int = 100,
           split: bool = False) -> tuple[bytes, bytes | None]:  # fmt: skip
    """The header text (and the .c text when split) as bytes."""
    header, source = _Sink(), _Sink()
    _emit(qmodel, header_name, header, source, *_checked(qmodel, prefix, align, section, line_width), hex_, split)
    return header.getvalue(), source.getvalue() if split else None


def _emit(qmodel: QuantizedModel, header_name: str, header: _Sink, source: _Sink, prefix: str, align: int,
          section: str | None, line_width: int, hex_: bool, split: bool) -> None:  # fmt: skip
    """Emit the header (and, when split, the .c) in file order into the sinks (options checked)."""
    em = _Emitter(qmodel, prefix, align, section, hex_, line_width, split, header, source)
    stem = _sanitize(Path(header_name).stem).strip("_").upper() or "MODEL"
    guard = em._claim(f"{em.upper}_H" if stem == em.upper else f"{em.upper}_{stem}_H", "the include guard")

    top = ["/*", f" * {comment_text(Path(header_name).name)}: generated by qexport -- do not edit.", " *"]
    top += [f" * {line}" for line in provenance_lines(qmodel)]
    top += [" *"] + [f" * {comment_text(line)}" for line in _legend(prefix)] + [" */"]
    em.header.extend((line + "\n").encode("ascii") for line in top)
    em.h(f"#ifndef {guard}")
    em.h(f"#define {guard}")
    em.h()
    em.h("#include <stdint.h>")
    em.h()
    em.h("#ifdef __cplusplus")
    em.h('extern "C" {')
    em.h("#endif")
    em.h()
    em.h("/* Attributes on every array; define either macro before including this file to override. */")
    em.h("#ifndef QEXPORT_ALIGN")
    em.h("#if defined(__GNUC__) || defined(__clang__)")
    em.h("#define QEXPORT_ALIGN(n) __attribute__((aligned(n)))")
    em.h("#else")
    em.h("#define QEXPORT_ALIGN(n)")
    em.h("#endif")
    em.h("#endif")
    em.h("#ifndef QEXPORT_SECTION")
    if section:
        em.h("#if defined(__GNUC__) || defined(__clang__)")
        em.h(f'#define QEXPORT_SECTION __attribute__((section("{section}")))')
        em.h("#else")
        em.h("#define QEXPORT_SECTION")
        em.h("#endif")
    else:
        em.h("#define QEXPORT_SECTION")
    em.h("#endif")
    em.h()
    prov = qmodel.provenance()
    em.define(f"{em.upper}_QEXPORT_VERSION", string_literal(prov["generator"].split()[-1]), "the version macro")
    em.define(f"{em.upper}_ARCH", string_literal(prov["arch"]), "the arch macro")
    em.define(f"{em.upper}_SOURCE_SHA256", string_literal(prov["source_sha256"]), "the sha256 macro")
    em.h()
    if split:  # the .c opening, before the definitions em.body() emits into it
        include = Path(header_name).name
        source.append(b"/*\n")
        source.append(f" * {comment_text(Path(header_name).with_suffix('.c').name)}: generated by qexport -- "
                      f"do not edit; definitions for {comment_text(include)}.\n".encode("ascii"))  # fmt: skip
        source.append(b" *\n")
        source.extend(f" * {line}\n".encode("ascii") for line in provenance_lines(qmodel))
        source.extend([b" */\n", f'#include "{include}"\n\n'.encode("ascii")])
        source.append(b'#ifdef __cplusplus\nextern "C" {\n#endif\n\n')
    em.body()

    if split:
        source.append(b"#ifdef __cplusplus\n}\n#endif\n")
    em.h("#ifdef __cplusplus")
    em.h("}")
    em.h("#endif")
    em.h()
    em.h(f"#endif /* {guard} */")


_INCLUDE_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]|\?\?|\*/|/\*')


def write(qmodel: QuantizedModel, path, prefix: str | None = None, align: int = 4, section: str | None = None,
          hex: bool = False, line_width: int = 100, split_source: bool = False) -> tuple[Path, ...]:  # noqa: A002
    """Write the header (and with split_source the .c beside it); returns the paths written."""
    path = Path(path)
    c_path = None
    if split_source:
        if path.suffix == ".c":
            raise UsageError(f"{path}: with --split-source, -o names the header (model.h); the .c goes beside it")
        if _INCLUDE_UNSAFE.search(path.name):
            raise UsageError(f"{path}: this file name cannot appear in an #include line; choose a plainer -o")
        c_path = path.with_suffix(".c")
    checked = _checked(qmodel, prefix, align, section, line_width)  # option errors before any file is opened
    # Streamed into temporary files, array by array (the text is never held whole in memory); both
    # files are complete before either is renamed into place, and any error removes both.
    with ExitStack() as stack:
        fh = stack.enter_context(atomic_file(path, "wb"))
        fc = stack.enter_context(atomic_file(c_path, "wb")) if c_path is not None else None
        _emit(qmodel, path.name, _Sink(fh), _Sink(fc), *checked, hex, split_source)
    return (path,) if c_path is None else (path, c_path)


OPTIONS = (
    click.Option(["--prefix"], metavar="PREFIX", callback=_callback(check_prefix),
                 help="Identifier prefix: arrays prefix_<tensor>, macros PREFIX_<TENSOR>_... (default: the architecture)."),
    click.Option(["--align"], type=int, default=4, show_default=True, metavar="N", callback=_callback(check_align),
                 help="Alignment in bytes of every array (QEXPORT_ALIGN(N); at least the element size)."),
    click.Option(["--section"], metavar="NAME", callback=_callback(check_section),
                 help="Linker section of every array (default QEXPORT_SECTION = __attribute__((section(NAME))))."),
    click.Option(["--hex"], is_flag=True, help="Write unsigned arrays (codes, packed words) in hexadecimal."),
    click.Option(["--line-width"], type=int, default=100, show_default=True, metavar="N",
                 callback=_callback(check_line_width),
                 help="Width of the lines of array initialisers (values are right-aligned in columns)."),
    click.Option(["--split-source"], is_flag=True,
                 help="Write FILE.h with extern declarations and macros plus FILE.c with the definitions."),
)  # fmt: skip

WRITER = WriterPlugin(
    name="cheader",
    help="C header for MCU/FPGA firmware: static const integer arrays, shape and quantization macros.",
    write=write,
    suffix=".h",
    options=OPTIONS,
    pack=True,
)
