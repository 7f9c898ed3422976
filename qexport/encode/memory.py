"""Memory words and their text forms (README "FPGA memory files"), used by `qexport mem` and by
golden vectors: how the elements of an array become unsigned words, and those words as Verilog
`$readmemh` `.mem`, Xilinx `.coe` or Intel `.mif` text.

Words.  Every array is turned into a sequence of unsigned words of `width` bits:

- bit-packed binary/ternary arrays (role "packed", default on: `--pack`): the packing word *is* the
  memory word, `--word-bits` 8/16/32/64 (base3 bytes: 8); address `o * W + k` holds word k of
  output channel o (W words per channel), bit j of it is element `k * word_bits + j` of the
  channel's flattened reduction axis (LSB-first, padding bits 0);
- everything else is written element by element in C order of the array (in its layout), each
  element in its *element width*: affine codes `bits` bits unsigned; unpacked binary codes 1 bit
  (1 = +1, 0 = -1); ternary codes 2 bits two's complement (00 = 0, 01 = +1, 11 = -1); flip flags 1
  bit; other integers their dtype width (int32 bias/threshold/multiplier/shift/zero point: 32 bits,
  two's complement); float tensors kept float as IEEE-754 bit patterns (float16/float32: 32-bit
  float32 patterns, float64: 64-bit).  By default the memory word is the element width.
  `--mem-width N` packs floor(N / element width) elements per N-bit word, little-endian (element
  i in bits (i mod P) * e upward of word i // P; the last word's unused slots and any unused high
  bits are 0); an array whose elements are N bits or wider keeps its own width.  With one element
  per word wider than the element, signed values are sign-extended: two's complement of the word
  width.

Hex digits per word: ceil(width / 4), lowercase, zero-padded.  Formatting is vectorised (a digit
matrix built with shifts and a lookup table, written with one `tobytes` per chunk).
"""

from __future__ import annotations

import numpy as np

from ..errors import OutputError
from ..model import ExportTensor
from ..names import comment_text

FORMATS = ("mem", "coe", "mif")
CHUNK = 1 << 20  # words formatted at a time
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_U64 = np.uint64


def integer_encoding(bits: int, signed: bool) -> dict:
    enc = f"{bits}-bit two's complement" if signed else f"unsigned {bits}-bit"
    return {"element_bits": bits, "signed": signed, "packed": False, "encoding": enc}


def pm1_encoding() -> dict:
    """+-1 values, one bit each: 1 = +1, 0 = -1."""
    return {"element_bits": 1, "signed": False, "packed": False, "encoding": "1=+1,0=-1", "pm1": True}


def packed_encoding(bits: int, text: str) -> dict:
    """Packed words: the word is the memory word."""
    return {"element_bits": bits, "signed": False, "packed": True, "encoding": text}


def element_encoding(name: str, a: np.ndarray, kind: str, t: ExportTensor | None) -> dict:
    """How the elements of one array become bits: element_bits, signed, encoding, packed."""
    a = np.asarray(a)
    if t is not None and t.role == "packed":
        bits = int(t.attrs.get("word_bits", a.dtype.itemsize * 8))
        if a.dtype.kind != "u" or a.dtype.itemsize * 8 != bits:
            raise OutputError(f"{name}: packed words must be uint{bits}, got {a.dtype}")
        return packed_encoding(bits, str(t.attrs.get("encoding", "packed words")))
    if a.dtype.kind == "f":
        bits = 64 if a.dtype.itemsize > 4 else 32
        return {"element_bits": bits, "signed": False, "packed": False, "encoding": f"ieee754-float{bits} bit pattern"}
    if a.dtype.kind == "b":
        return {"element_bits": 1, "signed": False, "packed": False, "encoding": "1=true,0=false"}
    if a.dtype.kind not in "iu":
        raise OutputError(f"{name}: dtype {a.dtype} cannot be written to a memory file")
    if t is not None and t.role == "weight" and t.scheme == "binary":
        return pm1_encoding()
    if t is not None and t.role == "weight" and t.scheme == "ternary":
        return {"element_bits": 2, "signed": True, "packed": False,
                "encoding": "2-bit two's complement: 00=0 01=+1 11=-1"}  # fmt: skip
    if t is not None and t.role == "weight" and t.scheme == "affine":
        bits = int(t.attrs.get("bits", a.dtype.itemsize * 8))
        return {"element_bits": bits, "signed": False, "packed": False, "encoding": f"unsigned {bits}-bit codes"}
    if kind == "param" and name.rsplit(".", 1)[-1] == "flip":
        return {"element_bits": 1, "signed": False, "packed": False, "encoding": "1=flip (acc <= threshold)"}
    return integer_encoding(a.dtype.itemsize * 8, a.dtype.kind == "i")


