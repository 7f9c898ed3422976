"""Integer approximation of a float scale, README "Numerics": integer scale (seed 002: "0.0015 ~ 3 >> 11").

For every positive finite S (any array shape) find integers (m, s) with

    S ~= m / 2**s,   1 <= m <= 2**M - 1,   0 <= s <= max_shift          (M = mult_bits)

minimising the relative error |m / 2**s - S| / S.  For a given s the best m is the integer nearest
to S * 2**s, clamped to [1, 2**M - 1], with an exact .5 tie going to the smaller m; across shifts
the smallest error wins and equal errors go to the smaller s.  The comparison is exact: S * 2**s
is exact in float64, |m - S * 2**s| is exact wherever m is the rounded value, a multiplier clamped
at 2**M - 1 can only win at s = 0 (for s > 0 the pair with s - 1 is at least as good), and one
clamped at 1 (S * 2**s < 0.5) is more than twice as far off as any better candidate.  rel_err is
that exact error divided by S, rounded once (inf if it exceeds the float64 range, S ~ 1e-308).

S == 0 exactly (e.g. a ternary channel with no kept weights, alpha = 0) gives m = 0, s = 0,
rel_err = 0: the one case where m = 0.  Negative, NaN or infinite S raise ValueError.
"""

from __future__ import annotations

import numpy as np


def integer_scale(S, mult_bits: int = 16, max_shift: int = 31):
    """(m int32, s int32, rel_err float64), each shaped like S.  See the module docstring."""
    for name, value, lo, hi in (("mult_bits", mult_bits, 1, 31), ("max_shift", max_shift, 0, 62)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    S = np.asarray(S, dtype=np.float64)
    if not (np.isfinite(S).all() and (S >= 0).all()):
        raise ValueError("scales must be finite and >= 0")
    top = float((1 << mult_bits) - 1)
    shifts = np.arange(max_shift + 1)
    pow2 = np.ldexp(1.0, shifts)  # 2**s, exact

    # x = S * 2**s for every shift: exact in float64 (inf only for absurd S, excluded below)
    with np.errstate(over="ignore", invalid="ignore"):
        x = S[..., None] * pow2
        fl = np.floor(x)
        nearest = fl + (x - fl > 0.5)  # nearest integer, .5 ties to the smaller
    m = np.clip(np.nan_to_num(nearest, nan=top, posinf=top), 1.0, top)
    err = np.abs(m - x) / pow2  # absolute error of m / 2**s; exact for every candidate kept below
    # m clamped at 2**M - 1 for s > 0 is never better than s - 1 (and ties go to the smaller s
    # anyway); dropping those candidates keeps every compared error exact.
    err = np.where((nearest > top) & (shifts > 0), np.inf, err)
    best = np.argmin(err, axis=-1)[..., None]  # first minimum: the smaller s on ties

    m_best = np.take_along_axis(m, best, axis=-1)[..., 0]
    s_best = best[..., 0]
    zero = S == 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rel = np.take_along_axis(err, best, axis=-1)[..., 0] / S
    return (
        np.where(zero, 0, m_best).astype(np.int32),
        np.where(zero, 0, s_best).astype(np.int32),
        np.where(zero, 0.0, rel).astype(np.float64),
    )
