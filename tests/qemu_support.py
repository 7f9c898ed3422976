"""Build C sources into a bare-metal Cortex-M4 image and run it in QEMU (mps2-an386), for the C
source tests: tests/c/cortex_m4_startup.c (vector table, reset handler) and tests/c/cortex_m4.ld
(flash at 0x0, RAM at 0x20000000), newlib's rdimon semihosting for printf and the exit status."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from cheader_support import C_DIR, compile_c
from tools import require_tool

CPU = ["-mcpu=cortex-m4", "-mthumb"]
WARN = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror"]


def images_header(images: np.ndarray, name: str = "images") -> str:
    """`#define IMAGES n` and `static const uint8_t images[n][size]` of uint8 images (C order)."""
    rows = ",\n".join("{" + ",".join(map(str, img.ravel().tolist())) + "}" for img in images)
    return f"#define {name.upper()} {len(images)}\nstatic const uint8_t {name}[{name.upper()}][{images[0].size}] = {{\n{rows}\n}};\n"


def run_on_cortex_m4(folder: Path, sources: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    """Compile `sources` (in `folder`) with arm-none-eabi-gcc -O2 -pedantic -Werror, link with the
    startup file and linker script, run under qemu-system-arm; stdout with \\n line ends."""
    qemu = require_tool("qemu-system-arm")
    objects = []
    for src in sources:
        objects.append(Path(src).stem + ".o")
        compile_c([*CPU, *WARN, "-pedantic", "-c", "-o", objects[-1], src], folder, "arm-none-eabi-gcc")
    compile_c([*CPU, *WARN, "-c", "-o", "startup.o", str(C_DIR / "cortex_m4_startup.c")], folder, "arm-none-eabi-gcc")
    compile_c([*CPU, "--specs=rdimon.specs", "-nostartfiles", "-T", str(C_DIR / "cortex_m4.ld"), "-o", "prog.elf",
               "startup.o", *objects], folder, "arm-none-eabi-gcc")  # fmt: skip
    cmd = [qemu, "-M", "mps2-an386", "-nographic", "-semihosting-config", "enable=on,target=native", "-kernel",
           "prog.elf"]  # fmt: skip
    try:
        res = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"qemu-system-arm did not finish within {timeout} s")
    res.stdout = res.stdout.replace("\r\n", "\n")
    return res
