"""TFLM's int8 LOGISTIC and TANH: gemmlowp's fixed-point logistic / tanh (fixedpoint.h) as the
reference kernels call them (reference_integer_ops/logistic.h, tanh.h), transcribed on int64
numpy arrays of raw int32 values.  A product of FixedPoint<a> and FixedPoint<b> is
SaturatingRoundingDoublingHighMul of the raws (a FixedPoint<a + b>); + and - are raw int32 sums.

    table = logistic_table(input_scale, input_zero_point)   # output code for each int8 input code

Output tensors are fixed by TFLite: LOGISTIC scale 1/256, zero point -128; TANH 1/128, 0.
"""

from __future__ import annotations

import math

import numpy as np

from .arith import INT8_MAX, INT8_MIN, INT32_MAX, INT32_MIN, requantize, round_away, rounding_divide_by_pot
from .arith import saturating_rounding_doubling_high_mul as mul

INPUT_INTEGER_BITS = 4
LOGISTIC_OUT = (1.0 / 256, -128)
TANH_OUT = (1.0 / 128, 0)


def _shift_pot(x, exponent: int):
    """SaturatingRoundingMultiplyByPOT<exponent> (Rescale between integer-bit counts)."""
    if exponent > 0:
        return np.clip(x, INT32_MIN >> exponent, INT32_MAX >> exponent) << exponent
    return rounding_divide_by_pot(x, -exponent) if exponent < 0 else x


def _exp_quarter_interval(a):
    """exp_on_interval_between_negative_one_quarter_and_0_excl (FixedPoint<0>)."""
    x = a + (1 << 28)
    x2 = mul(x, x)
    x3 = mul(x2, x)
    x4 = mul(x2, x2)
    poly = _shift_pot(mul(_shift_pot(x4, -2) + x3, 715827883) + x2, -1)
    return 1895147668 + mul(1895147668, x + poly)


BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def _exp_on_negative_values(a, integer_bits: int):
    """exp_on_negative_values of a FixedPoint<integer_bits> (raw a <= 0) -> FixedPoint<0>."""
    fractional = 31 - integer_bits
    quarter = 1 << (fractional - 2)
    a_mod = (a & (quarter - 1)) - quarter
    result = _exp_quarter_interval(_shift_pot(a_mod, integer_bits))
    remainder = a_mod - a
    for exponent, multiplier in BARREL:
        if integer_bits > exponent:
            bit = (remainder & (1 << (fractional + exponent))) != 0
            result = np.where(bit, mul(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _half_denominator_reciprocal(a):
    """Newton-Raphson for 1 / (1 + a) (FixedPoint<2>), a in [0, 1) as FixedPoint<0>."""
    total = a + INT32_MAX
    half = np.where(total >= 0, (total + 1) // 2, -((-total + 1) // 2))  # RoundingHalfSum: C's / truncates
    x = 1515870810 + mul(half, -1010580540)
    for _ in range(3):
        x = x + _shift_pot(mul(x, (1 << 29) - mul(half, x)), 2)
    return x


def _logistic(a):
    """gemmlowp::logistic of a FixedPoint<4> -> FixedPoint<0>."""
    positive = _shift_pot(_half_denominator_reciprocal(_exp_on_negative_values(-np.abs(a), 4)), 1)
    return np.where(a == 0, 1 << 30, np.where(a > 0, positive, INT32_MAX - positive))


def _tanh(a):
    """gemmlowp::tanh of a FixedPoint<4> -> FixedPoint<0> (exp of 2a: ExactMulByPot<1> makes it a FixedPoint<5>)."""
    t = _shift_pot(_half_denominator_reciprocal(_exp_on_negative_values(-np.abs(a), 5)) - (1 << 29), 2)
    return np.where(a == 0, 0, np.where(a < 0, -t, t))


def _input_in_q4(scale: float, zero_point: int):
    """(codes - Z in -255..255, q4 values, in-range mask): the kernels' Prepare (frexp, round) and
    CalculateInputRadius; outside the radius the output saturates."""
    q, shift = math.frexp(float(scale) * float(1 << (31 - INPUT_INTEGER_BITS)))
    multiplier = int(round_away(q * float(1 << 31)))
    multiplier = multiplier - (1 << 32) if multiplier >= 1 << 31 else multiplier  # static_cast<int32_t>
    radius = math.floor(((1 << INPUT_INTEGER_BITS) - 1) * float(1 << (31 - INPUT_INTEGER_BITS)) / float(1 << shift)) \
        if shift >= 0 else math.floor(((1 << INPUT_INTEGER_BITS) - 1) * float(1 << (31 - INPUT_INTEGER_BITS)) * float(1 << -shift))  # fmt: skip
    v = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.int64) - zero_point
    inside = (v > -radius) & (v < radius)
    return v, requantize(np.where(inside, v, 0), multiplier, shift), inside


def logistic_table(scale: float, zero_point: int) -> np.ndarray:
    """The int8 LOGISTIC output for every input code -128..127 (index code + 128)."""
    v, q4, inside = _input_in_q4(scale, zero_point)
    out = np.clip(rounding_divide_by_pot(_logistic(q4), 31 - 8) + LOGISTIC_OUT[1], INT8_MIN, INT8_MAX)
    return np.where(inside, out, np.where(v > 0, INT8_MAX, INT8_MIN)).astype(np.int8)


def tanh_table(scale: float, zero_point: int) -> np.ndarray:
    """The int8 TANH output for every input code -128..127 (index code + 128)."""
    v, q4, inside = _input_in_q4(scale, zero_point)
    out = np.clip(rounding_divide_by_pot(_tanh(q4), 31 - 7), INT8_MIN, INT8_MAX)
    return np.where(inside, out, np.where(v > 0, INT8_MAX, INT8_MIN)).astype(np.int8)
