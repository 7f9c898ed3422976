"""FPGA memory files (`qexport mem`): one Verilog `$readmemh` `.mem`, Xilinx `.coe` or Intel `.mif`
file per array (every tensor, then every per-channel layer parameter), plus `manifest.json`
describing every file (README "FPGA memory files").  How elements become words and words become
text is qexport.encode.memory; this module names the files and writes the manifest.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..atomic import atomic_dir
from ..encode.arrange import EncodedModel
from ..encode.files import file_stems, json_bytes
from ..encode.jsonvalue import json_value
from ..encode.memory import FORMATS, element_encoding, memory_words, write_memory
from ..encode.records import array_comment, iter_arrays, layer_facts, param_items, provenance_lines
from ..errors import OutputError, UsageError
from ..model import ExportTensor
from ..names import comment_text
from .base import WriterPlugin

MANIFEST = "manifest.json"
FORMAT = "qexport-mem"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------------
# Manifest


def _order(t: ExportTensor | None, a: np.ndarray, enc: dict, geometry: dict) -> str:
    if enc["packed"]:
        o, w = (a.shape[0], a.shape[1]) if a.ndim == 2 else (1, a.size)
        return (f"address o*{w}+k = word k of output channel o (o < {o}, {w} words per channel); bit j of word k = "
                f"element k*{geometry['element_bits']}+j of the channel's flattened reduction axis "
                f"(layout {t.attrs.get('layout', '?')}), LSB-first; padding bits 0")  # fmt: skip
    layout = t.layout if t is not None else "c"
    per = geometry["elements_per_word"]
    if per == 1:
        return f"C order (row-major) of shape {list(a.shape)} in layout {layout}; element i at address i"
    return (f"C order (row-major) of shape {list(a.shape)} in layout {layout}; element i at address i//{per}, "
            f"bits (i%{per})*{geometry['element_bits']} upward (little-endian within the word); unused slots 0")


def _layer_params(qmodel: EncodedModel, file_of: dict) -> list[dict]:
    layers = []
    for q in qmodel.layers:
        params = {}
        for key, value in param_items(q):
            if value.ndim == 0:
                params[key] = {"value": json_value(value), "dtype": str(value.dtype)}
            else:
                params[key] = {"file": file_of.get(("param", f"{q.name}.{key}")), "shape": list(value.shape),
                               "dtype": str(value.dtype)}  # fmt: skip
        entry = {"name": q.name, "kind": q.kind, "scheme": q.scheme, "bits": q.bits, "per_channel": q.per_channel,
                 "weight": q.weight, "weight_file": file_of.get(("tensor", q.weight)),
                 "packed_files": sorted(f for (k, n), f in file_of.items()
                                        if k == "tensor" and q.weight and n.startswith(q.weight + ".")),
                 "bias": q.bias, "bias_file": file_of.get(("tensor", q.bias)), "params": params}  # fmt: skip
        entry.update(layer_facts(q))
        layers.append(entry)
    return layers


# ------------------------------------------------------------------------------------------------
# Writer


def check_mem_width(value) -> int | None:
    if value is None:
        return None
    value = int(value)
    if not 1 <= value <= 64:
        raise UsageError(f"--mem-width {value}: must be 1..64")
    return value


def write(qmodel: EncodedModel, path, format: str = "mem", mem_width: int | None = None) -> Path:  # noqa: A002
    """Write the folder of memory files and manifest.json; returns the folder."""
    path = Path(path)
    fmt = format
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    mem_width = check_mem_width(mem_width)
    arrays = list(iter_arrays(qmodel))
    stems = file_stems([name for name, _, _ in arrays], plain=True)
    file_of = {(kind, name): f"{stem}.{fmt}" for (name, _, kind), stem in zip(arrays, stems)}
    owners = {}
    for q in qmodel.layers:
        for key, value in param_items(q):
            if value.ndim:
                owners[("param", f"{q.name}.{key}")] = (q, key)
    layer_of = {q.name: q for q in qmodel.layers}
    prov = provenance_lines(qmodel)
    entries = []
    with atomic_dir(path) as tmp:
        for (name, a, kind), stem in zip(arrays, stems):
            a = np.asarray(a)
            t = qmodel.tensor(name) if kind == "tensor" else None
            enc = element_encoding(name, a, kind, t)
            words, geometry = memory_words(name, a, enc, mem_width)
            if fmt in ("coe", "mif") and geometry["depth"] == 0:
                raise OutputError(f"{path}: {name} is empty; a .{fmt} file cannot have depth 0")
            entry = {"file": f"{stem}.{fmt}", "name": name, "kind": kind, "shape": list(a.shape),
                     "dtype": str(a.dtype), **geometry, "signed": enc["signed"], "encoding": enc["encoding"],
                     "packed": enc["packed"], "word_order": _order(t, a, enc, geometry)}  # fmt: skip
            if t is not None:
                entry.update(layer=t.layer, role=t.role, scheme=t.scheme, layout=t.layout,
                             attrs={str(k): json_value(v) for k, v in t.attrs.items()})  # fmt: skip
                q = layer_of.get(t.layer) if t.layer else None
            else:
                q, key = owners[(kind, name)]
                entry.update(layer=q.name, role="param", param=key, scheme=q.scheme, layout="c")
            if q is not None:
                entry["quant"] = {k: ({"value": json_value(v)} if v.ndim == 0
                                      else {"file": file_of[("param", f"{q.name}.{k}")]})
                                  for k, v in param_items(q)}  # fmt: skip
            entries.append(entry)
            desc = array_comment(t) if t is not None else comment_text(f"{name} {a.shape[0]} {a.dtype} param of {q.name}")
            comments = [f"qexport mem: {desc}",
                        f"depth {geometry['depth']} width {geometry['width']} element_bits {geometry['element_bits']} "
                        f"elements_per_word {geometry['elements_per_word']} count {geometry['count']}",
                        f"encoding: {enc['encoding']}", f"order: {entry['word_order']}"] + prov  # fmt: skip
            with open(tmp / entry["file"], "wb") as fh:  # inside the folder atomic_dir swaps in
                write_memory(fh, fmt, words, geometry, comments)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "memory_format": fmt,
                    "mem_width": mem_width, "radix": 16, "provenance": qmodel.provenance(), "files": entries,
                    "layers": _layer_params(qmodel, file_of)}  # fmt: skip
        with open(tmp / MANIFEST, "wb") as fh:
            fh.write(json_bytes(manifest))
    return path


OPTIONS = (
    click.Option(["--format", "format"], type=click.Choice(FORMATS), default="mem", show_default=True,
                 help="mem: Verilog $readmemh hex; coe: Xilinx COE; mif: Intel (Altera) MIF."),
    click.Option(["--mem-width", "mem_width"], type=click.IntRange(1, 64), default=None, metavar="N",
                 help="Memory word width for arrays that are not bit-packed: floor(N/e) elements of e bits per "
                      "word, little-endian. Default: one element per word at its own width. Packed "
                      "binary/ternary words always use --word-bits."),
)  # fmt: skip

WRITER = WriterPlugin(
    name="mem",
    help="FPGA memory files: one .mem ($readmemh), .coe (Xilinx) or .mif (Intel) per array + manifest.json.",
    write=write,
    suffix="_mem",
    options=OPTIONS,
    pack=True,
    output_is_dir=True,
)
