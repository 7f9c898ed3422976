"""Every integer op of qexport/integer/run.py against a scalar Python-int transcription of its
contract (README "Integer inference", qexport/integer/ir.py), written here, over hypothesis
strategies that hit the edges: clamps at 0 and 255, zero points 0 and 255 (one per channel for
the network's input), rounding ties of rshift (s = 1, odd products) and of averages, m at
2^16 - 1, s = 0 and s up to 62, ternary channels with no weight, binary weights on sign input
with padding and an odd number of taps, binary weights on uint8 input, BN + sign thresholds with
flips and the max/min pooled variant.  Each case runs one node through run_integer.

Then the lowering's own decisions from float parameters (a stand-in Lowering around the real
handlers): BN + sign thresholds against the float BN's sign next to each threshold, a negative BN
scale negating the channel's weights, b_q = round(b / (S_x S_w)), and the sigmoid/tanh tables."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qexport.graph.ir import Node
from qexport.integer.ir import IntGraph, IntNode, QTensor
from qexport.integer.lower import Lowering
from qexport.integer.run import run_integer
from qexport.integer.weighted import SIGN, lower_weighted

M_MAX = (1 << 16) - 1  # m < 2^mult_bits, default mult_bits 16
FEW = settings(max_examples=60, deadline=None)
MANY = settings(max_examples=150, deadline=None)  # the weighted ops: the most edges

# ---------------------------------------------------------------------------------------------
# the contract, in Python ints


def rshift(v: int, s: int) -> int:
    return v if s == 0 else (v + (1 << (s - 1))) // (1 << s)  # floor division: rounds half up


def clamp(v: int, lo: int, hi: int) -> int:
    return min(max(v, lo), hi)


def accumulate(x, w, zin, stride=(1, 1), pad=(0, 0), dil=(1, 1), groups=1):
    """acc[n][o][oy][ox] = sum over in-bounds taps of (x - Z_c) (w - Z_w); a padding tap adds 0."""
    n_, c_, h, wd = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    o_, cg, kh, kw = len(w), len(w[0]), len(w[0][0]), len(w[0][0][0])
    ho = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    zc = [zin] * c_ if isinstance(zin, int) else list(zin)
    out = []
    for n in range(n_):
        per_o = []
        for o in range(o_):
            c0 = (o // (o_ // groups)) * cg
            plane = []
            for oy in range(ho):
                row = []
                for ox in range(wo):
                    acc = 0
                    for c in range(cg):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy, ix = oy * stride[0] - pad[0] + ky * dil[0], ox * stride[1] - pad[1] + kx * dil[1]
                                if 0 <= iy < h and 0 <= ix < wd:
                                    acc += (x[n][c0 + c][iy][ix] - zc[c0 + c]) * w[o][c][ky][kx]
                    row.append(acc)
                plane.append(row)
            per_o.append(plane)
        out.append(per_o)
    return out


def sign_code(v: int, tau: int, flip: bool) -> int:
    return 2 if (v <= tau if flip else v >= tau) else 0


def one_node(node: IntNode, x: np.ndarray, input_tensor=QTensor(0.1, 0)) -> np.ndarray:
    return run_integer(IntGraph((node,), tuple(x.shape[1:]), input_tensor, node.name), x)[node.name]


def _lists(a: np.ndarray):
    return np.asarray(a).astype(object).tolist()


# ---------------------------------------------------------------------------------------------
# strategies

EDGE_CODE = st.one_of(st.sampled_from([0, 1, 254, 255]), st.integers(0, 255))
ZERO = st.one_of(st.sampled_from([0, 255]), st.integers(0, 255))
M = st.one_of(st.sampled_from([1, M_MAX]), st.integers(1, M_MAX))
SHIFT = st.one_of(st.sampled_from([0, 1, 62]), st.integers(0, 40))


def codes(shape, elements=EDGE_CODE):
    return hnp.arrays(np.uint8, shape, elements=elements)


@st.composite
def conv_geometry(draw):
    groups = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - 2 * pad[0]), 5))
    w = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - 2 * pad[1]), 5))
    return dict(groups=groups, cin=cg * groups, cout=og * groups, k=(kh, kw), stride=stride, dilation=dil,
                padding=pad, hw=(h, w))  # fmt: skip


def weights_of(draw, scheme: str, shape):
    if scheme == "affine":
        w = draw(hnp.arrays(np.int32, shape, elements=st.one_of(st.sampled_from([-255, 255]), st.integers(-255, 255))))
    elif scheme == "ternary":
        w = draw(hnp.arrays(np.int32, shape, elements=st.integers(-1, 1)))
        w[0] = 0  # a channel with no weight: the accumulator is b_q alone
    else:
        w = draw(hnp.arrays(np.int32, shape, elements=st.sampled_from([-1, 1])))
    return w


@st.composite
def weighted_case(draw, mode: str):
    """(node, x, input tensor): a conv2d or linear in requantize or sign mode; input uint8 codes
    with one or per-channel zero points, or a sign tensor (codes 0, 2; Z = 1) under binary weights."""
    linear = draw(st.booleans())
    scheme = draw(st.sampled_from(["affine", "ternary", "binary"]))
    on_sign = scheme == "binary" and draw(st.booleans())
    n = draw(st.integers(1, 2))
    if linear:
        g = dict(cin=draw(st.integers(1, 6)), cout=draw(st.integers(1, 3)))
        xshape, wshape = (n, g["cin"]), (g["cout"], g["cin"])
    else:
        g = draw(conv_geometry())
        xshape = (n, g["cin"], *g["hw"])
        wshape = (g["cout"], g["cin"] // g["groups"], *g["k"])
    if on_sign:
        x = draw(codes(xshape, st.sampled_from([0, 2])))
        zin = 1
    else:
        x = draw(codes(xshape))
        zin = draw(st.one_of(ZERO, st.lists(ZERO, min_size=g["cin"], max_size=g["cin"]).map(tuple)))
    w = weights_of(draw, scheme, wshape)
    attrs = {"zero_in": zin, "acc_bits": 32, "mode": mode}
    if not linear:
        attrs.update(stride=g["stride"], padding=g["padding"], dilation=g["dilation"], groups=g["groups"])
    arrays = {"w_minus_z": w}
    o = wshape[0]
    if mode == "requantize":
        zout = draw(ZERO)
        act = draw(st.sampled_from(["none", "relu", "relu6"]))
        six = draw(st.integers(0, 300))  # round(6 / S_y) of a ReLU6
        lo, hi = (0, 255) if act == "none" else (zout, 255 if act == "relu" else min(255, zout + six))
        attrs.update(zero_out=zout, lo=lo, hi=hi)
        bq = st.one_of(st.sampled_from([0, -(1 << 31), (1 << 31) - 1]), st.integers(-(1 << 20), 1 << 20))
        arrays.update(b_q=np.array(draw(st.lists(bq, min_size=o, max_size=o)), np.int64),
                      m=np.array(draw(st.lists(M, min_size=o, max_size=o)), np.int64),
                      s=np.array(draw(st.lists(SHIFT, min_size=o, max_size=o)), np.int64))  # fmt: skip
        out = QTensor(0.1, zout)
    else:
        arrays.update(tau=np.array(draw(st.lists(st.integers(-3000, 3000), min_size=o, max_size=o)), np.int64),
                      flip=np.array(draw(st.lists(st.booleans(), min_size=o, max_size=o)), np.uint8))  # fmt: skip
        out = SIGN
        if not linear and draw(st.booleans()):
            ho = (g["hw"][0] + 2 * g["padding"][0] - g["dilation"][0] * (g["k"][0] - 1) - 1) // g["stride"][0] + 1
            wo = (g["hw"][1] + 2 * g["padding"][1] - g["dilation"][1] * (g["k"][1] - 1) - 1) // g["stride"][1] + 1
            pk = (draw(st.integers(1, ho)), draw(st.integers(1, wo)))
            attrs.update(pool_kernel=pk, pool_stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))))
    shape = (o,) if linear else (o, 1, 1)  # run_integer does not read a weighted node's shape
    node = IntNode("n", "linear" if linear else "conv2d", ("input",), shape, out, attrs, arrays)
    return node, x


def _acc_of(node: IntNode, x: np.ndarray):
    a, w = node.attrs, _lists(node.arrays["w_minus_z"])
    if node.op == "linear":
        x4 = [[[[v]] for v in row] for row in _lists(x)]
        w4 = [[[[v]] for v in row] for row in w]
        return accumulate(x4, w4, a["zero_in"])
    return accumulate(_lists(x), w, a["zero_in"], a["stride"], a["padding"], a["dilation"], a["groups"])


@MANY
@given(weighted_case("requantize"))
def test_weighted_requantize_with_fused_clamps(case):
    node, x = case
    a, r = node.attrs, node.arrays
    acc = _acc_of(node, x)
    want = [[[[clamp(a["zero_out"] + rshift((v + int(r["b_q"][o])) * int(r["m"][o]), int(r["s"][o])), a["lo"], a["hi"])
               for v in row] for row in plane] for o, plane in enumerate(image)] for image in acc]  # fmt: skip
    got = one_node(node, x)
    assert got.reshape(np.shape(want)).tolist() == want


@MANY
@given(weighted_case("sign"))
def test_weighted_bn_sign_thresholds_and_pooled_signs(case):
    """code 2 where (flip ? acc <= tau : acc >= tau); pooled over windows: max, min where flip."""
    node, x = case
    a, r = node.attrs, node.arrays
    acc = _acc_of(node, x)
    want = [[[[sign_code(v, int(r["tau"][o]), bool(r["flip"][o])) for v in row] for row in plane]
             for o, plane in enumerate(image)] for image in acc]  # fmt: skip
    if "pool_kernel" in a:
        (kh, kw), (sh, sw) = a["pool_kernel"], a["pool_stride"]
        pooled = []
        for image in want:
            per_o = []
            for o, plane in enumerate(image):
                pick = min if r["flip"][o] else max
                ho, wo = (len(plane) - kh) // sh + 1, (len(plane[0]) - kw) // sw + 1
                per_o.append([[pick(plane[py * sh + i][px * sw + j] for i in range(kh) for j in range(kw))
                               for px in range(wo)] for py in range(ho)])  # fmt: skip
            pooled.append(per_o)
        want = pooled
    got = one_node(node, x)
    assert got.reshape(np.shape(want)).tolist() == want


@st.composite
def pool_case(draw, op: str):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pad = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))  # torch: padding <= kernel / 2
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if op == "max_pool2d" else (1, 1)
    h = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - 2 * pad[0]), 6))
    w = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - 2 * pad[1]), 6))
    x = draw(codes((draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)))
    attrs = {"kernel": (kh, kw), "stride": stride, "padding": pad}
    if op == "max_pool2d":
        attrs["dilation"] = dil
    return IntNode("p", op, ("input",), (1, 1, 1), QTensor(0.1, draw(ZERO)), attrs), x


def _pool_ref(node: IntNode, x: np.ndarray, reduce):
    a = node.attrs
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    n_, c_, h, w = x.shape
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xs = _lists(x)
    return [[[[reduce([xs[n][c][oy * sh - ph + i * dh][ox * sw - pw + j * dw]
                       if 0 <= oy * sh - ph + i * dh < h and 0 <= ox * sw - pw + j * dw < w else None
                       for i in range(kh) for j in range(kw)]) for ox in range(wo)] for oy in range(ho)]
              for c in range(c_)] for n in range(n_)]  # fmt: skip


@FEW
@given(pool_case("max_pool2d"))
def test_max_pool_on_codes_padding_never_wins(case):
    """max over the window's in-bounds codes (>= 0, so padding 0 never wins); a window wholly on the
    padding (dilated, width 1) holds only padding: 0."""
    node, x = case
    want = _pool_ref(node, x, lambda taps: max((t for t in taps if t is not None), default=0))
    assert one_node(node, x).reshape(np.shape(want)).tolist() == want


@FEW
@given(pool_case("avg_pool2d"))
@example((IntNode("p", "avg_pool2d", ("input",), (1, 1, 1), QTensor(0.1, 0), {"kernel": (2, 2), "stride": (2, 2),
                                                                              "padding": (0, 0)}),
          np.array([[[[0, 1], [0, 1]]]], np.uint8)))  # 2 / 4: a tie, rounds up to 1
def test_avg_pool_rounds_half_up_and_padding_holds_z(case):
    node, x = case
    z = node.out.zero_point
    k = node.attrs["kernel"][0] * node.attrs["kernel"][1]
    want = _pool_ref(node, x, lambda taps: (sum(z if t is None else t for t in taps) + k // 2) // k)
    assert one_node(node, x).reshape(np.shape(want)).tolist() == want


@FEW
@given(codes(st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))))
@example(np.array([[[[0, 1]]]], np.uint8))  # 1 / 2: a tie, rounds up
def test_global_average_rounds_half_up(x):
    node = IntNode("g", "global_avg_pool2d", ("input",), (x.shape[1], 1, 1), QTensor(0.1, 0))
    k = x.shape[2] * x.shape[3]
    want = [[(sum(sum(row) for row in plane) + k // 2) // k for plane in image] for image in _lists(x)]
    assert one_node(node, x).reshape(np.shape(want)).tolist() == want


@FEW
@given(codes(st.tuples(st.integers(1, 2), st.integers(1, 8))), ZERO, ZERO)
def test_clamp(x, lo, hi):
    lo, hi = min(lo, hi), max(lo, hi)
    node = IntNode("c", "clamp", ("input",), x.shape[1:], QTensor(0.1, lo), {"lo": lo, "hi": hi})
    assert one_node(node, x).tolist() == [[clamp(v, lo, hi) for v in row] for row in _lists(x)]


@st.composite
def per_channel_case(draw):
    c = draw(st.integers(1, 4))
    x = draw(codes((draw(st.integers(1, 2)), c, draw(st.integers(1, 3)), draw(st.integers(1, 3)))))
    return c, x


@FEW
@given(per_channel_case(), st.data())
def test_threshold_on_codes(case, data):
    c, x = case
    tau = data.draw(st.lists(st.integers(-1, 256), min_size=c, max_size=c))
    flip = data.draw(st.lists(st.booleans(), min_size=c, max_size=c))
    node = IntNode("t", "threshold", ("input",), x.shape[1:], SIGN, {},
                   {"tau": np.array(tau, np.int64), "flip": np.array(flip, np.uint8)})  # fmt: skip
    want = [[[[sign_code(v, tau[ch], flip[ch]) for v in row] for row in plane] for ch, plane in enumerate(image)]
            for image in _lists(x)]  # fmt: skip
    assert one_node(node, x).tolist() == want


@FEW
@given(per_channel_case(), st.data())
def test_prelu_and_leaky_relu(case, data):
    c, x = case
    zin, zout = data.draw(ZERO), data.draw(ZERO)
    m_pos, s_pos = data.draw(M), data.draw(SHIFT)
    one = data.draw(st.booleans())  # a leaky ReLU: one slope for every channel
    signed = st.one_of(M, M.map(lambda m: -m), st.just(0))
    m_neg = data.draw(st.lists(signed, min_size=1 if one else c, max_size=1 if one else c))
    s_neg = data.draw(st.lists(SHIFT, min_size=len(m_neg), max_size=len(m_neg)))
    node = IntNode("r", "prelu", ("input",), x.shape[1:], QTensor(0.1, zout), {"zero_in": zin, "zero_out": zout},
                   {"m_pos": np.array([m_pos], np.int64), "s_pos": np.array([s_pos], np.int64),
                    "m_neg": np.array(m_neg, np.int64), "s_neg": np.array(s_neg, np.int64)})  # fmt: skip

    def f(q, ch):
        v = q - zin
        k = 0 if one else ch
        return clamp(zout + (rshift(v * m_pos, s_pos) if v >= 0 else rshift(v * m_neg[k], s_neg[k])), 0, 255)

    want = [[[[f(q, ch) for q in row] for row in plane] for ch, plane in enumerate(image)] for image in _lists(x)]
    assert one_node(node, x).tolist() == want


TABLE = hnp.arrays(np.uint8, 256, elements=EDGE_CODE)


def _through_tables(node: IntNode, x: np.ndarray, tables: list[np.ndarray]) -> np.ndarray:
    """Run `node` whose inputs i are table_i[x] (index maps from the graph's one input)."""
    pre = tuple(IntNode(name, "table", ("input",), x.shape[1:], QTensor(0.1, 0), {}, {"table": t})
                for name, t in zip(node.inputs, tables))  # fmt: skip
    return run_integer(IntGraph(pre + (node,), x.shape[1:], QTensor(0.1, 0), node.name), x)[node.name]


@FEW
@given(codes(st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3))), TABLE, TABLE, st.data())
def test_add(x, ta, tb, data):
    za, zb, zy = data.draw(ZERO), data.draw(ZERO), data.draw(ZERO)
    ma, mb, sa, sb = data.draw(M), data.draw(M), data.draw(SHIFT), data.draw(SHIFT)
    node = IntNode("s", "add", ("a", "b"), x.shape[1:], QTensor(0.1, zy), {"zero_a": za, "zero_b": zb, "zero_out": zy},
                   {k: np.array([v], np.int64) for k, v in (("m_a", ma), ("s_a", sa), ("m_b", mb), ("s_b", sb))})
    a, b = ta[x], tb[x]
    want = [clamp(zy + rshift((p - za) * ma, sa) + rshift((q - zb) * mb, sb), 0, 255)
            for p, q in zip(_lists(a.ravel()), _lists(b.ravel()))]  # fmt: skip
    assert _through_tables(node, x, [ta, tb]).ravel().tolist() == want


