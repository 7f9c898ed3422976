"""qexport.quantize.ternary against a per-channel scalar transcription of the TWN rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qexport.quantize.ternary import TernaryResult, ternarize

F32_MAX = float(np.finfo(np.float32).max)
SPECIAL = [0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 3e38, -3e38, F32_MAX, -F32_MAX, 1.0, -1.0, 0.7]
ELEMENTS = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.floats(-1.0, 1.0, width=32),
    st.sampled_from(SPECIAL),
)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5)
TENSORS = st.one_of(
    hnp.arrays(np.float32, SHAPES, elements=ELEMENTS),
    st.builds(lambda shape, v: np.full(shape, v, np.float32), SHAPES, ELEMENTS),
    st.builds(lambda w: np.where(np.arange(w.shape[0]).reshape((-1,) + (1,) * (w.ndim - 1)) % 2 == 0, 0, w)
              .astype(np.float32), hnp.arrays(np.float32, SHAPES, elements=ELEMENTS)),  # zero channels
)


def ref_channel(values, ratio):
    """TWN rule for one channel, scalar Python (float64) arithmetic, strict comparison."""
    vals = [float(v) for v in np.asarray(values).reshape(-1)]
    delta = float(np.float32(ratio * math.fsum(abs(v) for v in vals) / len(vals)))
    codes = [(1 if v > 0 else -1) if abs(v) > delta else 0 for v in vals]
    kept = [abs(v) for v in vals if abs(v) > delta]
    alpha = math.fsum(kept) / len(kept) if kept else 0.0
    return delta, codes, alpha, not kept


@settings(max_examples=300, deadline=None)
@given(TENSORS, st.booleans(), st.sampled_from([0.7, 0.7, 0.5, 0.0, 1.0]))
def test_matches_per_channel_reference(w, per_channel, ratio):
    res = ternarize(w, per_channel=per_channel, ratio=ratio)
    assert isinstance(res, TernaryResult)
    assert res.codes.dtype == np.int8 and res.codes.shape == w.shape
    shape_p = (w.shape[0],) if per_channel else ()
    assert res.delta.shape == shape_p and res.alpha.shape == shape_p
    assert res.delta.dtype == np.float32 and res.alpha.dtype == np.float32
    assert np.isfinite(res.alpha).all() and (res.alpha >= 0).all() and np.isfinite(res.delta).all()
    rows = [w[c] for c in range(w.shape[0])] if per_channel else [w]
    codes = res.codes if per_channel else res.codes[None]
    deltas, alphas = np.atleast_1d(res.delta), np.atleast_1d(res.alpha)
    empty = 0
    for c, row in enumerate(rows):
        delta, ref_codes, alpha, is_empty = ref_channel(row, ratio)
        empty += is_empty
        # delta: the float64 mean may differ from fsum's in the last bits before the float32 rounding
        assert abs(float(deltas[c]) - delta) <= abs(delta) * 2.0**-22
        if deltas[c] == np.float32(delta):
            assert np.atleast_1d(codes[c]).reshape(-1).tolist() == ref_codes
            assert abs(float(alphas[c]) - alpha) <= alpha * 2.0**-22 + 1e-45
        # codes must always be consistent with the exported float32 delta
        mag = np.abs(row.astype(np.float64))
        assert np.array_equal(codes[c] != 0, mag > float(deltas[c]))
        assert np.array_equal(codes[c][codes[c] != 0], np.sign(row[codes[c] != 0]).astype(np.int8))
        assert (alphas[c] == 0) == (not (codes[c] != 0).any())
    if all(np.atleast_1d(res.delta) == np.array([np.float32(ref_channel(r, ratio)[0]) for r in rows])):
        assert res.empty_channels == empty


def test_known_channel():
    # |w| = 1, 2, 3, 0 -> mean 1.5, delta = 1.05; kept 2 and 3 -> alpha 2.5
    w = np.array([[1.0, -2.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    res = ternarize(w)
    assert res.codes.tolist() == [[0, -1, 1, 0], [0, 0, 0, 0]]
    assert res.delta.tolist() == [np.float32(1.05), 0.0] and res.alpha.tolist() == [2.5, 0.0]
    assert res.empty_channels == 1


def test_strict_rule_at_equality():
    # |w| == delta exactly: ratio 1 on a constant channel -> nothing kept (the seed code keeps it)
    w = np.full((2, 3), 0.5, np.float32)
    res = ternarize(w, ratio=1.0)
    assert (res.codes == 0).all() and res.alpha.tolist() == [0.0, 0.0] and res.empty_channels == 2


def test_per_tensor_and_one_dimensional():
    w = np.array([[0.1, -0.9], [0.0, 0.5]], np.float32)  # mean 0.375, delta 0.2625
    res = ternarize(w, per_channel=False)
    assert res.delta.shape == () and res.delta == np.float32(0.7 * 0.375)
    assert res.codes.tolist() == [[0, -1], [0, 1]] and res.alpha == np.float32(0.7)
    v = np.array([0.5, -2.0, 0.0], np.float32)  # 1-D: every element its own channel
    r1 = ternarize(v)
    assert r1.codes.tolist() == [1, -1, 0] and r1.alpha.tolist() == [0.5, 2.0, 0.0] and r1.empty_channels == 1


def test_extremes_and_validation():
    w = np.array([[3e38, -F32_MAX, 1e-45], [1e-45, -1e-45, 0.0]], np.float32)
    res = ternarize(w)
    assert np.isfinite(res.alpha).all() and np.isfinite(res.delta).all()
    assert res.codes.tolist() == [[1, -1, 0], [1, -1, 0]]
    with pytest.raises(ValueError):
        ternarize(np.array([np.nan], np.float32))
    with pytest.raises(ValueError):
        ternarize(w, ratio=-0.1)
    with pytest.raises(ValueError):
        ternarize(np.zeros((0,), np.float32))
