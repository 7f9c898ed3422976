"""qexport.quantize.binary against straightforward element/channel loops and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qexport.quantize.binary import binarize, binary_alpha, count_exact_zeros

F32_MAX = float(np.finfo(np.float32).max)
SPECIAL = [0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 3e38, -3e38, F32_MAX, -F32_MAX, 1.0, -1.0]
ELEMENTS = st.one_of(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(SPECIAL))
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)
TENSORS = st.one_of(
    hnp.arrays(np.float32, SHAPES, elements=ELEMENTS),
    st.builds(lambda shape, v: np.full(shape, v, np.float32), SHAPES, ELEMENTS),
)


@settings(max_examples=300, deadline=None)
@given(TENSORS)
def test_binarize_matches_elementwise_rule(w):
    b = binarize(w)
    assert b.dtype == np.int8 and b.shape == w.shape
    expect = [1 if float(v) > 0 else -1 for v in w.reshape(-1)]
    assert b.reshape(-1).tolist() == expect
    # agrees with torch.sign except at exact zeros, which torch leaves at 0 and qexport maps to -1
    t = torch.sign(torch.from_numpy(w)).numpy().astype(np.int8)
    assert np.array_equal(np.where(w == 0, -1, t), b)
    assert count_exact_zeros(w) == sum(1 for v in w.reshape(-1) if float(v) == 0.0)


@settings(max_examples=300, deadline=None)
@given(TENSORS)
def test_alpha_matches_channel_loop(w):
    a = binary_alpha(w)
    assert a.dtype == np.float32 and a.shape == (w.shape[0],)
    assert np.isfinite(a).all() and (a >= 0).all()
    for c in range(w.shape[0]):
        vals = [abs(float(v)) for v in np.atleast_1d(w[c]).reshape(-1)]
        exact = sum(vals) / len(vals)  # Python float64 sum: the mean may differ in the last bits
        assert abs(float(a[c]) - float(np.float32(exact))) <= abs(exact) * 2.0**-22 + 1e-45
        assert float(a[c]) <= max(vals) * (1 + 2.0**-23)


def test_one_dimensional_tensors_are_channels_of_one():
    w = np.array([0.5, -2.0, 0.0, 3e38], np.float32)
    assert np.array_equal(binary_alpha(w), np.abs(w))
    assert binarize(w).tolist() == [1, -1, -1, 1]


def test_alpha_near_float32_max_is_finite():
    w = np.full((2, 1000), F32_MAX, np.float32)
    w[1] *= -1
    a = binary_alpha(w)
    assert np.array_equal(a, np.array([F32_MAX, F32_MAX], np.float32))


def test_exact_zeros_and_validation():
    w = np.array([[0.0, -0.0, 1e-45], [-1e-45, 2.0, 0.0]], np.float32)
    assert binarize(w).tolist() == [[-1, -1, 1], [-1, 1, -1]]
    assert count_exact_zeros(w) == 3
    assert binary_alpha(np.zeros((3, 4), np.float32)).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        binary_alpha(np.array([1.0, np.nan], np.float32))
    with pytest.raises(ValueError):
        binarize(np.array([np.inf], np.float32))
    with pytest.raises(ValueError):
        binary_alpha(np.zeros((2, 0), np.float32))
    with pytest.raises(TypeError):
        binarize(np.array([1, 0]))