def _raw_bits(name: str, a: np.ndarray, enc: dict) -> np.ndarray:
    """Flat uint64 array of element values (not yet masked), checked against the element width."""
    a = np.ascontiguousarray(a).reshape(-1)
    bits = enc["element_bits"]
    if a.dtype.kind == "f":
        if bits == 64:
            return a.astype(np.float64).view(np.uint64)
        return a.astype(np.float32).view(np.uint32).astype(np.uint64)
    if a.dtype.kind == "b":
        return a.astype(np.uint64)
    if enc.get("pm1"):
        if a.size and not np.isin(a, (-1, 1)).all():
            raise OutputError(f"{name}: binary codes must be -1 or +1")
        return (a == 1).astype(np.uint64)
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        lim_lo, lim_hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if enc["signed"] else (0, (1 << bits) - 1))
        if lo < lim_lo or hi > lim_hi:
            raise OutputError(f"{name}: values {lo}..{hi} do not fit {bits}-bit "
                              f"{'signed' if enc['signed'] else 'unsigned'} elements")  # fmt: skip
    if a.dtype == np.uint64:
        return a
    return a.astype(np.int64).astype(np.uint64)  # two's complement wrap of negative values


def _mask(bits: int) -> np.uint64:
    return _U64((1 << bits) - 1)


def memory_words(name: str, a: np.ndarray, enc: dict, mem_width: int | None) -> tuple[np.ndarray, dict]:
    """(words uint64 (depth,), geometry): the memory words of one array and width/depth facts."""
    ebits = enc["element_bits"]
    raw = _raw_bits(name, a, enc)
    if enc["packed"] or mem_width is None or mem_width <= ebits:
        width, per = ebits, 1
    else:
        width, per = mem_width, mem_width // ebits
    if per == 1:
        words = raw & _mask(width)  # two's complement of the word width (sign-extension)
    else:
        count = raw.size
        depth = -(-count // per)
        fields = np.zeros(depth * per, dtype=np.uint64)
        fields[:count] = raw & _mask(ebits)
        shifts = (np.arange(per, dtype=np.uint64) * _U64(ebits))
        words = np.bitwise_or.reduce(fields.reshape(depth, per) << shifts, axis=1) if depth else fields[:0]
    geometry = {"width": width, "depth": int(words.size), "element_bits": ebits, "elements_per_word": per,
                "count": int(raw.size), "hex_digits": -(-width // 4)}  # fmt: skip
    return words, geometry


def hex_matrix(words: np.ndarray, digits: int) -> np.ndarray:
    """uint64 words -> (n, digits) uint8 matrix of lowercase hex digits, most significant first."""
    w = np.asarray(words, dtype=np.uint64).reshape(-1)
    out = np.empty((w.size, digits), dtype=np.uint8)
    for k in range(digits):  # a loop over digit positions (<= 16), not over elements
        out[:, digits - 1 - k] = _HEX[((w >> _U64(4 * k)) & _U64(15)).astype(np.intp)]
    return out


def _join(*parts: np.ndarray | bytes, rows: int) -> np.ndarray:
    cols = []
    for p in parts:
        if isinstance(p, (bytes, bytearray)):
            cols.append(np.broadcast_to(np.frombuffer(bytes(p), dtype=np.uint8), (rows, len(p))))
        else:
            cols.append(p)
    return np.concatenate(cols, axis=1)


def mem_body(words: np.ndarray, digits: int):
    for start in range(0, words.size, CHUNK):
        chunk = words[start:start + CHUNK]
        yield _join(hex_matrix(chunk, digits), b"\n", rows=chunk.size).tobytes()


def coe_body(words: np.ndarray, digits: int):
    n = words.size
    for start in range(0, n, CHUNK):
        chunk = words[start:start + CHUNK]
        m = _join(hex_matrix(chunk, digits), b",\n", rows=chunk.size)
        if start + chunk.size == n:
            m[-1, -2] = ord(";")
        yield m.tobytes()


def mif_body(words: np.ndarray, digits: int):
    n = words.size
    adigits = max(1, -(-max(n - 1, 1).bit_length() // 4))
    for start in range(0, n, CHUNK):
        chunk = words[start:start + CHUNK]
        addr = np.arange(start, start + chunk.size, dtype=np.uint64)
        yield _join(b"    ", hex_matrix(addr, adigits), b" : ", hex_matrix(chunk, digits), b";\n",
                    rows=chunk.size).tobytes()  # fmt: skip


def _comment_lines(lines: list[str], fmt: str) -> bytes:
    lead = {"mem": "// ", "coe": "; ", "mif": "-- "}[fmt]
    out = []
    for line in lines:
        text = comment_text(line)
        if fmt == "mif":
            text = text.replace("%", "?")  # '%' opens a block comment in a MIF file
        out.append((lead + text).rstrip() + "\n")
    return "".join(out).encode("ascii")


def write_memory(fh, fmt: str, words: np.ndarray, geometry: dict, comments: list[str]) -> None:
    digits, width, depth = geometry["hex_digits"], geometry["width"], geometry["depth"]
    fh.write(_comment_lines(comments, fmt))
    if fmt == "mem":
        for chunk in mem_body(words, digits):
            fh.write(chunk)
    elif fmt == "coe":
        fh.write(b"memory_initialization_radix=16;\nmemory_initialization_vector=\n")
        for chunk in coe_body(words, digits):
            fh.write(chunk)
    else:
        fh.write(f"WIDTH={width};\nDEPTH={depth};\n\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\n\nCONTENT BEGIN\n"
                 .encode("ascii"))  # fmt: skip
        for chunk in mif_body(words, digits):
            fh.write(chunk)
        fh.write(b"END;\n")