@FEW
@given(codes(st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3))), st.lists(TABLE, min_size=1,
       max_size=3), st.data())  # fmt: skip
def test_cat_requantizes_every_input(x, tables, data):
    k = len(tables)
    zeros, zy = [data.draw(ZERO) for _ in range(k)], data.draw(ZERO)
    ms, ss = [data.draw(M) for _ in range(k)], [data.draw(SHIFT) for _ in range(k)]
    c = x.shape[1]
    node = IntNode("y", "cat", tuple(f"x{i}" for i in range(k)), (k * c, *x.shape[2:]), QTensor(0.1, zy),
                   {"zeros_in": tuple(zeros), "zero_out": zy},
                   {**{f"m{i}": np.array([ms[i]], np.int64) for i in range(k)},
                    **{f"s{i}": np.array([ss[i]], np.int64) for i in range(k)}})  # fmt: skip
    parts = [_lists(t[x]) for t in tables]
    want = [[[clamp(zy + rshift((q - zeros[i]) * ms[i], ss[i]), 0, 255) for q in row]
             for i in range(k) for row in parts[i][img]] for img in range(x.shape[0])]  # fmt: skip
    assert _through_tables(node, x, tables).tolist() == want


@FEW
@given(st.integers(1, 3), st.integers(1, 3), codes(st.tuples(st.integers(1, 2), st.just(1), st.integers(1, 3),
       st.integers(1, 2))))  # fmt: skip
