"""C literals (README "C headers"): every value of an array as a literal of its exact C type, and
initializer grids of fixed-width lines, used by `cheader` and the golden-vector header.

Formatting is vectorised: an array becomes a fixed-width byte matrix (a lookup table for 8- and
16-bit values, digit extraction for wider integers, `np.char.mod('%.9g')` for floats), laid out in
lines by reshaping; no Python loop runs over elements.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import OutputError
from ..names import comment_text

C_TYPES = {
    "bool": "uint8_t", "uint8": "uint8_t", "int8": "int8_t", "uint16": "uint16_t", "int16": "int16_t",
    "uint32": "uint32_t", "int32": "int32_t", "uint64": "uint64_t", "int64": "int64_t",
    "float16": "float", "float32": "float", "float64": "double",
}  # fmt: skip
# Literal suffixes that give each value its type on every target (16-bit int included).
INT_SUFFIX = {"uint32": b"U", "uint64": b"ULL", "int64": b"LL"}
# The most negative values have no plain literal (2147483648 does not fit int32).
INT_MIN_TOKENS = {"int32": (-(2**31), b"(-2147483647 - 1)"), "int64": (-(2**63), b"(-9223372036854775807LL - 1)")}
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


def grid_blocks(parts: list[np.ndarray], line_width: int, indent: int = 2, per_line: int | None = None,
                min_width: int = 1):
    """Initializer body: the rows of `parts` in order (each padded to the widest part's width, at
    least min_width) as lines `<indent> v, v, ... v,` of a fixed width (per_line values, or as many
    as line_width holds), yielded in byte blocks of at most GRID_LINES lines: the text is never
    built whole."""
    width = max([p.shape[1] for p in parts] + [min_width])
    item = width + 2  # " " + value + ","
    per_line = per_line or max(1, (line_width - indent) // item)
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
