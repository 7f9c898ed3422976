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

The text is made by cheader_text (skeleton and blocks) and qexport.encode.c_literals (vectorised
literals and initializer grids).  Output is deterministic.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path

import click
import numpy as np

from ..atomic import atomic_file
from ..encode.arrange import EncodedModel
from ..errors import UsageError
from ..options import calibration_options
from .base import WriterPlugin
from .cheader_text import emit, sanitize

MAX_PREFIX = 32
SECTION_RE = re.compile(r"^[A-Za-z0-9_.$,]{1,200}$")
PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$")


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


def default_prefix(qmodel: EncodedModel) -> str:
    prefix = sanitize(qmodel.arch).strip("_")[:MAX_PREFIX].strip("_")
    return prefix if prefix and prefix[0].isalpha() else "qx"


def _checked(qmodel: EncodedModel, prefix, align, section, line_width) -> tuple:
    prefix = check_prefix(prefix) if prefix is not None else default_prefix(qmodel)
    section = check_section(section) if section is not None else None
    return prefix, check_align(align), section, check_line_width(line_width)


_INCLUDE_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]|\?\?|\*/|/\*')


def write(qmodel: EncodedModel, path, prefix: str | None = None, align: int = 4, section: str | None = None,
          hex: bool = False, line_width: int = 100, split_source: bool = False, arithmetic: str = "default",
          **calibration) -> tuple[Path, ...]:  # noqa: A002  # fmt: skip
    """Write the header (and with split_source the .c beside it); returns the paths written.
    arithmetic="tflite": the tflite int8 profile's layers for CMSIS-NN (qexport/tflite/cheader.py)."""
    path = Path(path)
    if arithmetic == "tflite":
        from ..tflite.cheader import write_tflite_header

        if split_source or hex:
            raise UsageError("--arithmetic tflite writes one header (no --split-source or --hex)")
        return (write_tflite_header(qmodel, path, *_checked(qmodel, prefix, align, section, line_width), **calibration),)
    if any(v is not None for k, v in calibration.items() if k != "calibration_samples"):
        raise UsageError("--calibrate, --percentile, --mean and --std apply to cheader only with --arithmetic tflite")
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
        emit(qmodel, path.name, fh, fc, *checked, hex, split_source)
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
    click.Option(["--arithmetic"], type=click.Choice(["default", "tflite"]), default="default", show_default=True,
                 help="tflite: TFLite's int8 profile for CMSIS-NN (int8 OHWI weights, int32 biases, per-channel "
                      "multiplier/shift, offsets, clamps; needs --calibrate; README \"TFLite\")."),
    *calibration_options(lambda: None).__click_params__[::-1],
)  # fmt: skip

WRITER = WriterPlugin(
    name="cheader",
    help="C header for MCU/FPGA firmware: static const integer arrays, shape and quantization macros.",
    write=write,
    suffix=".h",
    options=OPTIONS,
    pack=True,
)