def test_channel_shuffle_and_reshape(groups, per, x0):
    x = np.repeat(x0, groups * per, axis=1) + np.arange(groups * per, dtype=np.uint8).reshape(1, -1, 1, 1)
    c = groups * per
    node = IntNode("sh", "channel_shuffle", ("input",), x.shape[1:], QTensor(0.1, 0), {"groups": groups})
    xs = _lists(x)
    want = [[None] * c for _ in xs]
    for n in range(len(xs)):
        for a in range(per):
            for b in range(groups):
                want[n][a * groups + b] = xs[n][b * per + a]  # output a * groups + b is input b * per + a
    assert one_node(node, x).tolist() == want
    flat = IntNode("f", "reshape", ("input",), (int(np.prod(x.shape[1:])),), QTensor(0.1, 0))
    assert one_node(flat, x).tolist() == [[v for plane in image for row in plane for v in row] for image in xs]


@FEW
@given(codes(st.tuples(st.integers(1, 2), st.integers(1, 9))), TABLE)
def test_table_lookup(x, table):
    node = IntNode("t", "table", ("input",), x.shape[1:], QTensor(0.1, 0), {}, {"table": table})
    assert one_node(node, x).tolist() == [[int(table[v]) for v in row] for row in _lists(x)]


# ---------------------------------------------------------------------------------------------
# the lowering's decisions, from float parameters


