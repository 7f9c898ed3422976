"""qexport.quantize.intscale.integer_scale against exhaustive brute force in exact integer
arithmetic (every m in [1, 2**M) for every shift s)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qexport.quantize.intscale import integer_scale

POSITIVE = st.one_of(
    st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.floats(min_value=5e-324, max_value=1e300, allow_nan=False, allow_infinity=False),
    st.floats(min_value=2.0**-40, max_value=2.0**20, width=32),
    st.builds(lambda k, e: k * 2.0**e, st.integers(1, 600), st.integers(-45, 5)),  # dyadic: exact ties
    st.builds(lambda k, e: (k + 0.5) * 2.0**e, st.integers(1, 300), st.integers(-40, 0)),  # .5 ties in m
)


def brute_force(S: float, M: int, max_shift: int = 31):
    """Lexicographic minimum of (|m/2^s - S|, s, m) over all s in 0..max_shift, m in [1, 2^M),
    compared exactly: with S = P/Q (Q a power of two), |m/2^s - S| * Q * 2^max_shift is an integer."""
    P, Q = S.as_integer_ratio()
    best = None
    for s in range(max_shift + 1):
        scale = Q << (max_shift - s)
        target = P << max_shift
        for m in range(1, 2**M):
            key = (abs(m * scale - target), s, m)
            if best is None or key < best:
                best = key
    _, s, m = best
    return m, s


def exact_rel_err(S: float, m: int, s: int) -> Fraction:
    return abs(Fraction(m, 2**s) - Fraction(S)) / Fraction(S)


@settings(max_examples=120, deadline=None)
@given(POSITIVE, st.integers(1, 7))
def test_matches_brute_force(S, M):
    m, s, err = integer_scale(S, mult_bits=M)
    assert (int(m), int(s)) == brute_force(S, M)
    exact = exact_rel_err(S, int(m), int(s))
    if np.isfinite(err):
        assert abs(Fraction(float(err)) - exact) <= exact * Fraction(1, 2**52)
    else:  # only when the relative error itself exceeds the float64 range (S ~ 1e-308 and below)
        assert exact > Fraction(np.finfo(np.float64).max)


MODERATE = st.one_of(  # huge S would make every clamped pair a near-tie; M <= 7 above covers those
    st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.builds(lambda k, e: k * 2.0**e, st.integers(1, 600), st.integers(-45, 5)),
    st.builds(lambda k, e: (k + 0.5) * 2.0**e, st.integers(1, 300), st.integers(-40, 0)),
)


@settings(max_examples=40, deadline=None)
@given(MODERATE, st.sampled_from([8, 16]), st.sampled_from([31, 20, 5, 0]))
def test_matches_brute_force_large_m(S, M, max_shift):
    """Every (m, s) with m < 2^M evaluated in float64 on a grid; the near-optimal candidates
    (within 1e-9 relative of the grid minimum) are then ranked exactly."""
    m, s, _ = integer_scale(np.array([S]), mult_bits=M, max_shift=max_shift)
    ms = np.arange(1, 2**M, dtype=np.float64)
    shifts = np.arange(max_shift + 1)
    err = np.abs(ms[None, :] / np.ldexp(1.0, shifts)[:, None] - S)
    cand = np.argwhere(err <= err.min() * (1 + 1e-9))
    assert len(cand) < 10_000
    ranked = min((abs(Fraction(int(ms[j]), 2 ** int(i)) - Fraction(S)), int(i), int(ms[j])) for i, j in cand)
    assert (int(m[0]), int(s[0])) == (ranked[2], ranked[1])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 24), st.integers(0, 31), st.floats(0.0, 1.0))
def test_error_bound(M, max_shift, u):
    """Verified condition: for 2^(M-1-max_shift) <= S <= 2^M - 1 there is a shift putting S * 2^s in
    [2^(M-1), 2^M), so rel_err <= 1 / (2^M - 0.5) <= 2^-(M-1)."""
    lo, hi = 2.0 ** (M - 1 - max_shift), 2.0**M - 1
    if lo > hi:
        lo = hi
    S = lo * (hi / lo) ** u
    S = min(max(S, lo), hi)
    m, s, err = integer_scale(S, mult_bits=M, max_shift=max_shift)
    assert 1 <= int(m) < 2**M and 0 <= int(s) <= max_shift
    assert float(err) <= 1 / (2**M - 0.5) <= 2.0 ** -(M - 1)
    assert float(exact_rel_err(S, int(m), int(s))) <= 1 / (2**M - 0.5) * (1 + 1e-12)


def test_seed002_example():
    # brute force (above) confirms 0.0015 ~ 3 >> 11 is the best pair with 2-bit multipliers
    assert brute_force(0.0015, 2) == (3, 11)
    m, s, err = integer_scale(0.0015, mult_bits=2)
    assert (int(m), int(s)) == (3, 11)
    assert float(err) == pytest.approx(float(exact_rel_err(0.0015, 3, 11)), rel=1e-15)  # 2.34 %
    # with the default 16-bit multipliers the pair is far better
    m, s, err = integer_scale(0.0015)
    assert float(err) < 2.0**-16 and (int(m), int(s)) == brute_force_around(0.0015, 16)


def brute_force_around(S, M):
    """Best pair among the nearest integers to S * 2^s (clamped) for each s, ranked exactly."""
    cands = []
    for s in range(32):
        x = Fraction(S) * 2**s
        for m in {int(x), int(x) + 1}:
            m = min(max(m, 1), 2**M - 1)
            cands.append((abs(Fraction(m, 2**s) - Fraction(S)), s, m))
    _, s, m = min(cands)
    return m, s


def test_ties_and_special_values():
    m, s, err = integer_scale(np.array([[0.0, 0.25], [1.0, 3.0]]), mult_bits=4)
    assert m.dtype == np.int32 and s.dtype == np.int32 and err.dtype == np.float64 and m.shape == (2, 2)
    # S == 0: the one case m = 0; exact dyadic values: the smallest shift among equal (zero) errors
    assert m.tolist() == [[0, 1], [1, 3]] and s.tolist() == [[0, 2], [0, 0]] and err.tolist() == [[0, 0], [0, 0]]
    # .5 tie within one shift goes to the smaller m: 1.5 with M = 1 -> m = 1 (err 1/3) vs m = 2 invalid;
    # 2.5 with M = 2 at s = 0: m = 2 or 3 both off by 0.5 -> 2
    assert integer_scale(2.5, mult_bits=2)[0] == 2 and integer_scale(2.5, mult_bits=2)[1] == 0
    # large and tiny values clamp m
    m, s, err = integer_scale(1e9, mult_bits=8)
    assert (int(m), int(s)) == (255, 0)
    m, s, err = integer_scale(1e-30, mult_bits=8)
    assert (int(m), int(s)) == (1, 31) and float(err) > 1
    for bad in (-1.0, np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError):
            integer_scale(np.array([0.5, bad]))
    for kwargs in ({"mult_bits": 0}, {"mult_bits": 32}, {"max_shift": -1}, {"max_shift": 63}, {"mult_bits": 8.0}):
        with pytest.raises(ValueError):
            integer_scale(0.5, **kwargs)


def test_float32_scales_vectorised():
    rng = np.random.default_rng(3)
    S = rng.uniform(1e-5, 1e-1, (7, 5)).astype(np.float32)
    m, s, err = integer_scale(S, mult_bits=6)
    for idx in np.ndindex(S.shape):
        assert (int(m[idx]), int(s[idx])) == brute_force(float(S[idx]), 6)
        exact = exact_rel_err(float(S[idx]), int(m[idx]), int(s[idx]))
        assert float(err[idx]) == pytest.approx(float(exact), rel=1e-15)
