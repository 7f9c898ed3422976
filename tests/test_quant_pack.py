"""qexport.encode.pack against bit-by-bit Python references, round trips for every shape, word
size and layout, and the popcount dot products against the +-1 integer dot product."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qexport.encode import pack
from qexport.encode.pack import (
    from_layout,
    pack_binary,
    pack_ternary,
    popcount_dot,
    ternary_dot,
    to_layout,
    unpack_binary,
    unpack_ternary,
)

WORD_BITS = st.sampled_from([8, 16, 32, 64])
LAYOUTS = st.sampled_from(["oihw", "ohwi"])
MODES = st.sampled_from(["planes", "codes", "base3"])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=7)


def binary_codes(shape):
    return hnp.arrays(np.int8, shape, elements=st.sampled_from([-1, 1]))


def ternary_codes(shape):
    return hnp.arrays(np.int8, shape, elements=st.sampled_from([-1, 0, 1]))


def flat_order(codes, layout):
    """Per output channel, the elements in packing order, by explicit index loops (no transpose)."""
    out = []
    for o in range(codes.shape[0]):
        if layout == "ohwi" and codes.ndim == 4:
            _, I, H, W = codes.shape
            out.append([int(codes[o, i, h, w]) for h in range(H) for w in range(W) for i in range(I)])
        else:
            out.append([int(v) for v in np.asarray(codes[o]).reshape(-1)])
    return out


def ref_words(bit_rows, word_bits):
    """LSB-first: bit k -> word k // W, bit k % W, as Python ints."""
    result = []
    for bits in bit_rows:
        words = [0] * (-(-len(bits) // word_bits))
        for k, bit in enumerate(bits):
            words[k // word_bits] |= bit << (k % word_bits)
        result.append(words)
    return result


def as_ints(words):
    return [[int(v) for v in row] for row in words]


@settings(max_examples=250, deadline=None)
@given(SHAPES.flatmap(binary_codes), WORD_BITS, LAYOUTS)
def test_binary_matches_bit_reference_and_round_trips(codes, word_bits, layout):
    words, n = pack_binary(codes, word_bits, layout)
    assert n == int(np.prod(codes.shape[1:]))
    assert words.dtype == pack.WORD_DTYPES[word_bits] and words.shape == (codes.shape[0], -(-n // word_bits))
    bits = [[1 if v == 1 else 0 for v in row] for row in flat_order(codes, layout)]
    assert as_ints(words) == ref_words(bits, word_bits)
    back = unpack_binary(words, n, codes.shape, layout)
    assert back.dtype == np.int8 and np.array_equal(back, codes)


@settings(max_examples=250, deadline=None)
@given(SHAPES.flatmap(ternary_codes), WORD_BITS, LAYOUTS, MODES)
def test_ternary_matches_reference_and_round_trips(codes, word_bits, layout, mode):
    packed = pack_ternary(codes, word_bits, layout, mode)
    n = int(np.prod(codes.shape[1:]))
    rows = flat_order(codes, layout)
    if mode == "planes":
        assert set(packed) == {"nonzero", "positive"}
        assert as_ints(packed["nonzero"]) == ref_words([[int(v != 0) for v in r] for r in rows], word_bits)
        assert as_ints(packed["positive"]) == ref_words([[int(v == 1) for v in r] for r in rows], word_bits)
    elif mode == "codes":
        assert set(packed) == {"codes"} and packed["codes"].dtype == pack.WORD_DTYPES[word_bits]
        per = word_bits // 2
        expect = []
        for r in rows:
            words = [0] * (-(-len(r) // per))
            for k, v in enumerate(r):
                words[k // per] |= {0: 0b00, 1: 0b01, -1: 0b11}[v] << (2 * (k % per))
            expect.append(words)
        assert as_ints(packed["codes"]) == expect
    else:
        assert set(packed) == {"base3"} and packed["base3"].dtype == np.uint8
        expect = []
        for r in rows:
            by = [0] * (-(-len(r) // 5))
            for k, v in enumerate(r):
                by[k // 5] += (v % 3) * 3 ** (k % 5)
            expect.append(by)
        assert as_ints(packed["base3"]) == expect
    back = unpack_ternary(packed, n, codes.shape, layout, mode, word_bits)
    assert back.dtype == np.int8 and np.array_equal(back, codes)


@settings(max_examples=100, deadline=None)
@given(SHAPES, LAYOUTS)
def test_layout_round_trip(shape, layout):
    w = np.arange(int(np.prod(shape))).reshape(shape)
    lw = to_layout(w, layout)
    if layout == "ohwi" and w.ndim == 4:
        assert lw.shape == (shape[0], shape[2], shape[3], shape[1])
        assert all(lw[o, h, x, i] == w[o, i, h, x] for o, i, h, x in np.ndindex(*shape))
    else:
        assert lw.shape == w.shape
    assert np.array_equal(from_layout(lw, layout, shape), w)
    assert np.array_equal(from_layout(lw.reshape(shape[0], -1), layout, shape), w)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 200), WORD_BITS, st.integers(0, 2**32 - 1), st.booleans())
def test_popcount_dot_equals_integer_dot(batch, O, n, word_bits, seed, dirty_padding):
    rng = np.random.default_rng(seed)
    a = rng.choice(np.array([-1, 1], np.int8), (batch, n))
    w = rng.choice(np.array([-1, 1], np.int8), (O, n))
    aw, na = pack_binary(a, word_bits)
    ww, nw = pack_binary(w, word_bits)
    assert na == nw == n
    if dirty_padding and n % word_bits:  # padding bits set in the activations: masked away
        aw[:, -1] |= aw.dtype.type(~((1 << (n % word_bits)) - 1) & ((1 << word_bits) - 1))
    got = popcount_dot(aw, ww, n)
    assert got.dtype == np.int64 and got.shape == (batch, O)
    assert np.array_equal(got, a.astype(np.int64) @ w.astype(np.int64).T)
    # seed 000 formula (a): 2 * popcount(XNOR) - n, per element
    xnor = (a[:, None, :] == w[None, :, :]).sum(axis=2)
    assert np.array_equal(got, 2 * xnor - n)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 200), WORD_BITS, st.integers(0, 2**32 - 1))
def test_ternary_dot_equals_integer_dot(batch, O, n, word_bits, seed):
    rng = np.random.default_rng(seed)
    a = rng.choice(np.array([-1, 1], np.int8), (batch, n))
    t = rng.choice(np.array([-1, 0, 1], np.int8), (O, n))
    aw, _ = pack_binary(a, word_bits)
    planes = pack_ternary(t, word_bits)
    got = ternary_dot(aw, planes["nonzero"], planes["positive"], n)
    assert got.dtype == np.int64 and np.array_equal(got, a.astype(np.int64) @ t.astype(np.int64).T)


def test_popcount_fallback_table():
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        x = rng.integers(0, np.iinfo(dtype).max, (5, 7), dtype=dtype, endpoint=True)
        expect = np.array([[bin(int(v)).count("1") for v in row] for row in x])
        assert np.array_equal(pack._popcount_table(x), expect)
        assert np.array_equal(pack._popcount(x), expect)


def test_known_words():
    # 10 elements, word 8: [+1,-1,-1,+1,+1,+1,-1,-1,+1,-1] -> bits 1,0,0,1,1,1,0,0 | 1,0
    codes = np.array([[1, -1, -1, 1, 1, 1, -1, -1, 1, -1]], np.int8)
    words, n = pack_binary(codes, 8)
    assert n == 10 and words.tolist() == [[0b00111001, 0b01]]
    words32, _ = pack_binary(codes, 32)
    assert words32.tolist() == [[0b0100111001]]
    t = np.array([[1, -1, 0, 0, 1, -1]], np.int8)
    assert pack_ternary(t, 8, mode="codes")["codes"].tolist() == [[0b00001101, 0b1101]]
    assert pack_ternary(t, mode="base3")["base3"].tolist() == [[1 + 2 * 3 + 1 * 81, 2]]
    # ohwi: a [1, 2, 1, 2] kernel is read h, w, i: (i0,w0) (i1,w0) (i0,w1) (i1,w1)
    k = np.array([[[[1, -1]], [[1, 1]]]], np.int8)  # [o=1][i=2][h=1][w=2]
    assert pack_binary(k, 8, "ohwi")[0].tolist() == [[0b1011]]
    assert pack_binary(k, 8, "oihw")[0].tolist() == [[0b1101]]


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError):
        pack_binary(np.array([[1, 0]], np.int8))
    with pytest.raises(ValueError):
        pack_ternary(np.array([[2]], np.int8))
    with pytest.raises(ValueError):
        pack_binary(np.array([[1]], np.int8), word_bits=12)
    with pytest.raises(ValueError):
        pack_binary(np.array([[1]], np.int8), layout="nhwc")
    with pytest.raises(ValueError):  # padding bit set
        unpack_binary(np.array([[0b100]], np.uint8), 2, (1, 2))
    with pytest.raises(ValueError):  # wrong word count
        unpack_binary(np.array([[0, 0]], np.uint8), 2, (1, 2))
    with pytest.raises(ValueError):  # positive without nonzero
        unpack_ternary({"nonzero": np.array([[0]], np.uint8), "positive": np.array([[1]], np.uint8)}, 1, (1, 1),
                       word_bits=8)  # fmt: skip
    with pytest.raises(ValueError):  # code 10
        unpack_ternary({"codes": np.array([[0b10]], np.uint8)}, 1, (1, 1), mode="codes", word_bits=8)
    with pytest.raises(ValueError):  # byte > 242
        unpack_ternary({"base3": np.array([[243]], np.uint8)}, 5, (1, 5), mode="base3")
    with pytest.raises(ValueError):  # padding digit
        unpack_ternary({"base3": np.array([[9]], np.uint8)}, 2, (1, 2), mode="base3")
    with pytest.raises(ValueError):
        popcount_dot(np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.uint16), 8)
