"""The integer executor's float gemm paths (qexport.integer.run: float32 / float64 BLAS where the
accumulator bound allows) give exactly what a plain int64 transcription of the contract gives, on
every node kind, with the bound on both sides of 2^24 and 2^53 and worst-case inputs.

The transcription below is written from the contract (qexport/integer/ir.py docstring) with int64
numpy only and its own windowing (a loop over kernel offsets, not qexport.graph.execute.windows);
nothing in it comes from the package but the IntNode/IntGraph containers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qexport.integer.ir import IntGraph, IntNode, QTensor, accumulator_bound
from qexport.integer.run import exact_dtype, run_integer

# --------------------------------------------------------------------------- int64 transcription


def shift(v, s):
    """(v + 2^(s-1)) >> s, s = 0 leaves v: floor division by 2^s of int64 values."""
    v, s = np.asarray(v, np.int64), np.asarray(s, np.int64)
    p = np.left_shift(np.int64(1), s)
    return np.where(s > 0, (v + p // 2) // p, v)


def col(a, ndim):
    a = np.asarray(a)
    return a.reshape((1, -1) + (1,) * (ndim - 2)) if a.ndim == 1 else a


def patches(x, kernel, stride, padding, dilation, pad_value):
    """[(i, j, x[:, :, i*dh + sh*r, j*dw + sw*c]) for each kernel offset], each (N, C, Ho, Wo)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    ho = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    return [(i, j, x[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw])
            for i in range(kh) for j in range(kw)]  # fmt: skip


