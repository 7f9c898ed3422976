"""qexport.quantize.bias.quantize_bias against a scalar transcription of seed 002's
`(bias * 256) / (scale / 2 ** shift)` followed by round-half-even."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qexport.errors import PlanError
from qexport.quantize.bias import quantize_bias

BIASES = hnp.arrays(np.float32, st.integers(1, 12), elements=st.floats(-4.0, 4.0, width=32))


@settings(max_examples=300, deadline=None)
@given(BIASES, st.integers(1, 2**16 - 1), st.integers(0, 31), st.sampled_from([256, 1, 255, 1024]), st.booleans())
def test_matches_scalar_reference(b, m, s, gain, per_channel):
    if per_channel:
        rng = np.random.default_rng(m)
        ms, ss = rng.integers(1, 2**16, b.shape), rng.integers(0, 32, b.shape)
    else:
        ms, ss = np.full(b.shape, m), np.full(b.shape, s)
    expect = []
    for v, mi, si in zip(b.tolist(), ms.tolist(), ss.tolist()):
        x = round(v * gain / (mi / 2**si))  # Python round: half to even
        expect.append(x)
    if all(-(2**31) <= x < 2**31 for x in expect):
        got = quantize_bias(b, ms if per_channel else m, ss if per_channel else s, gain, layer="c1")
        assert got.dtype == np.int32 and got.tolist() == expect
    else:
        with pytest.raises(PlanError, match="c1"):
            quantize_bias(b, ms if per_channel else m, ss if per_channel else s, gain, layer="c1")


def test_seed002_torch_transcription():
    """Seed 002's load_quant: (self.bias * 256) / (self.scale / 2 ** self.shift), .round().int(),
    evaluated in float64 (the seed's float32 bias converted exactly)."""
    gen = torch.Generator().manual_seed(0)
    bias = torch.randn(120, generator=gen) * 0.3
    for scale, shift in [(23, 12), (13, 12), (3, 11), (13, 13)]:
        ref = ((bias.double() * 256) / (scale / 2**shift)).round().int().numpy()
        assert np.array_equal(quantize_bias(bias.numpy(), scale, shift), ref)


def test_errors_name_the_layer():
    with pytest.raises(PlanError, match="f6"):
        quantize_bias(np.array([1.0]), 1, 31, 256, layer="f6")  # 1 * 256 * 2^31 > int32
    with pytest.raises(PlanError, match="layer3.conv"):
        quantize_bias(np.array([0.0, 0.5]), np.array([4, 0]), np.array([3, 3]), layer="layer3.conv")
    with pytest.raises(PlanError, match="out"):
        quantize_bias(np.array([np.nan]), 1, 0, layer="out")
    # m == 0 with a zero bias is fine: 0
    assert quantize_bias(np.array([0.0, 0.25]), np.array([0, 1]), np.array([0, 2])).tolist() == [0, 256]


def test_int32_boundaries():
    # b * G / (m / 2^s) = b exactly with G = 1, m = 1, s = 0
    assert quantize_bias(np.array([2.0**31 - 1, -(2.0**31)]), 1, 0, 1).tolist() == [2**31 - 1, -(2**31)]
    with pytest.raises(PlanError):
        quantize_bias(np.array([2.0**31]), 1, 0, 1)
    with pytest.raises(PlanError):
        quantize_bias(np.array([-(2.0**31) - 1]), 1, 0, 1)
    # round half to even
    assert quantize_bias(np.array([0.5, 1.5, 2.5, -0.5, -1.5]), 1, 0, 1).tolist() == [0, 2, 2, 0, -2]