class StandIn(Lowering):
    """The real handlers of qexport.integer.lower / weighted around hand-made parameters: a uint8
    input tensor `x`, float `state`, plan layers `plans` with integer `codes`, calibrated `ranges`."""

    def __init__(self, nodes, x: QTensor, state=None, plans=None, codes=None, ranges=None):
        self.graph, self.state, self.plans = None, dict(state or {}), dict(plans or {})
        self.qmodel = SimpleNamespace(tensor=lambda name: SimpleNamespace(data=codes[name]))
        self.users = {n.name: [] for n in nodes} | {"input": []}
        for n in nodes:
            for i in n.inputs:
                self.users[i].append(n)
        self.mult_bits, self.cal = 16, SimpleNamespace(ranges=dict(ranges or {}))
        self.where, self.tensors, self.nodes = {"input": "input"}, {"input": x}, []


FINITE = dict(allow_nan=False, allow_infinity=False)
SCALE = st.floats(1e-3, 1.0, **FINITE)
REAL = st.floats(-2.0, 2.0, **FINITE)


def _near_half(v: float) -> bool:
    return abs(abs(v - math.floor(v)) - 0.5) < 1e-6  # the float64 sums here and in numpy may round apart


@st.composite
def bn_layer(draw, channels: int):
    """BN parameters per channel: gamma of both signs (and 0), beta, running mean and var."""
    gamma = draw(st.lists(st.one_of(st.just(0.0), REAL.filter(lambda g: abs(g) > 1e-3)), min_size=channels,
                          max_size=channels))  # fmt: skip
    return {"weight": gamma, "bias": draw(st.lists(REAL, min_size=channels, max_size=channels)),
            "running_mean": draw(st.lists(REAL, min_size=channels, max_size=channels)),
            "running_var": draw(st.lists(st.floats(1e-3, 4.0, **FINITE), min_size=channels, max_size=channels))}


