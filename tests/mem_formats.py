"""Independent readers of FPGA memory files for the tests: strict Xilinx COE and Intel MIF parsers
written from the vendors' documented grammars, a $readmemh-subset reader for .mem, the expected
words of an array computed with Python integers, and an Icarus Verilog runner.

Xilinx COE (Block Memory Generator product guide, "COE file syntax"):
    ; comment lines start with a semicolon
    memory_initialization_radix = 2 | 10 | 16 ;
    memory_initialization_vector = v0, v1, ..., vN ;     (values separated by commas or white space)
Intel MIF (Quartus "Memory Initialization File" reference):
    -- comment to end of line,  % block comment %
    WIDTH = n; DEPTH = n; ADDRESS_RADIX = BIN|OCT|DEC|UNS|HEX; DATA_RADIX = BIN|OCT|DEC|UNS|HEX;
    CONTENT BEGIN
        addr : value;   [a..b] : value;   addr : v0 v1 ...;   (values at consecutive addresses)
    END;
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

RADIX = {"BIN": 2, "OCT": 8, "DEC": 10, "UNS": 10, "HEX": 16}
DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


class FormatError(ValueError):
    pass


def _number(token: str, radix: int, what: str) -> int:
    if not token or any(ch not in DIGITS[radix] for ch in token):
        raise FormatError(f"{what}: {token!r} is not a radix-{radix} number")
    return int(token, radix)


def parse_coe(text: str, width: int) -> list[int]:
    """Words of a COE file; every value must fit `width` bits (the width comes from the IP config)."""
    body = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(";"):
            continue  # comment line
        body.append(line)
    joined = "\n".join(body)
    m = re.fullmatch(r"\s*memory_initialization_radix\s*=\s*(\w+)\s*;"
                     r"\s*memory_initialization_vector\s*=\s*([^;]*);\s*", joined, re.IGNORECASE)  # fmt: skip
    if not m:
        raise FormatError("COE: expected 'memory_initialization_radix=N;' then 'memory_initialization_vector=...;'")
    radix = int(m.group(1)) if m.group(1).isdigit() else -1
    if radix not in (2, 10, 16):
        raise FormatError(f"COE: radix {m.group(1)!r} is not 2, 10 or 16")
    vector = m.group(2).strip()
    if not vector:
        raise FormatError("COE: empty initialization vector")
    tokens = re.split(r"\s*,\s*|\s+", vector)
    words = [_number(tok, radix, "COE value") for tok in tokens]
    for w in words:
        if w >= 1 << width:
            raise FormatError(f"COE: value {w:#x} does not fit {width} bits")
    return words


def _strip_mif_comments(text: str) -> str:
    text = re.sub(r"--[^\n]*", "", text)
    if text.count("%") % 2:
        raise FormatError("MIF: unterminated % comment")
    return re.sub(r"%[^%]*%", "", text)


def parse_mif(text: str) -> tuple[int, int, list[int]]:
    """(width, depth, words) of a MIF file; every address 0..DEPTH-1 must be given exactly once."""
    text = _strip_mif_comments(text)
    m = re.fullmatch(r"(?P<head>.*?)\bCONTENT\s+BEGIN\b(?P<body>.*?)\bEND\s*;\s*", text, re.IGNORECASE | re.DOTALL)
    if not m:
        raise FormatError("MIF: expected header statements, 'CONTENT BEGIN', entries and 'END;'")
    header: dict[str, str] = {}
    for stmt in m.group("head").split(";")[:-1]:
        kv = re.fullmatch(r"\s*(\w+)\s*=\s*(\w+)\s*", stmt)
        if not kv:
            raise FormatError(f"MIF: bad header statement {stmt.strip()!r}")
        key = kv.group(1).upper()
        if key not in ("WIDTH", "DEPTH", "ADDRESS_RADIX", "DATA_RADIX") or key in header:
            raise FormatError(f"MIF: unknown or repeated header key {key}")
        header[key] = kv.group(2).upper()
    if m.group("head").split(";")[-1].strip():
        raise FormatError("MIF: header statement without ';'")
    if set(header) != {"WIDTH", "DEPTH", "ADDRESS_RADIX", "DATA_RADIX"}:
        raise FormatError(f"MIF: header needs WIDTH, DEPTH, ADDRESS_RADIX, DATA_RADIX, got {sorted(header)}")
    width, depth = _number(header["WIDTH"], 10, "WIDTH"), _number(header["DEPTH"], 10, "DEPTH")
    if width < 1 or depth < 1:
        raise FormatError("MIF: WIDTH and DEPTH must be positive")
    if header["ADDRESS_RADIX"] not in RADIX or header["DATA_RADIX"] not in RADIX:
        raise FormatError("MIF: radix must be BIN, OCT, DEC, UNS or HEX")
    ar, dr = RADIX[header["ADDRESS_RADIX"]], RADIX[header["DATA_RADIX"]]
    words: list[int | None] = [None] * depth
    entries = m.group("body").split(";")
    if entries[-1].strip():
        raise FormatError("MIF: content entry without ';'")
    for entry in entries[:-1]:
        e = re.fullmatch(r"\s*(?:\[\s*(\w+)\s*\.\.\s*(\w+)\s*\]|(\w+))\s*:\s*(\w+(?:\s+\w+)*)\s*", entry)
        if not e:
            raise FormatError(f"MIF: bad content entry {entry.strip()!r}")
        values = [_number(v, dr, "MIF data") for v in e.group(4).split()]
        if e.group(3) is not None:
            first = _number(e.group(3), ar, "MIF address")
            addrs = range(first, first + len(values))
        else:
            if len(values) != 1:
                raise FormatError("MIF: a range takes one value")
            lo, hi = _number(e.group(1), ar, "MIF address"), _number(e.group(2), ar, "MIF address")
            addrs, values = range(lo, hi + 1), values * (hi - lo + 1)
        for a, v in zip(addrs, values):
            if a >= depth:
                raise FormatError(f"MIF: address {a} >= DEPTH {depth}")
            if words[a] is not None:
                raise FormatError(f"MIF: address {a} given twice")
            if v >= 1 << width:
                raise FormatError(f"MIF: value {v:#x} does not fit WIDTH {width}")
            words[a] = v
    missing = [a for a, w in enumerate(words) if w is None]
    if missing:
        raise FormatError(f"MIF: {len(missing)} address(es) without content, first {missing[0]}")
    return width, depth, words  # type: ignore[return-value]


def parse_mem(text: str, width: int) -> list[int]:
    """Words of a $readmemh file as qexport writes it: // comments, one hex word per line, no @."""
    words = []
    for line in text.splitlines():
        line = line.split("//", 1)[0].strip()
        if not line:
            continue
        if not re.fullmatch(r"[0-9a-fA-F]+", line) or len(line) > -(-width // 4):
            raise FormatError(f".mem: bad word {line!r} for width {width}")
        words.append(int(line, 16))
    return words


# ------------------------------------------------------------------------------------------------
# Expected words, computed with Python integers (independent of the writer's numpy bit twiddling)


def element_values(data: np.ndarray, kind: str) -> list[int]:
    """Unsigned element values as Python ints: kind is 'pm1' (+1 -> 1, -1 -> 0), 'float32',
    'float64', or 'int:<bits>' (two's complement / unsigned modulo 2**bits)."""
    flat = np.ascontiguousarray(data).reshape(-1)
    if kind == "pm1":
        assert set(np.unique(flat).tolist()) <= {-1, 1}
        return [1 if v == 1 else 0 for v in flat.tolist()]
    if kind == "float32":
        return [int.from_bytes(np.float32(v).tobytes(), "little") for v in flat.astype(np.float32).tolist()]
    if kind == "float64":
        return [int.from_bytes(np.float64(v).tobytes(), "little") for v in flat.astype(np.float64).tolist()]
    bits = int(kind.split(":")[1])
    return [int(v) % (1 << bits) for v in flat.tolist()]


def expected_words(values: list[int], element_bits: int, per_word: int) -> list[int]:
    if per_word == 1:
        return list(values)
    out = []
    for start in range(0, len(values), per_word):
        word = 0
        for j, v in enumerate(values[start:start + per_word]):
            assert 0 <= v < 1 << element_bits
            word += v << (j * element_bits)
        out.append(word)
    return out


def sign_extend(values: list[int], from_bits: int, to_bits: int) -> list[int]:
    """Two's complement of `from_bits` re-expressed in `to_bits`."""
    out = []
    for v in values:
        signed = v - (1 << from_bits) if v >> (from_bits - 1) else v
        out.append(signed % (1 << to_bits))
    return out


# ------------------------------------------------------------------------------------------------
# Icarus Verilog


def iverilog_dump(files: list[tuple[Path, int, int]], workdir: Path) -> list[list[int]]:
    """Compile and run one testbench that $readmemh's every (file, width, depth) and prints every
    word with $display("%h"); returns the printed words per file.  Any simulator warning fails."""
    lines = ["module tb;", "  integer i;"]
    for k, (_, width, depth) in enumerate(files):
        lines.append(f"  reg [{width - 1}:0] m{k} [0:{depth - 1}];")
    lines.append("  initial begin")
    for k, (path, _, depth) in enumerate(files):
        lines.append(f'    $readmemh("{path.resolve()}", m{k});')
        lines.append(f'    $display("@file {k}");')
        lines.append(f'    for (i = 0; i < {depth}; i = i + 1) $display("%h", m{k}[i]);')
    lines += ["    $finish;", "  end", "endmodule", ""]
    tb = workdir / "tb_mem.v"
    tb.write_text("\n".join(lines))
    vvp = workdir / "tb_mem.vvp"
    subprocess.run(["iverilog", "-g2005", "-o", str(vvp), str(tb)], check=True, capture_output=True, text=True)
    run = subprocess.run(["vvp", "-n", str(vvp)], capture_output=True, text=True, check=True)
    text = run.stdout
    assert "WARNING" not in text.upper() and not run.stderr.strip(), (run.stderr or text)[:2000]
    out: list[list[int]] = []
    for line in text.splitlines():
        if line.startswith("@file "):
            assert int(line.split()[1]) == len(out)
            out.append([])
        elif line.strip() and not line.startswith(("VCD", "tb_mem.v")) and out is not None:
            if "$finish" in line:
                continue
            out[-1].append(int(line.strip(), 16))  # an x or z (a word not loaded) fails here
    assert len(out) == len(files)
    return out