def accumulator(node, x):
    a, w = node.attrs, np.asarray(node.arrays["w_minus_z"], np.int64)
    xz = x.astype(np.int64) - a["zero_in"]
    if node.op == "linear":
        return np.einsum("nk,ok->no", xz, w)
    o, cg, kh, kw = w.shape
    g = a["groups"]
    acc = 0
    for i, j, p in patches(xz, (kh, kw), a["stride"], a["padding"], a["dilation"], 0):
        n, c, ho, wo = p.shape
        part = np.einsum("ngchw,goc->ngohw", p.reshape(n, g, cg, ho, wo), w[:, :, i, j].reshape(g, o // g, cg))
        acc = acc + part.reshape(n, o, ho, wo)
    return acc


def signs(v, tau, flip):
    tau, flip = col(np.asarray(tau, np.int64), v.ndim), col(np.asarray(flip, bool), v.ndim)
    return np.where(flip, v <= tau, v >= tau) * 2


def reference(node, ins):
    a, r, x = node.attrs, node.arrays, ins[0]
    if node.op in ("conv2d", "linear"):
        acc = accumulator(node, x)
        if a["mode"] == "sign":
            codes = signs(acc, r["tau"], r["flip"])
            if "pool_kernel" in a:
                ps = [p for _, _, p in patches(codes, a["pool_kernel"], a["pool_stride"], (0, 0), (1, 1), 0)]
                return np.where(col(np.asarray(r["flip"], bool), 4), np.minimum.reduce(ps), np.maximum.reduce(ps))
            return codes
        y = a["zero_out"] + shift((acc + col(r["b_q"], acc.ndim)) * col(r["m"], acc.ndim), col(r["s"], acc.ndim))
        return np.clip(y, a["lo"], a["hi"])
    if node.op == "clamp":
        return np.clip(x, a["lo"], a["hi"])
    if node.op == "max_pool2d":
        return np.maximum.reduce([p for _, _, p in patches(x.astype(np.int64), a["kernel"], a["stride"], a["padding"],
                                                           a["dilation"], -1)])  # fmt: skip
    if node.op == "avg_pool2d":
        ps = patches(x.astype(np.int64), a["kernel"], a["stride"], a["padding"], (1, 1), node.out.zero_point)
        k = len(ps)
        return (sum(p for _, _, p in ps) + k // 2) // k
    if node.op == "global_avg_pool2d":
        k = x.shape[2] * x.shape[3]
        return ((x.astype(np.int64).sum(axis=(2, 3)) + k // 2) // k)[:, :, None, None]
    if node.op == "reshape":
        return x.reshape(x.shape[0], *node.output_shape)
    if node.op == "channel_shuffle":
        n, c, h, w = x.shape
        return x.reshape(n, a["groups"], c // a["groups"], h, w).swapaxes(1, 2).reshape(n, c, h, w)
    if node.op == "table":
        return np.asarray(r["table"])[x]
    if node.op == "threshold":
        return signs(x.astype(np.int64), r["tau"], r["flip"])
    if node.op == "prelu":
        v = x.astype(np.int64) - a["zero_in"]
        neg = shift(v * col(r["m_neg"], v.ndim), col(r["s_neg"], v.ndim))
        return np.clip(a["zero_out"] + np.where(v >= 0, shift(v * r["m_pos"], r["s_pos"]), neg), 0, 255)
    if node.op == "add":
        y = a["zero_out"] + shift((ins[0].astype(np.int64) - a["zero_a"]) * r["m_a"], r["s_a"]) \
            + shift((ins[1].astype(np.int64) - a["zero_b"]) * r["m_b"], r["s_b"])
        return np.clip(y, 0, 255)
    if node.op == "cat":
        return np.concatenate([np.clip(a["zero_out"] + shift((t.astype(np.int64) - z) * r[f"m{k}"], r[f"s{k}"]), 0, 255)
                               for k, (t, z) in enumerate(zip(ins, a["zeros_in"]))], axis=1)  # fmt: skip
    raise AssertionError(node.op)


def reference_run(ig: IntGraph, pixels):
    values = {"input": pixels}
    for node in ig.nodes:
        values[node.name] = np.asarray(reference(node, [values[i] for i in node.inputs])).astype(np.uint8)
    return values


def assert_same(ig, pixels):
    got, want = run_integer(ig, pixels), reference_run(ig, pixels)
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == np.uint8 and got[name].flags.c_contiguous, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name, strict=True)
    return got


# --------------------------------------------------------------------------- graphs


def conv(name, src, rng, cin, hw, cout, k, stride=(1, 1), pad=(0, 0), dil=(1, 1), groups=1, wmax=127, zin=0,
         zout=0, m_bits=12, s_max=44, op="conv2d", mode="requantize"):  # fmt: skip
    if op == "linear":
        shape, w_shape, ho, wo = (cout,), (cout, cin), None, None
    else:
        ho = (hw[0] + 2 * pad[0] - dil[0] * (k - 1) - 1) // stride[0] + 1
        wo = (hw[1] + 2 * pad[1] - dil[1] * (k - 1) - 1) // stride[1] + 1
        shape, w_shape = (cout, ho, wo), (cout, cin // groups, k, k)
    arrays = {"w_minus_z": rng.integers(-wmax, wmax + 1, w_shape).astype(np.int32)}
    attrs = {"mode": mode, "zero_in": zin, "acc_bits": 64}
    if op == "conv2d":
        attrs.update(stride=stride, padding=pad, dilation=dil, groups=groups)
    if mode == "requantize":
        arrays.update(b_q=rng.integers(-1000, 1001, cout).astype(np.int64),
                      m=rng.integers(1, 1 << m_bits, cout).astype(np.int64),
                      s=rng.integers(0, s_max, cout).astype(np.int64))  # fmt: skip
        attrs.update(zero_out=zout, lo=0, hi=255)
    return IntNode(name, op, (src,), shape, QTensor(0.1, zout), attrs, arrays)


def with_sign(node, rng, pool=None):
    c = node.output_shape[0]
    arrays = {"w_minus_z": node.arrays["w_minus_z"], "tau": rng.integers(-3000, 3000, c), "flip": rng.integers(0, 2, c).astype(np.uint8)}
    attrs = {**node.attrs, "mode": "sign"}
    shape = node.output_shape
    if pool:
        attrs.update(pool_kernel=pool[0], pool_stride=pool[1])
        shape = (c, (shape[1] - pool[0][0]) // pool[1][0] + 1, (shape[2] - pool[0][1]) // pool[1][1] + 1)
    return IntNode(node.name, node.op, node.inputs, shape, QTensor(1.0, 1), attrs, arrays)


def every_kind_graph(rng):
    """Every op of the contract on a 3 x 10 x 9 input; weights of every accumulator tier."""
    n = [conv("c1", "input", rng, 3, (10, 9), 8, 3, (1, 1), (1, 1), wmax=200, zin=17, zout=5)]  # float32
    n.append(IntNode("relu", "clamp", ("c1",), n[-1].output_shape, n[-1].out, {"lo": 5, "hi": 200}))
    n.append(conv("c2", "relu", rng, 8, (10, 9), 8, 3, (2, 1), (2, 1), (2, 1), groups=4, wmax=40000, zin=5, zout=9,
                  m_bits=4, s_max=30))  # float64 tier  # fmt: skip
    n.append(conv("dw", "relu", rng, 8, (10, 9), 8, 3, (1, 1), (1, 1), groups=8, wmax=1 << 30, zin=5, zout=3,
                  m_bits=1, s_max=50))  # depthwise, float64  # fmt: skip
    n.append(IntNode("mp", "max_pool2d", ("dw",), (8, 5, 5), n[-1].out,
                     {"kernel": (3, 2), "stride": (2, 2), "padding": (1, 1), "dilation": (1, 1)}))
    n.append(IntNode("ap", "avg_pool2d", ("relu",), (8, 5, 5), n[1].out, {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}))
    n.append(IntNode("tab", "table", ("ap",), (8, 5, 5), QTensor(0.2, 3), {}, {"table": rng.integers(0, 256, 256).astype(np.uint8)}))
    n.append(IntNode("shuf", "channel_shuffle", ("tab",), (8, 5, 5), n[-1].out, {"groups": 2}))
    n.append(IntNode("add", "add", ("shuf", "mp"), (8, 5, 5), QTensor(0.3, 77), {"zero_a": 3, "zero_b": 40, "zero_out": 77},
                     {"m_a": np.int64(40000), "s_a": np.int64(17), "m_b": np.int64(3), "s_b": np.int64(0)}))
    n.append(IntNode("cat", "cat", ("add", "tab"), (16, 5, 5), QTensor(0.3, 10), {"zeros_in": (77, 3), "zero_out": 10},
                     {"m0": np.array([30000]), "s0": np.array([15]), "m1": np.array([5]), "s1": np.array([1])}))
    n.append(IntNode("prelu", "prelu", ("cat",), (16, 5, 5), QTensor(0.05, 100), {"zero_in": 10, "zero_out": 100},
                     {"m_pos": np.array([20001]), "s_pos": np.array([14]), "m_neg": rng.integers(-40000, 40000, 16),
                      "s_neg": rng.integers(0, 20, 16)}))  # fmt: skip
    n.append(IntNode("thr", "threshold", ("prelu",), (16, 5, 5), QTensor(1.0, 1), {},
                     {"tau": rng.integers(60, 140, 16), "flip": rng.integers(0, 2, 16).astype(np.uint8)}))
    n.append(with_sign(conv("bin", "thr", rng, 16, (5, 5), 6, 3, pad=(1, 1), wmax=1, zin=1), rng))
    n.append(with_sign(conv("binpool", "bin", rng, 6, (5, 5), 6, 2, wmax=1, zin=1), rng, pool=((2, 2), (1, 1))))
    n.append(IntNode("gap", "global_avg_pool2d", ("binpool",), (6, 1, 1), QTensor(1.0, 1)))
    n.append(IntNode("flat", "reshape", ("gap",), (6,), QTensor(1.0, 1)))
    n.append(with_sign(conv("linsign", "flat", rng, 6, None, 5, None, wmax=300, zin=1, op="linear"), rng))
    n.append(conv("lin", "flat", rng, 6, None, 4, None, wmax=1 << 20, zin=1, zout=60, op="linear"))
    return IntGraph(tuple(n), (3, 10, 9), QTensor(0.01, 17), "lin")


def test_every_node_kind_equals_the_int64_transcription():
    rng = np.random.default_rng(3)
    ig = every_kind_graph(rng)
    tiers = {n.name: exact_dtype(accumulator_bound(n.arrays["w_minus_z"])) for n in ig.nodes if "w_minus_z" in n.arrays}
    assert tiers["c1"] is np.float32 and tiers["c2"] is tiers["dw"] is tiers["lin"] is np.float64
    pixels = rng.integers(0, 256, (5, 3, 10, 9)).astype(np.uint8)
    pixels[0], pixels[1] = 0, 255  # the extremes of x - Z_x
    got = assert_same(ig, pixels)
    for name in ("c1", "c2", "dw", "bin", "thr", "lin"):  # not degenerate: several codes occur
        assert len(np.unique(got[name])) > 1, name


def test_tier_limits():
    assert exact_dtype((1 << 24) - 1) is np.float32 and exact_dtype(1 << 24) is np.float64
    assert exact_dtype((1 << 53) - 1) is np.float64 and exact_dtype(1 << 53) is np.int64
    w = np.full((2, 3, 2, 2), -7, np.int32)
    assert accumulator_bound(w) == 255 * 7 * 12


def _worst_linear(k: int, wmax: int, near: int):
    """A linear node whose accumulators (x - Z_x = 255, every weight wmax but a few) are odd and
    just below `near`: a gemm one tier too narrow would round them."""
    w = np.full((3, k), wmax, np.int64)
    w[:, 0] = [wmax - 1, wmax - 3, wmax - 6]  # odd sums, distinct per output
    attrs = {"mode": "requantize", "zero_in": 0, "acc_bits": 64, "zero_out": 0, "lo": 0, "hi": 255}
    arrays = {"w_minus_z": w.astype(np.int32), "b_q": np.zeros(3, np.int64), "m": np.ones(3, np.int64),
              "s": np.zeros(3, np.int64)}  # fmt: skip
    node = IntNode("lin", "linear", ("input",), (3,), QTensor(1.0, 0), attrs, arrays)
    return IntGraph((node,), (k,), QTensor(1.0, 0), "lin"), node


def test_accumulators_at_the_float_limits_are_exact():
    from qexport.integer.run import _accumulate

    for k, wmax, tier in ((129, 509, np.float32), (131, 509, np.float64),  # 255 * 509 * 129 < 2^24 <= ... * 131
                          (16400, (1 << 31) - 1, np.float64), (16449, (1 << 31) - 1, np.int64)):  # fmt: skip
        ig, node = _worst_linear(k, wmax, 0)
        assert exact_dtype(accumulator_bound(node.arrays["w_minus_z"])) is tier, k
        x = np.full((2, k), 255, np.uint8)
        acc = _accumulate(node, x)
        want = [255 * int(sum(int(v) for v in row)) for row in np.asarray(node.arrays["w_minus_z"], np.int64)]
        assert acc.dtype == np.int64 and acc[0].tolist() == want and acc[1].tolist() == want, k
    # a conv past 2^53 (K = 1901 * 9): int64, partial windows at the padded border
    rng = np.random.default_rng(5)
    node = conv("wide", "input", rng, 1901, (3, 4), 3, 3, pad=(1, 1), wmax=(1 << 31) - 1, zin=255, m_bits=1, s_max=60)
    assert exact_dtype(accumulator_bound(node.arrays["w_minus_z"])) is np.int64
    x = rng.integers(0, 2, (2, 1901, 3, 4)).astype(np.uint8)  # x - Z_x in {-255, -254}
    np.testing.assert_array_equal(_accumulate(node, x), accumulator(node, x), strict=True)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(3, 8), st.integers(3, 8), st.integers(1, 3),
       st.sampled_from([(1, 1), (2, 1), (1, 3)]), st.sampled_from([(0, 0), (1, 2)]), st.sampled_from([(1, 1), (2, 1)]),
       st.sampled_from([1, 2]), st.sampled_from([1, 255, 1 << 15, 1 << 26, (1 << 31) - 1]), st.integers(0, 255),
       st.integers(0, 2**32 - 1))  # fmt: skip
def test_random_convs_equal_the_transcription(n, cg, h, w, k, stride, pad, dil, groups, wmax, zin, seed):
    if dil[0] * (k - 1) + 1 > h + 2 * pad[0] or dil[1] * (k - 1) + 1 > w + 2 * pad[1]:
        return
    rng = np.random.default_rng(seed)
    c = conv("c", "input", rng, cg * groups, (h, w), 2 * groups, k, stride, pad, dil, groups, wmax, zin,
             m_bits=1 if wmax > 1 << 20 else 12, s_max=50)  # fmt: skip
    ig = IntGraph((c,), (cg * groups, h, w), QTensor(1.0, zin), "c")
    assert_same(ig, rng.integers(0, 256, (n, cg * groups, h, w)).astype(np.uint8))


def test_lenet_on_real_digits_equals_the_transcription():
    from qexport.integer.calibrate import calibrate
    from qexport.integer.lower import lower
    from conftest import LENET
    from onnx_support import onnx_qmodel

    digits = np.load(LENET.parent / "digits_test.npz")["images"][:, None]
    qm = onnx_qmodel(LENET, bits=8).quantized
    ig = lower(qm, calibrate(qm, digits[:64], progress=False))
    assert {exact_dtype(accumulator_bound(n.arrays["w_minus_z"])) for n in ig.nodes if "w_minus_z" in n.arrays} == {np.float32}
    assert_same(ig, digits)
