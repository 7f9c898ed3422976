"""qexport.quantize.intops against Python integers, explicit loops and torch (float64 on small
integers, where every sum is exact)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from qexport.quantize.intops import avgpool2_int, int_conv2d, int_linear, relu_int, requantize

I64_MAX = 2**63 - 1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["nchw", "nc", "scalar"]))
def test_requantize_matches_python_ints(seed, form):
    rng = np.random.default_rng(seed)
    C = int(rng.integers(1, 6))
    shape = (2, C, 3, 2) if form == "nchw" else (3, C)
    acc = rng.integers(-(2**40), 2**40, shape)
    if form == "scalar":
        m, s = int(rng.integers(0, 2**16)), int(rng.integers(0, 32))
        ms, ss = np.full(C, m), np.full(C, s)
        got = requantize(acc, m, s)
    else:
        ms, ss = rng.integers(0, 2**16, C), rng.integers(0, 32, C)
        got = requantize(acc, ms.astype(np.int32), ss.astype(np.int32))
    assert got.dtype == np.int64 and got.shape == acc.shape
    for idx in np.ndindex(shape):
        c = idx[1]
        assert int(got[idx]) == (int(acc[idx]) * int(ms[c])) >> int(ss[c])  # Python >>: floor


def test_requantize_floor_and_overflow():
    assert requantize(np.array([-5, -4, -3, 3, 5]), 1, 1).tolist() == [-3, -2, -2, 1, 2]  # floor(x / 2)
    m = 40000
    limit = I64_MAX // m
    assert requantize(np.array([limit, -limit]), m, 0).tolist() == [limit * m, -limit * m]
    for bad in (limit + 1, -limit - 1):
        with pytest.raises(OverflowError):
            requantize(np.array([bad]), m, 0)
    with pytest.raises(ValueError):
        requantize(np.array([1]), 1, 64)
    with pytest.raises(TypeError):
        requantize(np.array([1.0]), 1, 0)


def loop_conv(x, w, b, stride, padding, groups):
    """Explicit-loop reference of a grouped 2-D convolution on Python ints."""
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    (sh, sw), (ph, pw) = stride, padding
    Ho, Wo = (H + 2 * ph - KH) // sh + 1, (W + 2 * pw - KW) // sw + 1
    og = O // groups
    out = np.zeros((N, O, Ho, Wo), dtype=object)
    for n in range(N):
        for o in range(O):
            g = o // og
            for i in range(Ho):
                for j in range(Wo):
                    total = 0 if b is None else int(b[o])
                    for c in range(Cg):
                        for u in range(KH):
                            for v in range(KW):
                                r, q = i * sh + u - ph, j * sw + v - pw
                                if 0 <= r < H and 0 <= q < W:
                                    total += int(x[n, g * Cg + c, r, q]) * int(w[o, c, u, v])
                    out[n, o, i, j] = total
    return out


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 7))
    W = draw(st.integers(max(1, kw - 2 * pw), 7))
    N = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(0, 256, (N, cg * groups, H, W))
    w = rng.integers(-255, 256, (og * groups, cg, kh, kw))
    b = rng.integers(-(2**20), 2**20, og * groups) if draw(st.booleans()) else None
    return x, w, b, (sh, sw), (ph, pw), groups


@settings(max_examples=120, deadline=None)
@given(conv_cases())
def test_int_conv2d_matches_loops_and_torch(case):
    x, w, b, stride, padding, groups = case
    got = int_conv2d(x, w, b, stride, padding, groups)
    assert got.dtype == np.int64
    assert np.array_equal(got, loop_conv(x, w, b, stride, padding, groups).astype(np.int64))
    # float64 torch is exact here: |terms| < 2^16, at most a few hundred of them
    ref = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                   None if b is None else torch.from_numpy(b).double(), stride, padding, 1, groups)  # fmt: skip
    assert np.array_equal(got, ref.numpy().astype(np.int64))


def test_int_conv2d_scalar_stride_padding_and_errors():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1, 1, 28, 28))
    w = rng.integers(-255, 256, (6, 1, 5, 5))
    got = int_conv2d(x, w, None, 1, 2)  # LeNet c1: 5x5, padding 2
    ref = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), padding=2)
    assert got.shape == (1, 6, 28, 28) and np.array_equal(got, ref.numpy().astype(np.int64))
    with pytest.raises(ValueError):
        int_conv2d(x, w, None, 1, 0, groups=2)
    with pytest.raises(OverflowError):
        int_conv2d(np.full((1, 1, 2, 2), 2**40), np.full((1, 1, 2, 2), 2**40), None)


def test_seed002_integer_layer():
    """Seed 002's QuantConv2d.forward in torch: (conv2d(x, w_q - Z, b_q) * scale) >> shift."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (2, 6, 12, 12))
    w_minus_z = rng.integers(-141, 115, (16, 6, 5, 5))
    b_q = rng.integers(-5000, 5000, 16)
    scale, shift = 13, 12
    acc_t = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w_minus_z).double(), torch.from_numpy(b_q).double())
    ref = (acc_t.long() * scale) >> shift
    ours = requantize(int_conv2d(x, w_minus_z, b_q), scale, shift)
    assert np.array_equal(ours, ref.numpy())
    ours = relu_int(ours)
    assert (ours >= 0).all() and np.array_equal(ours, torch.relu(ref).numpy())


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 10), st.integers(0, 2**32 - 1), st.booleans())
def test_int_linear_matches_python(N, I, O, seed, with_bias):
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2**15), 2**15, (N, I))
    w = rng.integers(-255, 256, (O, I))
    b = rng.integers(-(2**31), 2**31, O) if with_bias else None
    got = int_linear(x, w, b)
    for n in range(N):
        for o in range(O):
            exp = sum(int(x[n, i]) * int(w[o, i]) for i in range(I)) + (int(b[o]) if with_bias else 0)
            assert int(got[n, o]) == exp


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_avgpool2_rounds_half_up(N, C, H, W, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-1000, 1000, (N, C, H, W))
    got = avgpool2_int(x)
    assert got.shape == (N, C, H // 2, W // 2) and got.dtype == np.int64
    for idx in np.ndindex(got.shape):
        n, c, i, j = idx
        total = int(x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].sum())
        half_up = (Fraction(total, 4) + Fraction(1, 2)).__floor__()
        assert int(got[idx]) == half_up
    # seed 002: F.avg_pool2d(x.float()).round() (half to even) -- differs only where sum = 2 (mod 4)
    if H >= 2 and W >= 2:
        torch_round = F.avg_pool2d(torch.from_numpy(x).double(), 2, 2).round().long().numpy()
        sums = F.avg_pool2d(torch.from_numpy(x).double(), 2, 2, divisor_override=1).long().numpy()
        differ = got != torch_round
        assert (sums[differ] % 4 == 2).all()
        assert np.array_equal(got[differ], torch_round[differ] + 1)


def test_avgpool2_known_values_and_relu():
    x = np.array([[[[1, 1, 0, 2], [0, 0, 0, 0]]]])  # sums 2 and 2: avg 0.5 -> 1 (half up)
    assert avgpool2_int(x).tolist() == [[[[1, 1]]]]
    assert avgpool2_int(np.array([[[[-1, -1], [0, 0]]]])).tolist() == [[[[0]]]]  # -0.5 -> 0
    assert avgpool2_int(np.array([[[[-3, -3], [0, 0]]]])).tolist() == [[[[-1]]]]  # -1.5 -> -1
    assert relu_int(np.array([-3, 0, 5], np.int32)).tolist() == [0, 0, 5]
    with pytest.raises(TypeError):
        relu_int(np.array([0.5]))
