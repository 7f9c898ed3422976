"""Packed binary layers of qexport csource (qexport/csource/binary.py): +1/-1 weights on sign
codes stored one bit each and accumulated by XNOR-popcount.

A synthetic graph puts packed layers at the edges: channel counts below, at and across the 32-bit
word boundary (5, 32, 33, 70), padding, stride, dilation, a pooled and an overlapping-pooled sign
mode, a channel shuffle and a max pool between the sign codes and the layer reading them, a
linear over a flattened plane, and +1/-1 layers the packed path must NOT take (8-bit input,
groups, weights with a 0).  Checked against run_integer (numpy, int64) at every node: gcc (C99),
g++ (C++11), gcc with the portable popcount forced (-DQX_PORTABLE_POPCOUNT), and a Cortex-M4 in
QEMU; the weight bits against a per-bit transcription of the documented layout; the flash of the
packed weights against nm."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from test_csource import _conv, _host_run, _sign, _thresholds, assert_bit_exact
from test_csource_more import CALLEES

from cheader_support import ARM, GCC, compile_c
from qexport.csource import generate, write_csource
from qexport.csource.binary import pack_weights, packable
from qexport.csource.footprint import STACK_BOUND, footprint
from qexport.integer.ir import IntGraph, IntNode, QTensor
from qexport.integer.run import run_integer
from qemu_support import images_header, run_on_cortex_m4
from tools import require_tool

SHAPE = (3, 12, 10)
PACKED = {"p.conv33", "p.sign70", "p.pool32", "p.shuf_conv", "p.lin", "p.linsign"}


def _threshold(name: str, src: str, values: np.ndarray) -> IntNode:
    tau, flip = _thresholds(values.astype(np.int64))
    return IntNode(name, "threshold", (src,), values.shape[1:], QTensor(1.0, 1), {}, {"tau": tau, "flip": flip})


def _graph(nodes: list[IntNode]) -> IntGraph:
    return IntGraph(tuple(nodes), SHAPE, QTensor(0.02, 9), nodes[-1].name)


def _next(name, src, rng, cout, k, stride=(1, 1), pad=(1, 1), dil=(1, 1), groups=1, zout=0, bmax=0, shape=None):
    """A +1/-1 conv reading `src` of `shape` (C, H, W), input zero point 1."""
    node = _conv(name, src, rng, shape[0], shape, cout, k, stride, pad, dil, groups, 32, 1, bmax, 1, zout)
    node.arrays["w_minus_z"] = rng.choice(np.array([-1, 1], np.int32), node.arrays["w_minus_z"].shape)
    return node


@pytest.fixture(scope="module")
def packed_graph():
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, (5, *SHAPE)).astype(np.uint8)
    n: list[IntNode] = []

    def add(node):
        n.append(node)
        return run_integer(_graph(n), pixels)

    def spread(node, m, s):  # requantized codes spread over 0..255 (not all clamped)
        node.arrays.update(m=np.full(node.output_shape[0], m, np.int64), s=np.full(node.output_shape[0], s, np.int64))
        return node

    # +1/-1 weights on pixels: not packable (the input is not sign codes)
    first = _conv("a.pm1_pixels", "input", rng, 3, SHAPE, 33, 3, (1, 1), (1, 1), (1, 1), 1, 32, 1, 50, 9, 0)
    first.arrays["w_minus_z"] = rng.choice(np.array([-1, 1], np.int32), first.arrays["w_minus_z"].shape)
    v = add(spread(first, 1, 2))
    v = add(_threshold("a.sign", "a.pm1_pixels", v["a.pm1_pixels"]))
    # packed, requantized: 33 channels (two words, one bit in the second), stride, dilation, padding
    v = add(spread(_next("p.conv33", "a.sign", rng, 70, 3, (2, 1), (2, 1), (1, 2), zout=120, bmax=40,
                         shape=n[-1].output_shape), 1, 1))  # fmt: skip
    v = add(_threshold("b.sign", "p.conv33", v["p.conv33"]))
    # packed, sign mode, unpooled: 70 channels (three words)
    v = add(_sign(_next("p.sign70", "b.sign", rng, 32, 3, shape=n[-1].output_shape), v))
    # packed, sign mode, overlapping 3 x 2 / (2, 1) pool: 32 channels (one full word)
    v = add(_sign(_next("p.pool32", "p.sign70", rng, 40, 3, shape=n[-1].output_shape), v,
                  pool_kernel=(3, 2), pool_stride=(2, 1)))  # fmt: skip
    pooled = n[-1].output_shape
    v = add(IntNode("c.max", "max_pool2d", ("p.pool32",), (40, (pooled[1] - 2) // 2 + 1, (pooled[2] - 2) // 2 + 1),
                    QTensor(1.0, 1), {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0), "dilation": (1, 1)}))  # fmt: skip
    # a shuffle between the sign codes and the packed layer: still sign codes
    v = add(IntNode("c.shuffle", "channel_shuffle", ("p.pool32",), pooled, QTensor(1.0, 1), {"groups": 4}))
    v = add(spread(_next("p.shuf_conv", "c.shuffle", rng, 5, 1, pad=(0, 0), zout=128, bmax=7, shape=pooled), 3, 0))
    # not packable: groups, and a weight of 0
    v = add(_next("d.groups", "c.shuffle", rng, 8, 3, groups=2, zout=3, bmax=7, shape=pooled))
    zero = _next("d.zero", "c.shuffle", rng, 6, 1, pad=(0, 0), zout=3, bmax=7, shape=pooled)
    zero.arrays["w_minus_z"][0, 0, 0, 0] = 0
    v = add(zero)
    flat = int(np.prod(n[n.index(next(m for m in n if m.name == "c.max"))].output_shape))
    v = add(IntNode("e.flat", "reshape", ("c.max",), (flat,), QTensor(1.0, 1)))
    # packed linears over the flattened plane, requantized and sign mode
    lin = {"w_minus_z": rng.choice(np.array([-1, 1], np.int32), (7, flat)), "b_q": rng.integers(-10, 11, 7),
           "m": np.full(7, 1, np.int64), "s": np.zeros(7, np.int64)}  # fmt: skip
    attrs = {"mode": "requantize", "zero_in": 1, "zero_out": 128, "lo": 0, "hi": 255, "acc_bits": 32}
    v = add(IntNode("p.lin", "linear", ("e.flat",), (7,), QTensor(0.5, 128), attrs, lin))
    v = add(_sign(IntNode("p.linsign", "linear", ("e.flat",), (9,), QTensor(1.0, 1), dict(attrs),
                          {"w_minus_z": rng.choice(np.array([-1, 1], np.int32), (9, flat))}), v))  # fmt: skip
    ig = _graph(n)
    for node in ig.nodes:  # both codes occur in every sign tensor (no trivial bits)
        if node.op == "threshold" or node.attrs.get("mode") == "sign":
            assert set(np.unique(v[node.name]).tolist()) == {0, 2}, node.name
    for name in ("p.conv33", "p.shuf_conv", "p.lin"):  # requantized codes neither constant nor all clamped
        assert len(np.unique(v[name])) > 8, name
    return ig, pixels


def test_packed_path_is_taken_exactly_where_it_is_exact(packed_graph):
    ig, _ = packed_graph
    assert {n.name for n in ig.nodes if packable(ig, n)} == PACKED
    c = generate(ig, "pk")["pk_inference.c"].decode()
    assert c.count("qx_pack_bits(") == len(PACKED) + 1  # the definition + one call per packed layer
    for fn in ("qx_conv_bin_b32", "qx_conv_sign_bin_t32", "qx_bin_acc"):
        assert f"static {'int32_t' if fn == 'qx_bin_acc' else 'void'} {fn}(" in c, fn


@pytest.mark.parametrize("build", ["gcc", "g++", "portable"])
def test_packed_layers_equal_run_integer_node_by_node(packed_graph, tmp_path, build):
    """"portable": gcc with the SWAR popcount forced (-DQX_PORTABLE_POPCOUNT), same codes."""
    ig, x = packed_graph
    extra = ["-DQX_PORTABLE_POPCOUNT"] if build == "portable" else []
    assert "static int32_t qx_popcount(uint32_t v)" in generate(ig, "pk")["pk_inference.c"].decode()
    assert_bit_exact(ig, x, _host_run(ig, "pk", x, tmp_path, "g++" if build == "g++" else "gcc", extra))


def test_weight_bits_follow_the_documented_layout():
    """Bit i of word j of (o, ky, kx) is input channel 32 j + i, set for +1: a per-bit transcription."""
    rng = np.random.default_rng(2)
    for cin in (1, 31, 32, 33, 64, 70):
        w = rng.choice(np.array([-1, 1]), (3, cin, 2, 3))
        words = pack_weights(w)
        assert words.dtype == np.uint32 and words.shape == (3, 2, 3, -(-cin // 32))
        for o, ky, kx, j in np.ndindex(*words.shape):
            want = sum(1 << i for i in range(32) if 32 * j + i < cin and w[o, 32 * j + i, ky, kx] > 0)
            assert int(words[o, ky, kx, j]) == want
    assert pack_weights(np.ones((2, 40), int)).shape == (2, 1, 1, 2)  # a linear: a 1 x 1 kernel


def test_packed_flash_and_scratch_match_the_object_and_stack_bound(packed_graph, tmp_path):
    """nm: each packed weight array is 4 * cout * kh * kw * ceil(cin / 32) bytes, and the report's
    parameter and scratch bytes are the symbols'; -fstack-usage: run + kernel + qx_bin_acc +
    helpers within STACK_BOUND (a call depth of 3 here)."""
    ig, _ = packed_graph
    write_csource(ig, "pk", tmp_path)
    compile_c([*GCC, "-O0", "-c", "-o", "pk.o", "pk_inference.c"], tmp_path)
    res = subprocess.run([require_tool("nm"), "-S", "pk.o"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    sizes = {f[3]: int(f[1], 16) for f in (line.split() for line in res.stdout.splitlines()) if len(f) == 4}
    for k, n in enumerate(ig.nodes):
        if n.name in PACKED:
            w = n.arrays["w_minus_z"]
            kh, kw = w.shape[2:] if w.ndim == 4 else (1, 1)
            assert sizes[f"qx_n{k}_w"] == 4 * w.shape[0] * kh * kw * -(-w.shape[1] // 32), n.name
    fp = footprint(ig, "pk")
    assert fp.parameter_bytes == sum(v for s, v in sizes.items() if re.fullmatch(r"qx_n\d+_\w+", s))
    shapes = {"input": SHAPE, **{n.name: n.output_shape for n in ig.nodes}}
    plane = [shapes[n.inputs[0]] for n in ig.nodes if n.name in PACKED]  # (C, H, W) or (features,) of a linear
    assert fp.scratch_bytes == sizes["qx_bits"] == max(4 * -(-s[0] // 32) * int(np.prod(s[1:])) for s in plane)
    assert dict((n, a) for n, _, a in fp.accumulators)["p.lin"] == "int32, XNOR-popcount"
    compile_c([*ARM, "-O2", "-fstack-usage", "-c", "-o", "m.o", "pk_inference.c"], tmp_path, "arm-none-eabi-gcc")
    frames = {}
    for line in (tmp_path / "m.su").read_text().splitlines():
        where, size, kind = line.split("\t")
        assert kind.startswith("static"), line
        frames[where.rsplit(":", 1)[-1]] = int(size)
    run = frames.pop("pk_run")
    # what a kernel calls (counted even when inlined): the window, the popcount, rshift, clamp
    helpers = max([frames.pop(h) for h in list(frames) if h.startswith("qx_acc_")], default=0) + \
        sum(frames.pop(h, 0) for h in CALLEES)
    assert run + max(frames.values()) + helpers <= STACK_BOUND, (run, frames, helpers)


QEMU_MAIN = r"""
#include <stdio.h>
#include "pk_inference.h"
#include "images.h"
static unsigned long sums[PK_NODE_COUNT];
static void node_sum(int node, const char *name, const uint8_t *codes, size_t n)
{
    size_t i;
    (void)name;
    sums[node] = 0;
    for (i = 0; i < n; i++)
        sums[node] += (unsigned long)codes[i] * (unsigned long)(i % 251u + 1u);
}
int main(void)
{
    static int32_t out[PK_OUTPUT_SIZE];
    int i, j;
    pk_set_hook(node_sum);
    for (i = 0; i < IMAGES; i++) {
        if (pk_run(images[i], out) != 0)
            return 1;
        printf("image %d:", i);
        for (j = 0; j < PK_OUTPUT_SIZE; j++)
            printf(" %ld", (long)out[j]);
        printf(" sums:");
        for (j = 0; j < PK_NODE_COUNT; j++)
            printf(" %lu", sums[j]);
        printf("\n");
    }
    return 5;
}
"""


def test_packed_layers_on_a_cortex_m4_in_qemu(packed_graph, tmp_path):
    """Bare metal (libgcc's popcount on a core without one): every image's output codes and a
    position-weighted sum of every node's codes equal run_integer's; exit status 5 is main's."""
    ig, x = packed_graph
    write_csource(ig, "pk", tmp_path)
    (tmp_path / "images.h").write_text(images_header(x))
    (tmp_path / "main.c").write_text(QEMU_MAIN)
    res = run_on_cortex_m4(tmp_path, ["pk_inference.c", "main.c"])
    assert res.returncode == 5, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    want = run_integer(ig, x)
    weights = [(np.arange(want[n.name][0].size) % 251 + 1) for n in ig.nodes]
    expected = [f"image {i}: {' '.join(map(str, want[ig.output][i].ravel().tolist()))} sums: "
                + " ".join(str(int((want[n.name][i].ravel().astype(np.int64) * w).sum())) for n, w in zip(ig.nodes, weights))
                for i in range(len(x))]  # fmt: skip
    assert res.stdout.splitlines() == expected
