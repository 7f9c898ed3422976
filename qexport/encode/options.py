"""How canonical codes become arrays in a file: layout and bit packing (README "Bit packing").

These are encoding options, not plan options: they change how the same integers are arranged,
never which integers there are.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from .pack import LAYOUTS, TERNARY_MODES, WORD_DTYPES


@dataclass(frozen=True)
class EncodeOptions:
    pack: bool = False  # bit-pack binary/ternary weights (each writer has its own default)
    word_bits: int = 32
    layout: str = "oihw"  # or "ohwi" (CMSIS-NN, TFLite, LCE)
    ternary_pack: str = "planes"  # or "codes", "base3"

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise UsageError(f"--layout must be oihw or ohwi, not {self.layout!r}")
        if self.word_bits not in WORD_DTYPES:
            raise UsageError(f"--word-bits must be one of 8, 16, 32, 64, not {self.word_bits!r}")
        if self.ternary_pack not in TERNARY_MODES:
            raise UsageError(f"--ternary-pack must be one of {', '.join(TERNARY_MODES)}, not {self.ternary_pack!r}")


ENCODE_OPTION_NAMES = tuple(EncodeOptions.__dataclass_fields__)


def encode_options_from(default_pack: bool = False, **kw) -> EncodeOptions:
    """EncodeOptions from CLI-style keyword arguments (unknown keys and None are ignored)."""
    values = {k: v for k, v in kw.items() if k in ENCODE_OPTION_NAMES and v is not None}
    if "word_bits" in values:
        values["word_bits"] = int(values["word_bits"])
    values.setdefault("pack", default_pack)
    return EncodeOptions(**values)
