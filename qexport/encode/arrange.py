"""Arranging canonical codes for a file: the weight layout and bit packing (README "Bit packing").

`arrange(qmodel, options)` gives the EncodedModel every writer receives: the QuantizedModel's
tensors in the chosen layout, each binary/ternary weight followed by its packed words when
packing is on.  The integers are never changed, only arranged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import ExportTensor, QuantizedModel, frozen_map
from . import pack
from .options import EncodeOptions

TERNARY_ENCODINGS = {
    "nonzero": "bit=1 where t!=0 (lsb-first)",
    "positive": "bit=1 where t=+1 (lsb-first)",
    "codes": "2-bit codes 00=0 01=+1 11=-1 (lsb-first)",
    "base3": "5 trits per byte, byte=sum(d_j*3^j), d=t mod 3 (0,+1->1,-1->2)",
}


@dataclass(frozen=True)
class EncodedModel:
    """A QuantizedModel's arrays as a writer writes them (tensors arranged; layers unchanged)."""

    quantized: QuantizedModel
    tensors: tuple[ExportTensor, ...]
    encoding: EncodeOptions

    model = property(lambda self: self.quantized.model)
    plan = property(lambda self: self.quantized.plan)
    layers = property(lambda self: self.quantized.layers)
    report = property(lambda self: self.quantized.report)
    notes = property(lambda self: self.quantized.notes)
    arch = property(lambda self: self.quantized.arch)
    options_text = property(lambda self: self.quantized.options_text)

    def tensor(self, name: str) -> ExportTensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def quant_layer(self, name: str):
        return self.quantized.quant_layer(name)

    def provenance(self) -> dict[str, str]:
        return self.quantized.provenance()


def packed_binary(t: ExportTensor, options: EncodeOptions) -> list[ExportTensor]:
    codes = np.asarray(t.data)
    words, n = pack.pack_binary(codes, options.word_bits, options.layout)
    attrs = {"word_bits": options.word_bits, "bit_order": "lsb-first", "n": int(n), "encoding": "1=+1,0=-1",
             "layout": options.layout if codes.ndim == 4 else "oi", "padding": "0"}  # fmt: skip
    return [ExportTensor(f"{t.name}.packed", words, t.layer, "packed", "binary", "words", frozen_map(attrs))]


def packed_ternary(t: ExportTensor, options: EncodeOptions) -> list[ExportTensor]:
    codes = np.asarray(t.data)
    n = int(np.prod(codes.shape[1:], dtype=np.int64))
    out = []
    for key, arr in pack.pack_ternary(codes, options.word_bits, options.layout, options.ternary_pack).items():
        attrs = {"word_bits": 8 if key == "base3" else options.word_bits, "n": n, "mode": options.ternary_pack,
                 "plane": key, "bit_order": "digit j weighs 3**j" if key == "base3" else "lsb-first",
                 "layout": options.layout if codes.ndim == 4 else "oi", "padding": "0",
                 "encoding": TERNARY_ENCODINGS[key]}  # fmt: skip
        out.append(ExportTensor(f"{t.name}.{key}", arr, t.layer, "packed", "ternary", "words", frozen_map(attrs)))
    return out


PACKERS = {"binary": packed_binary, "ternary": packed_ternary}


def in_layout(t: ExportTensor, layout: str) -> ExportTensor:
    """A 4-D weight (canonical layout "oihw") in `layout`; every other tensor as it is."""
    if t.layout != "oihw" or layout == "oihw":
        return t
    return ExportTensor(t.name, pack.to_layout(t.data, layout), t.layer, t.role, t.scheme, layout, t.attrs)


def arrange(qmodel: QuantizedModel, options: EncodeOptions) -> EncodedModel:
    out: list[ExportTensor] = []
    for t in qmodel.tensors:
        out.append(in_layout(t, options.layout))
        if options.pack and t.role == "weight" and t.scheme in PACKERS:
            out.extend(PACKERS[t.scheme](t, options))
    return EncodedModel(qmodel, tuple(out), options)