def _linear_with_bn(draw, sign: bool):
    o, f = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = QTensor(draw(SCALE), draw(ZERO))
    s_w = draw(st.lists(SCALE, min_size=o, max_size=o))
    zw = draw(st.integers(-3, 3))
    codes = draw(hnp.arrays(np.int64, (o, f), elements=st.integers(-128, 127)))
    bias = draw(st.lists(REAL, min_size=o, max_size=o))
    bn = draw(bn_layer(o))
    nodes = [Node("l", "linear", ("input",), (o,), {}, {"weight": "l.w", "bias": "l.b"}),
             Node("bn", "batch_norm", ("l",), (o,), {"eps": 1e-5}, {k: f"bn.{k}" for k in bn})]
    if sign:
        nodes.append(Node("s", "sign", ("bn",), (o,), {}, {}))
    q = SimpleNamespace(name="l", weight="l.w", scheme="affine", params={"scale": np.array(s_w), "zero_point": zw})
    state = {"l.b": np.array(bias)} | {f"bn.{k}": np.array(v, np.float64) for k, v in bn.items()}
    lo = draw(st.floats(-5.0, 0.0, **FINITE))
    lw = StandIn(nodes, x, state, {"l.w": q}, {"l.w": codes}, {"bn": (lo, lo + draw(st.floats(0.5, 10.0, **FINITE)))})
    lower_weighted(lw, nodes[0])
    return lw, x, s_w, zw, codes, bias, bn


