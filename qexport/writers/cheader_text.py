"""The text of `qexport cheader` (README "C headers"): the file skeleton, one block per layer
and per array, names made valid, unique C identifiers.  Written straight to open files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..encode.arrange import EncodedModel
from ..encode.c_literals import C_TYPES, grid_blocks, scalar_literal, string_literal, value_parts
from ..encode.records import array_comment, layer_facts, param_items, provenance_lines
from ..errors import OutputError
from ..model import ExportTensor, QuantLayer
from ..names import c_identifier, comment_text, unique

IDENT_MAXLEN = 64  # per sanitised tensor/layer name, before the prefix and the macro suffixes


def sanitize(name: str) -> str:
    ident = re.sub(r"_+", "_", c_identifier(name).lower())
    return ident or "t"


RESERVED = ("qexport_version", "arch", "source", "source_sha256", "options")


def _names(qmodel: EncodedModel) -> tuple[dict, dict, dict]:
    """Sanitised, unique base names of tensors, layers and layer parameters, in one namespace
    (tensors first, so they keep their natural names; later duplicates get _2, _3, ...)."""
    tensors = [("t", t.name) for t in qmodel.tensors]
    layers = [("l", q.name) for q in qmodel.layers]
    params = [("p", f"{q.name}.{key}") for q in qmodel.layers for key, _ in param_items(q)]
    reserved = [("r", name) for name in RESERVED]
    bases = unique(reserved + tensors + layers + params, lambda item: sanitize(item[1]), IDENT_MAXLEN)
    bases = bases[len(reserved):]
    t_names = dict(enumerate(bases[: len(tensors)]))
    l_names = dict(zip((q.name for q in qmodel.layers), bases[len(tensors): len(tensors) + len(layers)]))
    keys = [(q.name, key) for q in qmodel.layers for key, _ in param_items(q)]
    p_names = dict(zip(keys, bases[len(tensors) + len(layers):]))
    return t_names, l_names, p_names


class _Emitter:
    def __init__(self, qmodel: EncodedModel, prefix: str, align: int, section: str | None, hex_: bool,
                 line_width: int, split: bool, header, source):  # fmt: skip
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
        self.header.write(text.encode("ascii") + b"\n")

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
            self.source.write(f"/* {comment} */\nconst {ctype} {name}{dims} QEXPORT_ALIGN({align}) QEXPORT_SECTION = {{\n"
                               .encode("ascii"))  # fmt: skip
            target = self.source
        else:
            self.h(f"static const {ctype} {name}{dims} QEXPORT_ALIGN({align}) QEXPORT_SECTION = {{")
            target = self.header
        target.writelines(grid_blocks(value_parts(data, label, self.hex), self.line_width))
        target.write(b"};\n\n" if self.split else b"};\n")
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
        self.array(base, t.data, f"tensor {t.name!r}", array_comment(t), extra)

    # -- layers --------------------------------------------------------------------------------
    def layer(self, q: QuantLayer) -> None:
        base = self.l_names[q.name]
        label = f"layer {q.name!r}"
        mode = "per-channel" if q.per_channel else "per-tensor"
        self.h(f"/* ---- layer {comment_text(q.name)}: {comment_text(q.kind)}, {comment_text(q.scheme)} "
               f"{q.bits}-bit, {mode} ---- */")  # fmt: skip
        if q.weight:
            self.h(f"/* weight: {comment_text(q.weight)}; bias: {comment_text(q.bias or 'none')} */")
        for key, text in layer_facts(q):
            self.h(f"/* {key}: {comment_text(text)} */")
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


def emit(qmodel: EncodedModel, header_name: str, header, source, prefix: str, align: int,
         section: str | None, line_width: int, hex_: bool, split: bool) -> None:  # fmt: skip
    """Write the header (and, when split, the .c) in file order to the open binary files `header`
    and `source` (options already checked); the text is streamed, never held whole."""
    em = _Emitter(qmodel, prefix, align, section, hex_, line_width, split, header, source)
    stem = sanitize(Path(header_name).stem).strip("_").upper() or "MODEL"
    guard = em._claim(f"{em.upper}_H" if stem == em.upper else f"{em.upper}_{stem}_H", "the include guard")

    top = ["/*", f" * {comment_text(Path(header_name).name)}: generated by qexport -- do not edit.", " *"]
    top += [f" * {line}" for line in provenance_lines(qmodel)]
    top += [" *"] + [f" * {comment_text(line)}" for line in _legend(prefix)] + [" */"]
    em.header.writelines((line + "\n").encode("ascii") for line in top)
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
        source.write(b"/*\n")
        source.write(f" * {comment_text(Path(header_name).with_suffix('.c').name)}: generated by qexport -- "
                      f"do not edit; definitions for {comment_text(include)}.\n".encode("ascii"))  # fmt: skip
        source.write(b" *\n")
        source.writelines(f" * {line}\n".encode("ascii") for line in provenance_lines(qmodel))
        source.writelines([b" */\n", f'#include "{include}"\n\n'.encode("ascii")])
        source.write(b'#ifdef __cplusplus\nextern "C" {\n#endif\n\n')
    em.body()

    if split:
        source.write(b"#ifdef __cplusplus\n}\n#endif\n")
    em.h("#ifdef __cplusplus")
    em.h("}")
    em.h("#endif")
    em.h()
    em.h(f"#endif /* {guard} */")


