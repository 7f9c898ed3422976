"""qexport.quantize.affine against independent references: a scalar per-channel transcription of
the "round" formula, and a torch transcription of seed 002's `quantize_tensor` for "truncate"
(tests/references.py, shared with tests/test_pipeline.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qexport.quantize.affine import affine_params, affine_quantize, quantize_with
from qexport.quantize.dequantize import dequantize
from references import seed002_quantize_tensor  # seed 002's torch code, shared with test_pipeline.py

F32_MAX = float(np.finfo(np.float32).max)
TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32
SPECIAL = [0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, TINY, 3e38, -3e38, F32_MAX, -F32_MAX, 1.0, -1.0, 0.5, 1e-3]
ELEMENTS = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.floats(-2.0, 2.0, width=32),
    st.sampled_from(SPECIAL),
)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)


@st.composite
def tensors(draw):
    """float32 tensors of 1..4 dims: arbitrary values, specials, or constant tensors/channels."""
    shape = draw(SHAPES)
    kind = draw(st.sampled_from(["any", "any", "constant", "constant_rows", "small"]))
    if kind == "constant":
        return np.full(shape, draw(ELEMENTS), dtype=np.float32)
    if kind == "constant_rows":
        vals = draw(hnp.arrays(np.float32, (shape[0],), elements=ELEMENTS))
        return np.broadcast_to(vals.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()
    if kind == "small":
        return draw(hnp.arrays(np.float32, shape, elements=st.floats(-2.0**-126, 2.0**-126, width=32)))
    return draw(hnp.arrays(np.float32, shape, elements=ELEMENTS))


# ---------------------------------------------------------------- references


def ref_round_channel(values: np.ndarray, bits: int):
    """README "Numerics" round mode for one channel, scalar Python arithmetic (floats are float64)."""
    qmax = 2**bits - 1
    vals = [float(v) for v in values.reshape(-1)]
    wmin, wmax = min(vals), max(vals)
    if wmin == wmax:  # exact constant rule
        c = wmin
        scale, zp = (1.0, 0) if c == 0 else (abs(c), 1 if c < 0 else 0)
        return np.float32(scale), zp, [min(max(round(v / float(np.float32(scale))) + zp, 0), qmax) for v in vals]
    lo, hi = min(wmin, 0.0), max(wmax, 0.0)
    scale = float(np.float32((hi - lo) / qmax))
    if scale < TINY:
        scale = TINY
    zp = min(max(round(-lo / scale), 0), qmax)
    return np.float32(scale), zp, [min(max(round(v / scale) + zp, 0), qmax) for v in vals]


def rows_of(w, per_channel):
    return [w[c] for c in range(w.shape[0])] if per_channel else [w]


# ---------------------------------------------------------------- round mode


@settings(max_examples=300, deadline=None)
@given(tensors(), st.sampled_from([2, 3, 4, 8, 12, 16]), st.booleans())
def test_round_mode_matches_scalar_reference(w, bits, per_channel):
    res = affine_quantize(w, bits, per_channel)
    scales, zps, codes = [], [], []
    for row in rows_of(w, per_channel):
        s, z, q = ref_round_channel(row, bits)
        scales.append(s), zps.append(z), codes.append(np.array(q).reshape(row.shape))
    expect_codes = np.stack(codes) if per_channel else codes[0]
    assert np.array_equal(res.codes, expect_codes)
    assert np.array_equal(np.atleast_1d(res.scale), np.array(scales, dtype=np.float32))
    assert np.array_equal(np.atleast_1d(res.zero_point), np.array(zps))
    s2, z2 = affine_params(w, bits, per_channel)
    assert np.array_equal(s2, res.scale) and np.array_equal(z2, res.zero_point)
    assert np.array_equal(quantize_with(w, res.scale, res.zero_point, bits), res.codes)


@settings(max_examples=300, deadline=None)
@given(tensors(), st.sampled_from([2, 4, 7, 8, 9, 16]), st.booleans())
def test_round_mode_properties(w, bits, per_channel):
    qmax = 2**bits - 1
    res = affine_quantize(w, bits, per_channel)
    shape_p = (w.shape[0],) if per_channel else ()
    assert res.codes.dtype == (np.uint8 if bits <= 8 else np.uint16) and res.codes.shape == w.shape
    assert res.scale.dtype == np.float32 and res.scale.shape == shape_p
    assert res.zero_point.dtype == np.int32 and res.zero_point.shape == shape_p
    assert np.isfinite(res.scale).all() and (res.scale > 0).all()
    assert ((res.zero_point >= 0) & (res.zero_point <= qmax)).all()
    assert int(res.codes.max()) <= qmax
    deq = dequantize(res.codes, res.scale, res.zero_point)
    assert deq.dtype == np.float32 and np.isfinite(deq).all()
    # Error bound: every value lies inside [min(w_min, 0), max(w_max, 0)], so |deq - w| <= scale/2
    # plus slack for float32 rounding: the float32 scale (relative 2**-24, times up to qmax steps at
    # the range ends) and the float32 dequantized value (relative 2**-24 of at most qmax steps):
    # slack = 2 * qmax * 2**-24 steps, plus 2**-149 absolute for subnormal results.
    s = res.scale.astype(np.float64)
    s = s.reshape(s.shape + (1,) * (w.ndim - 1)) if per_channel else s
    err = np.abs(deq.astype(np.float64) - w.astype(np.float64))
    assert (err <= s * (0.5 + 2 * qmax * 2.0**-24) + 2.0**-149).all()
    # constant tensors/channels are exact
    for c, row in enumerate(rows_of(w, per_channel)):
        if row.min() == row.max():
            assert np.array_equal(rows_of(deq, per_channel)[c], row)
    # saturation: an unclamped code can only leave 0..qmax by one step (rounding at the ends)
    assert 0 <= res.saturated <= w.size


@settings(max_examples=200, deadline=None)
@given(tensors(), st.sampled_from([2, 5, 8, 10, 16]), st.booleans(), st.sampled_from(["round", "truncate"]))
def test_dequantize_then_quantize_is_a_fixed_point(w, bits, per_channel, mode):
    res = affine_quantize(w, bits, per_channel, mode)
    qmax = 2**bits - 1
    for codes in (res.codes, _all_codes(w.shape, per_channel, qmax, bits)):
        deq = dequantize(codes, res.scale, res.zero_point)
        s = np.asarray(res.scale, np.float64)
        z = np.asarray(res.zero_point, np.int64)
        if per_channel:
            s, z = s.reshape((-1,) + (1,) * (codes.ndim - 1)), z.reshape((-1,) + (1,) * (codes.ndim - 1))
        # codes whose exact value s*(q - zp) lies beyond float32 saturate to +-max: excluded
        inside = np.abs(s * (codes.astype(np.int64) - z)) <= F32_MAX
        again = quantize_with(deq, res.scale, res.zero_point, bits)
        assert np.array_equal(again[inside], codes[inside])


def _all_codes(shape, per_channel, qmax, bits):
    """Codes spread evenly over 0..qmax (both ends included), so codes the data never reached are
    tried too."""
    n = int(np.prod(shape))
    q = np.rint(np.linspace(0, qmax, n)) if n > 1 else np.array([qmax])
    return q.reshape(shape).astype(np.uint8 if bits <= 8 else np.uint16)


def test_constant_tensors_are_exact():
    for c in [0.0, -0.0, 1.5, -2.25, 1e-45, -1e-40, 3e38, -F32_MAX, 0.1]:
        w = np.full((3, 2, 2), c, np.float32)
        for mode in ("round", "truncate"):
            for pc in (False, True):
                res = affine_quantize(w, 8, pc, mode)
                expect_scale = 1.0 if c == 0 else abs(np.float32(c))
                assert (res.scale == np.float32(expect_scale)).all()
                assert (res.zero_point == (1 if c < 0 else 0)).all()
                assert (res.codes == (1 if c > 0 else 0)).all()
                deq = dequantize(res.codes, res.scale, res.zero_point)
                assert np.array_equal(deq.view(np.uint32), np.full_like(w, c).view(np.uint32)) or c == 0
                assert (deq == w).all() and res.saturated == 0


def test_known_values():
    # w in [-1, 3], 8 bits: scale = 4/255, zero_point = round(63.75) = 64
    w = np.array([[-1.0, 0.0, 3.0, 1.0]], np.float32)
    res = affine_quantize(w, 8)
    assert res.scale == np.float32(4 / 255) and res.zero_point == 64
    s = float(np.float32(4 / 255))
    assert res.codes.tolist() == [[round(-1 / s) + 64, 64, min(round(3 / s) + 64, 255), round(1 / s) + 64]]
    # all positive: zero is included in the range, so zero_point = 0
    res = affine_quantize(np.array([1.0, 2.0], np.float32), 4)
    # float32(2/15) = 0.13333334..., so 1/scale = 7.4999996 rounds to 7
    assert res.zero_point == 0 and res.scale == np.float32(2 / 15) and res.codes.tolist() == [7, 15]


def test_extremes_and_denormals():
    cases = [
        np.array([-3e38, 3e38, 0.0, 1.0], np.float32),
        np.array([-F32_MAX, F32_MAX], np.float32),
        np.array([1e-45, 0.0, -1e-45], np.float32),
        np.array([1e-40, 2e-40], np.float32),
        np.array([[1e-45], [3e38], [-F32_MAX]], np.float32),
    ]
    for w in cases:
        for bits in (2, 8, 16):
            for pc in (False, True):
                for mode in ("round", "truncate"):
                    res = affine_quantize(w, bits, pc, mode)
                    assert np.isfinite(res.scale).all() and (res.scale > 0).all()
                    deq = dequantize(res.codes, res.scale, res.zero_point)
                    assert np.isfinite(deq).all()
                    if mode == "round":
                        s = np.max(res.scale.astype(np.float64))
                        assert np.max(np.abs(deq.astype(np.float64) - w)) <= s * (0.5 + 2**bits * 2.0**-23) + 2.0**-149
    # tiny range: the scale is floored at the smallest normal float32
    s, z = affine_params(np.array([1e-45, 0.0], np.float32))
    assert s == np.float32(TINY) and z == 0
    # range beyond float32 (computed in float64): finite scale
    s, z = affine_params(np.array([-3e38, 3e38], np.float32), bits=2)
    assert s == np.float32(6e38 / 3) and z == 2  # round(1.5) = 2 (half even)


def test_dequantize_saturates_instead_of_inf():
    deq = dequantize(np.array([0, 3], np.uint8), np.float32(2e38), np.int32(2))
    assert deq.tolist() == [-F32_MAX, np.float32(2e38)]


def test_per_channel_equals_per_tensor_on_each_channel():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 3, 3, 3)) * rng.uniform(0.01, 10, (8, 1, 1, 1))).astype(np.float32)
    w[2] = 0.0
    w[5] = 0.25
    for mode in ("round", "truncate"):
        res = affine_quantize(w, 8, True, mode)
        for c in range(8):
            one = affine_quantize(w[c], 8, False, mode)
            assert np.array_equal(res.codes[c], one.codes)
            assert res.scale[c] == one.scale and res.zero_point[c] == one.zero_point


def test_float64_input_and_validation():
    w64 = np.array([0.1, -0.2, 0.3])
    assert np.array_equal(affine_quantize(w64).codes, affine_quantize(w64.astype(np.float32)).codes)
    for bad_bits in (1, 17, 8.0, True):
        with pytest.raises(ValueError):
            affine_quantize(w64, bad_bits)
    with pytest.raises(ValueError):
        affine_quantize(np.array([1.0, np.nan]))
    with pytest.raises(ValueError):
        affine_quantize(np.array([1.0, np.inf]))
    with pytest.raises(ValueError):
        affine_quantize(w64, 8, zero_point="floor")
    with pytest.raises(ValueError):
        affine_quantize(np.zeros((0, 3), np.float32))
    with pytest.raises(TypeError):
        affine_quantize(np.array([1, 2]))
    with pytest.raises(ValueError):
        quantize_with(w64, np.float32(0), 0, 8)


# ---------------------------------------------------------------- truncate mode = seed 002


def _torch_reference(rows, bits):
    out = []
    for row in rows:
        q, scale, zp = seed002_quantize_tensor(torch.from_numpy(np.ascontiguousarray(row)), bits)
        out.append((q.numpy(), scale, zp))
    return out


@settings(max_examples=300, deadline=None)
@given(tensors(), st.sampled_from([2, 4, 8, 12, 16]), st.booleans())
def test_truncate_mode_reproduces_seed002(w, bits, per_channel):
    res = affine_quantize(w, bits, per_channel, "truncate")
    scales = np.atleast_1d(res.scale)
    zps = np.atleast_1d(res.zero_point)
    codes = res.codes if per_channel else res.codes[None]
    rows = rows_of(w, per_channel)
    with np.errstate(all="ignore"):
        for c, row in enumerate(rows):
            wmin, wmax = np.float32(row.min()), np.float32(row.max())
            torch_scale = (torch.tensor(wmax) - torch.tensor(wmin)) / (2.0**bits - 1.0)
            if wmin == wmax:  # the original divides by zero here: qexport's exact-constant rule
                assert zps[c] == (1 if wmin < 0 else 0)
                assert (codes[c] == (1 if wmin > 0 else 0)).all()
            elif not (math.isfinite(float(torch_scale)) and float(torch_scale) > 0):
                # documented fallback: scale as in round mode (float64), rest of the formula kept
                fb = np.float32((float(wmax) - float(wmin)) / (2**bits - 1))
                assert scales[c] == max(fb, np.float32(TINY))
            else:
                ((q, scale, zp),) = _torch_reference([row], bits)
                assert np.array_equal(codes[c], q.astype(codes.dtype)), (row, q, codes[c])
                assert scales[c] == scale.numpy() and zps[c] == zp
                # error <= 1 step where the range straddles 0 and the scale is normal
                if wmin <= 0 <= wmax and scales[c] >= TINY:
                    qmax = 2**bits - 1
                    deq = dequantize(codes[c], scales[c], zps[c]).astype(np.float64)
                    assert (np.abs(deq - row) <= float(scales[c]) * (1 + 8 * qmax * 2.0**-24)).all()


def test_truncate_mode_on_lenet_shaped_weights():
    gen = torch.Generator().manual_seed(2)
    shapes = [(6, 1, 5, 5), (16, 6, 5, 5), (120, 16, 5, 5), (84, 120), (10, 84)]
    for shape in shapes:
        w = (torch.randn(shape, generator=gen) * 0.1).numpy()
        for bits in (8, 4):
            q, scale, zp = seed002_quantize_tensor(torch.from_numpy(w), bits)
            res = affine_quantize(w, bits, False, "truncate")
            assert np.array_equal(res.codes, q.numpy().astype(res.codes.dtype))
            assert res.scale == scale.numpy() and res.zero_point == zp
            round_res = affine_quantize(w, bits)  # the default mode differs at most by one zero-point step
            assert abs(int(round_res.zero_point) - zp) <= 1