def _bn_value(acc: int, k: int, x, s_w, bias, bn) -> float:
    """BN(S_x S_w acc + b) of channel k, in float64 from the float parameters."""
    g, b, mu, var = (bn[key][k] for key in ("weight", "bias", "running_mean", "running_var"))
    return g * (x.scale * s_w[k] * acc + bias[k] - mu) / math.sqrt(var + 1e-5) + b


@FEW
@given(st.data())
def test_lowered_bn_sign_thresholds_follow_the_float_bn(data):
    """+1 where BN >= 0: the lowered (tau, flip) agree with the float BN's sign at tau - 1, tau,
    tau + 1 (where those are accumulators a layer can reach) and at the extremes; negative gamma flips."""
    lw, x, s_w, _, _, bias, bn = _linear_with_bn(data.draw, sign=True)
    node = lw.nodes[0]
    assert node.attrs["mode"] == "sign" and node.out == SIGN
    for k in range(len(s_w)):
        tau, flip = int(node.arrays["tau"][k]), bool(node.arrays["flip"][k])
        for acc in {tau - 1, tau, tau + 1, -(1 << 20), 1 << 20}:
            v = _bn_value(acc, k, x, s_w, bias, bn)
            if abs(v) > 1e-9 * (1 + abs(acc)):  # not a float tie
                assert sign_code(acc, tau, flip) == (2 if v >= 0 else 0), (k, acc, v, tau, flip)


