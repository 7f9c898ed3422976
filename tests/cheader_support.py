"""Helpers for tests/test_cheader.py: compilers, the generated C program that prints every array
and macro of a header back, and the expected values computed independently of the writer.

The C side is the independent reader: a program is generated from the declarations the header
makes (`static const TYPE NAME[COUNT_MACRO]`, `#define NAME VALUE`); the *values* it prints come
from the compiler, never from the header text.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from tools import require_tool

ROOT = Path(__file__).resolve().parents[1]
C_DIR = ROOT / "tests" / "c"

GCC = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
GXX = ["-std=c++11", "-Wall", "-Wextra", "-Werror"]
ARM = ["-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]

# numpy dtype -> the C type the header must use (the test's own table, not the writer's)
EXPECTED_CTYPE = {
    "uint8": "uint8_t", "int8": "int8_t", "uint16": "uint16_t", "int16": "int16_t", "uint32": "uint32_t",
    "int32": "int32_t", "uint64": "uint64_t", "int64": "int64_t", "float32": "float", "float64": "double",
}  # fmt: skip
NUMPY_OF_CTYPE = {c: np.dtype(d) for d, c in EXPECTED_CTYPE.items()}

DECL_RE = re.compile(r"^(?:static const|extern const|const) (\w+) (\w+)\[(\w+)\]", re.M)
DEFINE_RE = re.compile(r"^#define (\w+)(?:[ ](.*))?$", re.M)


def compile_c(args: list[str], cwd: Path, tool: str = "gcc") -> subprocess.CompletedProcess:
    exe = require_tool(tool)
    res = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{tool} {' '.join(args)} failed:\n{res.stderr[-4000:]}"
    assert res.stderr == "", f"{tool} printed diagnostics:\n{res.stderr[-4000:]}"
    return res


def declared_arrays(text: str) -> list[tuple[str, str, str]]:
    """(ctype, identifier, count macro) of every array the header declares, in order."""
    return DECL_RE.findall(text)


def defined_macros(text: str) -> dict[str, str]:
    """Object-like macros with a value (function-like ones and QEXPORT_* excluded)."""
    out = {}
    for name, value in DEFINE_RE.findall(text):
        if value and not name.startswith("QEXPORT_"):
            out[name] = value
    return out


def macro_class(value: str) -> str:
    if value.startswith('"'):
        return "string"
    if value.startswith("0x") or not re.search(r"[.eE]", value):
        return "int"
    return "float"


def dump_source(header: str, text: str) -> str:
    """C99 program printing every array ("A name ctype count" then one value per token on one
    line) and every macro ("M name value") of `header`."""
    lines = [
        "#include <inttypes.h>", "#include <stdint.h>", "#include <stdio.h>", f'#include "{header}"',
        "int main(void) {", "    long i;", "    (void)i;",
    ]  # fmt: skip
    for ctype, name, count in declared_arrays(text):
        lines.append(f'    printf("A {name} {ctype} %ld\\n", (long){count});')
        lines.append(f"    for (i = 0; i < (long){count}; i++)")
        if ctype == "float":
            lines.append(f'        printf(" %.9g", (double){name}[i]);')
        elif ctype == "double":
            lines.append(f'        printf(" %.17g", {name}[i]);')
        elif ctype.startswith("u"):
            lines.append(f'        printf(" %" PRIu64, (uint64_t){name}[i]);')
        else:
            lines.append(f'        printf(" %" PRId64, (int64_t){name}[i]);')
        lines.append('    printf("\\n");')
    for name, value in defined_macros(text).items():
        kind = macro_class(value)
        if kind == "string":
            lines.append(f'    printf("M {name} %s\\n", {name});')
        elif kind == "float":
            lines.append(f'    printf("M {name} %.17g\\n", (double)({name}));')
        else:
            lines.append(f'    printf("M {name} %" PRId64 "\\n", (int64_t)({name}));')
    lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


def parse_dump(out: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Arrays (numpy, dtype of their C type) and macros (text as printed) from the dump output."""
    arrays: dict[str, np.ndarray] = {}
    macros: dict[str, str] = {}
    lines = out.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("A "):
            _, name, ctype, count = line.split()
            dtype = NUMPY_OF_CTYPE[ctype]
            tokens = lines[i + 1].split()
            assert len(tokens) == int(count), name
            if dtype.kind == "f":
                values = np.array(tokens, dtype=np.float64).astype(dtype)  # exact for %.9g / %.17g
            else:
                wide = np.array(tokens, dtype=np.uint64 if dtype.kind == "u" else np.int64)
                info = np.iinfo(dtype)
                assert wide.size == 0 or (info.min <= wide.min() and wide.max() <= info.max), name
                values = wide.astype(dtype)
            arrays[name] = values
            i += 2
            continue
        if line.startswith("M "):
            _, name, value = line.split(" ", 2)
            macros[name] = value
        i += 1
    return arrays, macros


