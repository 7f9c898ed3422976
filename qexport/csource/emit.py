"""The two files of `qexport.csource.generate`: `<name>_inference.h` (the API and sizes) and
`<name>_inference.c` (parameters, kernels, the static arena and `<name>_run`)."""

from __future__ import annotations

import re

import numpy as np

from ..errors import UsageError
from ..integer.ir import IntGraph, IntNode
from .arena import Arena, check_arena, plan_arena
from .binary import POPCOUNT, conv_bin_kernel, hex_array, pack_weights, packable, sign_bin_kernel
from .kernels import (CLAMP, GEOMETRY, OPS, RSHIFT, WINDOW, acc_kernel, conv_kernel, sign_kernel, threshold_kernel,
                      threshold_tag)
from .params import CTYPE_BYTES, c_array, narrowest, weight_codes

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _c_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~" and ch != "?":  # no trigraphs
            out.append(ch)
        else:
            out.append("".join(f"\\{b:03o}" for b in ch.encode("utf-8")))
    return '"' + "".join(out) + '"'


def _comment(s: str) -> str:
    """A name inside a C comment: only harmless characters (no comment delimiters, trigraphs or
    line splices can form)."""
    return re.sub(r"[^A-Za-z0-9_.:+\- ]", "_", s)


class Emitter:
    def __init__(self, igraph: IntGraph, name: str):
        self.g, self.name, self.NAME = igraph, name, name.upper()
        self.arena: Arena = plan_arena(igraph)
        check_arena(igraph, self.arena)
        self.shapes = {"input": tuple(igraph.input_shape), **{n.name: tuple(n.output_shape) for n in igraph.nodes}}
        self.params: list[str] = []
        self.param_bytes = 0  # bytes of every static const parameter array and geometry struct
        self.kernels: dict[str, str] = {}
        self.calls: list[str] = []
        self.bits_words = 0  # uint32 words of qx_bits, the packed layers' input scratch (0: none)

    def buf(self, name: str) -> str:
        return "input" if name == "input" else f"(qx_arena + {self.arena.offsets[name]})"

    def array(self, ident: str, ctype: str, values, comment: str) -> str:
        self.params.append(c_array(ctype, ident, values, comment))
        self.param_bytes += max(np.asarray(values).size, 1) * CTYPE_BYTES[ctype]
        return ident

    def geometry(self, ctype: str, ident: str, values) -> None:
        self.params.append(f"static const {ctype} {ident} = {{{', '.join(str(int(v)) for v in values)}}};\n")
        self.param_bytes += 4 * len(values)  # structs of int32_t only

    def use(self, op: str) -> None:
        self.kernels.setdefault(op, OPS[op])

    # ---- one call per node

    def weighted(self, k: int, n: IntNode, p: str) -> str:
        a, r = n.attrs, n.arrays
        mode = a.get("mode", "requantize")
        if mode not in ("requantize", "sign"):
            raise UsageError(f"node {n.name} ({n.op}): no C kernel for mode {mode!r}")
        sign = mode == "sign"
        geom, pool = self.conv_geometry(n, sign)
        if packable(self.g, n):
            return self.packed(n, p, sign, geom, pool)
        wt, codes, zw = weight_codes(r["w_minus_z"])
        zoned, per_channel = zw is not None, np.ndim(a["zero_in"]) != 0
        acc = "int32_t" if a["acc_bits"] == 32 else "int64_t"
        w = self.array(p + "_w", wt, codes, f"{_comment(n.name)}: " + ("weight codes" if zoned else "w - Z_w"))
        if zoned:
            w += ", " + self.array(p + "_z", "int32_t", zw, "per-channel weight zero points")
        self.kernels.setdefault(*acc_kernel(wt, acc, zoned, per_channel))
        zin = self.array(p + "_zi", "int32_t", a["zero_in"], "input zero point per channel") + ", " if per_channel else ""
        if sign:
            tt = narrowest(r["tau"], "int32_t")
            fn, text = sign_kernel(wt, tt, acc, zoned, per_channel)
            self.kernels.setdefault(fn, text)
            t, f, pw = self.sign_arrays(n, p, tt, pool)
            self.geometry("qx_conv_geom", f"{p}_g", geom + [0 if zin else a["zero_in"], 0, 0, 0])
            return f"{fn}(&{p}_g, {zin}{pw}, {w}, {t}, {f}, {{x}}, {{y}})"
        fn, text = conv_kernel(wt, narrowest(r["b_q"], "int32_t"), acc, zoned, per_channel)
        self.kernels.setdefault(fn, text)
        b, m, s = self.requantize_arrays(n, p, narrowest(r["b_q"], "int32_t"))
        self.geometry("qx_conv_geom", f"{p}_g", geom + [0 if zin else a["zero_in"], a["zero_out"], a["lo"], a["hi"]])
        return f"{fn}(&{p}_g, {zin}{w}, {b}, {m}, {s}, {{x}}, {{y}})"

    def conv_geometry(self, n: IntNode, sign: bool) -> tuple[list[int], list[int]]:
        """(qx_conv_geom's first 15 fields, the sign kernels' pool window) of a conv / linear."""
        a, shape_in = n.attrs, self.shapes[n.inputs[0]]
        if n.op == "linear":
            if sign and "pool_kernel" in a:
                raise UsageError(f"node {n.name} (linear): a pooled linear has no meaning")
            return [shape_in[0], 1, 1, n.output_shape[0], 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]
        cin, h, wd = shape_in
        cout, ho, wo = n.output_shape
        kh, kw = n.arrays["w_minus_z"].shape[2:]
        pool = [1, 1, 1, 1, 1, 1]
        if sign:  # the conv's own plane (the node's shape is the pooled one)
            (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
            ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            pk, ps = a.get("pool_kernel", (1, 1)), a.get("pool_stride", (1, 1))
            pool = [*pk, *ps, (ho - pk[0]) // ps[0] + 1, (wo - pk[1]) // ps[1] + 1]
            if tuple(pool[4:]) != tuple(n.output_shape[1:]):
                raise UsageError(f"node {n.name} ({n.op}): pooled shape {tuple(pool[4:])} is not the node's "
                                 f"{tuple(n.output_shape[1:])}")  # fmt: skip
        return [cin, h, wd, cout, ho, wo, kh, kw, *a["stride"], *a["padding"], *a["dilation"], a["groups"]], pool

    def sign_arrays(self, n: IntNode, p: str, tt: str, pool: list[int]) -> tuple[str, str, str]:
        t = self.array(p + "_t", tt, n.arrays["tau"], "tau")
        f = self.array(p + "_f", "uint8_t", np.asarray(n.arrays["flip"]).astype(bool).astype(np.uint8), "flip")
        return t, f, self.array(p + "_p", "int32_t", pool, "pool kernel h, w, stride h, w, pooled h, w")

    def requantize_arrays(self, n: IntNode, p: str, bt: str) -> tuple[str, str, str]:
        return (self.array(p + "_b", bt, n.arrays["b_q"], "b_q"), self.array(p + "_m", "int32_t", n.arrays["m"], "m"),
                self.array(p + "_s", "uint8_t", n.arrays["s"], "s"))  # fmt: skip

    def packed(self, n: IntNode, p: str, sign: bool, geom: list[int], pool: list[int]) -> str:
        """A +1/-1 layer on sign codes (qexport/csource/binary.py): its input packed into qx_bits,
        one bit per weight, XNOR-popcount."""
        a, r = n.attrs, n.arrays
        words = pack_weights(r["w_minus_z"])
        self.params.append(hex_array(p + "_w", words, f"{_comment(n.name)}: packed +1/-1 weights"))
        self.param_bytes += 4 * words.size
        cin, hw = geom[0], geom[1] * geom[2]
        self.bits_words = max(self.bits_words, hw * words.shape[-1])
        self.kernels.setdefault("binary", POPCOUNT)
        pack = f"qx_pack_bits({cin}, {hw}, {{x}}, qx_bits);\n    "
        if sign:
            tt = narrowest(r["tau"], "int32_t")
            fn, text = sign_bin_kernel(tt)
            self.kernels.setdefault(fn, text)
            t, f, pw = self.sign_arrays(n, p, tt, pool)
            self.geometry("qx_conv_geom", f"{p}_g", geom + [1, 0, 0, 0])
            return pack + f"{fn}(&{p}_g, {pw}, {p}_w, {t}, {f}, qx_bits, {{y}})"
        fn, text = conv_bin_kernel(narrowest(r["b_q"], "int32_t"))
        self.kernels.setdefault(fn, text)
        b, m, s = self.requantize_arrays(n, p, narrowest(r["b_q"], "int32_t"))
        self.geometry("qx_conv_geom", f"{p}_g", geom + [1, a["zero_out"], a["lo"], a["hi"]])
        return pack + f"{fn}(&{p}_g, {p}_w, {b}, {m}, {s}, qx_bits, {{y}})"

    def threshold(self, k: int, n: IntNode, p: str) -> str:
        r = n.arrays
        shape = self.shapes[n.inputs[0]]
        c, hw = shape[0], int(np.prod(shape[1:], dtype=np.int64))
        tt = narrowest(r["tau"], "int32_t")
        self.kernels.setdefault("threshold_" + threshold_tag(tt), threshold_kernel(tt))
        t = self.array(p + "_t", tt, r["tau"], f"{_comment(n.name)}: tau")
        f = self.array(p + "_f", "uint8_t", np.asarray(r["flip"]).astype(bool).astype(np.uint8), "flip")
        return f"qx_threshold_{threshold_tag(tt)}({c}, {hw}, {t}, {f}, {{x}}, {{y}})"

    def prelu(self, k: int, n: IntNode, p: str) -> str:
        a, r = n.attrs, n.arrays
        shape = self.shapes[n.inputs[0]]
        c, hw = shape[0], int(np.prod(shape[1:], dtype=np.int64))
        self.use("prelu")
        vals = [a["zero_in"], a["zero_out"], int(np.asarray(r["m_pos"]).ravel()[0])]
        pp = self.array(p + "_p", "int32_t", vals, f"{_comment(n.name)}: zero_in, zero_out, m_pos")
        m = self.array(p + "_m", "int32_t", np.broadcast_to(np.asarray(r["m_neg"]).ravel(), (c,)), "m_neg")
        s = self.array(p + "_s", "uint8_t", np.broadcast_to(np.asarray(r["s_neg"]).ravel(), (c,)), "s_neg")
        return f"qx_prelu({c}, {hw}, {pp}, {int(np.asarray(r['s_pos']).ravel()[0])}, {m}, {s}, {{x}}, {{y}})"

    def pool(self, k: int, n: IntNode, p: str) -> str:
        a = n.attrs
        c, h, w = self.shapes[n.inputs[0]]
        _, ho, wo = n.output_shape
        dil = a.get("dilation", (1, 1))
        pad = n.out.zero_point if n.op == "avg_pool2d" else 0
        geom = [c, h, w, ho, wo, *a["kernel"], *a["stride"], *a["padding"], *dil, pad]
        self.geometry("qx_pool_geom", f"{p}_g", geom)
        self.use(n.op)
        return f"qx_{'max' if n.op == 'max_pool2d' else 'avg'}_pool(&{p}_g, {{x}}, {{y}})"

    def cat(self, n: IntNode, p: str) -> str:
        """One requantization per input into its block of channels (C x H x W: contiguous)."""
        self.use("cat")
        a, r = n.attrs, n.arrays
        calls, at = [], 0
        for k, (src, z) in enumerate(zip(n.inputs, a["zeros_in"])):
            size = self.arena.sizes[src] if src != "input" else int(np.prod(self.g.input_shape))
            vals = [z, a["zero_out"], int(np.asarray(r[f"m{k}"]).ravel()[0])]
            pp = self.array(f"{p}_p{k}", "int32_t", vals, f"{_comment(n.name)} input {k}: zero_in, zero_out, m")
            s = int(np.asarray(r[f"s{k}"]).ravel()[0])
            calls.append(f"qx_requantize({size}, {pp}, {s}, {self.buf(src)}, {self.buf(n.name)} + {at})")
            at += size
        return ";\n    ".join(calls)

    def node_call(self, k: int, n: IntNode) -> str:
        p = f"qx_n{k}"
        size = self.arena.sizes[n.name]
        if n.op in ("conv2d", "linear"):
            return self.weighted(k, n, p)
        if n.op == "threshold":
            return self.threshold(k, n, p)
        if n.op == "prelu":
            return self.prelu(k, n, p)
        if n.op in ("max_pool2d", "avg_pool2d"):
            return self.pool(k, n, p)
        if n.op not in OPS:
            raise UsageError(f"node {n.name} ({n.op}): no C kernel for this op yet")
        if n.op != "add":
            self.use(n.op)
        if n.op == "clamp":
            return f"qx_clamp_codes({size}, {int(n.attrs['lo'])}, {int(n.attrs['hi'])}, {{x}}, {{y}})"
        if n.op == "global_avg_pool2d":
            c, h, w = self.shapes[n.inputs[0]]
            return f"qx_global_avg({c}, {h * w}, {{x}}, {{y}})"
        if n.op == "reshape":
            return f"qx_copy({size}, {{x}}, {{y}})"
        if n.op == "channel_shuffle":
            c, h, w = self.shapes[n.inputs[0]]
            return f"qx_shuffle({c}, {h * w}, {int(n.attrs['groups'])}, {{x}}, {{y}})"
        if n.op == "table":
            t = self.array(p + "_t", "uint8_t", n.arrays["table"], f"{_comment(n.name)}: table")
            return f"qx_table({size}, {t}, {{x}}, {{y}})"
        if n.op == "add":
            self.use("add")
            a, r = n.attrs, n.arrays
            vals = [a["zero_a"], a["zero_b"], a["zero_out"], int(np.asarray(r["m_a"]).ravel()[0]),
                    int(np.asarray(r["m_b"]).ravel()[0])]  # fmt: skip
            pp = self.array(p + "_p", "int32_t", vals, f"{_comment(n.name)}: zero_a, zero_b, zero_out, m_a, m_b")
            ss = self.array(p + "_s", "uint8_t", [int(np.asarray(r["s_a"]).ravel()[0]),
                                                  int(np.asarray(r["s_b"]).ravel()[0])], "s_a, s_b")  # fmt: skip
            return f"qx_add({size}, {pp}, {ss}, {self.buf(n.inputs[0])}, {self.buf(n.inputs[1])}, {{y}})"
        if n.op == "cat":
            return self.cat(n, p)
        raise UsageError(f"node {n.name} ({n.op}): no C kernel for this op yet")

    # ---- the files

    def source(self) -> str:
        N = self.NAME
        run = []
        for k, n in enumerate(self.g.nodes):
            call = self.node_call(k, n).replace("{x}", self.buf(n.inputs[0])).replace("{y}", self.buf(n.name))
            run.append(f"    /* {k}: {_comment(n.name)} ({n.op}) */\n    {call};\n"
                       f"    if (qx_hook)\n        qx_hook({k}, qx_names[{k}], {self.buf(n.name)}, "
                       f"(size_t){self.arena.sizes[n.name]});\n")  # fmt: skip
        names = ",\n    ".join(_c_string(n.name) for n in self.g.nodes)
        kernels = [self.kernels[k] for k in sorted(self.kernels)]
        ops = {"requantize" if op in ("conv2d", "linear") and n.attrs.get("mode", "requantize") == "requantize"
               else op for n in self.g.nodes for op in (n.op,)}  # fmt: skip; sign mode: no rshift, no clamp
        prelude = (RSHIFT if ops & {"requantize", "add", "prelu", "cat"} else "") + \
            (CLAMP if ops & {"requantize", "add", "clamp", "prelu", "cat"} else "") + GEOMETRY + \
            (WINDOW if any(n.op in ("conv2d", "linear") for n in self.g.nodes) else "")
        return "".join([
            f"/* {self.name}_inference.c: the integer graph in C99 (generated by qexport; do not edit).\n"
            f"   Arithmetic contract: qexport/integer/ir.py.  No malloc, no float; one static arena. */\n",
            f'#include "{self.name}_inference.h"\n',
            prelude, *kernels, "\n", *self.params, "\n",
            f"static const char *const qx_names[{N}_NODE_COUNT] = {{\n    {names}\n}};\n\n",
            f"static uint8_t qx_arena[{N}_ARENA_SIZE];\n",
            f"static uint32_t qx_bits[{self.bits_words}]; /* the packed layers' input bits */\n" if self.bits_words else "",
            f"static {self.name}_hook qx_hook = 0;\n\n",
            f"void {self.name}_set_hook({self.name}_hook h)\n{{\n    qx_hook = h;\n}}\n\n",
            f"int {self.name}_run(const uint8_t *input, int32_t *output)\n{{\n    int32_t i;\n", *run,
            f"    for (i = 0; i < {N}_OUTPUT_SIZE; i++)\n        output[i] = (int32_t){self.buf(self.g.output)}[i];\n"
            f"    return 0;\n}}\n",
        ])  # fmt: skip

    def header(self) -> str:
        N, name = self.NAME, self.name
        out = self.g.node(self.g.output)
        guard = f"{N}_INFERENCE_H"
        return (
            f"/* {name}_inference.h: the integer graph in C99 (generated by qexport; do not edit). */\n"
            f"#ifndef {guard}\n#define {guard}\n\n#include <stddef.h>\n#include <stdint.h>\n\n"
            f"#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
            f"/* input: raw pixels {' x '.join(map(str, self.g.input_shape))} (C x H x W); "
            f"scale {self.g.input.scale!r}, zero point {self.g.input.zero_point} */\n"
            f"#define {N}_INPUT_SIZE {int(np.prod(self.g.input_shape))}\n"
            f"/* output: the codes of node {_comment(out.name)}, "
            f"{' x '.join(map(str, out.output_shape))}; scale {out.out.scale!r}, zero point {out.out.zero_point} */\n"
            f"#define {N}_OUTPUT_SIZE {self.arena.sizes[out.name]}\n"
            f"#define {N}_OUTPUT_ZERO_POINT {out.out.zero_point}\n"
            f"#define {N}_NODE_COUNT {len(self.g.nodes)}\n"
            f"/* bytes of the static arena holding every node's output, laid out by liveness */\n"
            f"#define {N}_ARENA_SIZE {self.arena.size}\n"
            + (f"/* bytes of the static scratch the packed binary layers pack their input bits into */\n"
               f"#define {N}_SCRATCH_SIZE {4 * self.bits_words}\n" if self.bits_words else "") + "\n"
            f"/* called after every node with its index, name and uint8 codes (n bytes, C order) */\n"
            f"typedef void (*{name}_hook)(int node, const char *name, const uint8_t *codes, size_t n);\n"
            f"void {name}_set_hook({name}_hook h);\n\n"
            f"/* runs one image; input: {N}_INPUT_SIZE bytes, output: {N}_OUTPUT_SIZE values (the output codes\n"
            f"   0..255, widened); returns 0.\n"
            f"   Not reentrant: the arena is static. */\n"
            f"int {name}_run(const uint8_t *input, int32_t *output);\n\n"
            f"#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {guard} */\n"
        )  # fmt: skip


def generate(igraph: IntGraph, name: str) -> dict[str, bytes]:
    """{"<name>_inference.h": ..., "<name>_inference.c": ...} for the integer graph `igraph`."""
    if not IDENT.match(name or "") or name.lower() == "qx" or name.lower().startswith("qx_"):
        raise UsageError(f"C name {name!r}: give a C identifier (letters, digits, _; not starting with a digit; "
                         f"qx and qx_... are the generated file's own names)")  # fmt: skip
    e = Emitter(igraph, name)
    c = e.source()  # fills the arena offsets used by the header too
    return {f"{name}_inference.h": e.header().encode("ascii"), f"{name}_inference.c": c.encode("ascii")}