@FEW
@given(st.data())
def test_lowered_requantize_negates_negative_scales_and_rounds_b_q(data):
    """BN absorbed: scale' = S_x S_w g / sqrt(var + eps), b' = (b - mu) g / sqrt(var + eps) + beta;
    a channel with scale' < 0 has its weights negated; b_q = round(b' / |scale'|);
    m / 2^s ~ |scale'| / S_y within 1 % with m < 2^16."""
    lw, x, s_w, zw, codes, bias, bn = _linear_with_bn(data.draw, sign=False)
    node = lw.nodes[0]
    out = node.out
    for k in range(len(s_w)):
        g, b, mu, var = (bn[key][k] for key in ("weight", "bias", "running_mean", "running_var"))
        kbn = g / math.sqrt(var + 1e-5)
        scale, b2 = x.scale * s_w[k] * kbn, (bias[k] - mu) * kbn + b
        w = [int(c) - zw for c in codes[k]]
        assert node.arrays["w_minus_z"][k].tolist() == ([-v for v in w] if scale < 0 else w)
        if scale != 0:
            want = b2 / abs(scale)
            if not _near_half(want):
                assert int(node.arrays["b_q"][k]) == round(want)
            m, s = int(node.arrays["m"][k]), int(node.arrays["s"][k])
            assert 0 < m <= M_MAX and abs(m / 2**s - abs(scale) / out.scale) <= 0.01 * abs(scale) / out.scale
    lo, hi = min(lw.cal.ranges["bn"][0], 0.0), max(lw.cal.ranges["bn"][1], 0.0)  # covers [lo, hi] and 0
    assert out.scale == (hi - lo) / 255 and out.zero_point == min(max(round(-lo / out.scale), 0), 255)


@FEW
@given(st.sampled_from(["sigmoid", "tanh"]), SCALE, ZERO, st.floats(-3.0, 0.0, **FINITE), st.floats(0.1, 3.0, **FINITE))
def test_lowered_sigmoid_tanh_tables(op, s_x, z_x, lo, span):
    """table[q] = clamp(Z_y + round(f(S_x (q - Z_x)) / S_y), 0, 255), f in float64 (math)."""
    node = Node("t", op, ("input",), (4,), {}, {})
    lw = StandIn([node], QTensor(s_x, z_x), ranges={"t": (lo, lo + span)})
    getattr(lw, "op_" + op)(node)
    got = lw.nodes[0]
    f = (lambda v: 1.0 / (1.0 + math.exp(-v))) if op == "sigmoid" else math.tanh
    lo2, hi2 = min(lo, 0.0), max(lo + span, 0.0)
    s_y = (hi2 - lo2) / 255
    z_y = min(max(round(-lo2 / s_y), 0), 255)
    assert got.op == "table" and got.out.zero_point == z_y
    for q in range(256):
        v = f(s_x * (q - z_x)) / s_y
        if not _near_half(v):
            assert int(got.arrays["table"][q]) == clamp(z_y + round(v), 0, 255), q


@FEW
@given(SCALE, ZERO, st.data())
def test_lowered_thresholds_on_codes_and_sign_of_codes(s_x, z_x, data):
    """BN + sign of a uint8 tensor: code 2 exactly where BN(S_x (q - Z_x)) >= 0 over all 256 codes;
    a sign of codes: 2 above Z_x, 1 at Z_x, 0 below."""
    c = data.draw(st.integers(1, 3))
    bn = data.draw(bn_layer(c))
    nodes = [Node("bn", "batch_norm", ("input",), (c, 1, 1), {"eps": 1e-5}, {k: f"bn.{k}" for k in bn}),
             Node("s", "sign", ("bn",), (c, 1, 1), {}, {})]
    lw = StandIn(nodes, QTensor(s_x, z_x), {f"bn.{k}": np.array(v, np.float64) for k, v in bn.items()})
    lw.op_batch_norm(nodes[0])
    node = lw.nodes[0]
    assert node.op == "threshold" and node.out == SIGN
    for k in range(c):
        g, b, mu, var = (bn[key][k] for key in ("weight", "bias", "running_mean", "running_var"))
        tau, flip = int(node.arrays["tau"][k]), bool(node.arrays["flip"][k])
        for q in range(256):
            v = g * (s_x * (q - z_x) - mu) / math.sqrt(var + 1e-5) + b
            if abs(v) > 1e-9:
                assert sign_code(q, tau, flip) == (2 if v >= 0 else 0), (k, q, v)
    sign = Node("s", "sign", ("input",), (c, 1, 1), {}, {})
    lw = StandIn([sign], QTensor(s_x, z_x))
    lw.op_sign(sign)
    assert lw.nodes[0].arrays["table"].tolist() == [2 if q > z_x else 1 if q == z_x else 0 for q in range(256)]