def dump_header(header_path: Path, extra_sources: tuple[Path, ...] = ()) -> tuple[dict, dict, str]:
    """Compile (gcc -std=c99 -Wall -Wextra -Werror -pedantic) and run the dump of a header."""
    folder = header_path.parent
    text = header_path.read_text(encoding="ascii")
    src = folder / f"dump_{header_path.stem}.c"
    src.write_text(dump_source(header_path.name, text), encoding="ascii")
    exe = folder / f"dump_{header_path.stem}"
    compile_c([*GCC, "-O0", "-o", str(exe), src.name, *[str(p) for p in extra_sources]], folder)
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    arrays, macros = parse_dump(res.stdout)
    return arrays, macros, text


# the stages tests/c/lenet_int.c prints, in its order (its header comment)
C_LENET_STAGES = ("c1", "s2", "c3", "s4", "c5", "f6", "output")


def run_lenet_c(header: Path, images: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Build tests/c/lenet_int.c (C99, gcc) on `header` (from `qexport cheader`), run it on uint8
    images (N, 28, 28); returns {stage: (N, values)} and the predictions it printed."""
    folder = header.parent
    exe = folder / "lenet_int"
    compile_c([*GCC, "-O2", "-I", str(folder), f'-DQEXPORT_HEADER="{header.name}"', str(C_DIR / "lenet_int.c"),
               "-o", str(exe)], folder)  # fmt: skip
    res = subprocess.run([str(exe)], input=np.ascontiguousarray(images, dtype=np.uint8).tobytes(),
                         capture_output=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    stages: dict[str, list] = {s: [] for s in C_LENET_STAGES}
    preds = []
    for line in res.stdout.decode("ascii").splitlines():
        name, *values = line.split()
        if name == "pred":
            preds.append(int(values[0]))
        else:
            stages[name].append(np.array(values, dtype=np.int64))
    return {k: np.stack(v) for k, v in stages.items()}, np.array(preds)


def same_values(got: np.ndarray, expected: np.ndarray) -> bool:
    """Exact equality including the dtype and, for floats, every bit (-0.0 vs 0.0)."""
    expected = np.asarray(expected).reshape(-1)
    if expected.dtype == np.bool_:
        expected = expected.astype(np.uint8)
    if got.dtype != expected.dtype or got.shape != expected.shape:
        return False
    if expected.dtype.kind == "f":
        bits = np.dtype(f"u{expected.dtype.itemsize}")
        return np.array_equal(got.view(bits), expected.view(bits))
    return np.array_equal(got, expected)


def ident(name: str) -> str:
    """The identifier convention for ordinary names (README): non-alphanumerics become one '_'."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower())


def use_none_source(header: str) -> str:
    return f'#include "{header}"\nint main(void) {{ return 0; }}\n'


def keep_all_source(header: str, text: str) -> str:
    """A translation unit taking the address of every array (so -Os keeps them all); the pointer
    table itself is writable data, so .rodata (or the chosen section) holds only the arrays."""
    names = [name for _, name, _ in declared_arrays(text)]
    body = ",\n    ".join(f"(const void *){n}" for n in names) or "0"
    return f'#include "{header}"\nconst void *qx_keep_all[] = {{\n    {body}\n}};\n'


def section_sizes(obj: Path) -> dict[str, int]:
    """Section name -> size of an object file, read with arm-none-eabi-size -A."""
    size = require_tool("arm-none-eabi-size")
    res = subprocess.run([size, "-A", str(obj)], capture_output=True, text=True, check=True)
    out = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out
