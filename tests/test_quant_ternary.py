"""qexport.quantize.ternary against a per-channel float64 transcription of the TWN rule
(tests/references.py: ternary_channel / check_ternary, shared with tests/test_quant_fastpath.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qexport.quantize.ternary import TernaryResult, ternarize
from references import check_ternary

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


@settings(max_examples=300, deadline=None)
@given(TENSORS, st.booleans(), st.sampled_from([0.7, 0.7, 0.5, 0.0, 1.0]))
def test_matches_per_channel_reference(w, per_channel, ratio):
    res = ternarize(w, per_channel=per_channel, ratio=ratio)
    assert isinstance(res, TernaryResult)
    check_ternary(w, per_channel, ratio, res)  # tests/references.py: transcription, channel by channel


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
