"""TFLite's int8 integer arithmetic, transcribed from TFLite Micro's reference kernels
(tensorflow/lite/kernels/internal/quantization_util.cc, common.h) in vectorised int64 numpy.

    m, shift = quantize_multiplier(real)         # QuantizeMultiplier: Q31 significand + exponent
    y = requantize(acc, m, shift)                # MultiplyByQuantizedMultiplier (the one rule)

Everything a kernel derives at Prepare time starts from the float32 scales stored in the model
(a TfLiteTensor's params.scale is a float), so callers pass float32-rounded scales.
"""

from __future__ import annotations

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def round_away(x) -> np.ndarray:
    """TfLiteRound (std::round): halves away from zero."""
    x = np.asarray(x, np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """QuantizeMultiplier(double): real = m * 2^(shift - 31), m in [2^30, 2^31); 0 -> (0, 0); a
    shift below -31 flushes to (0, 0) as TFLite does."""
    real = np.asarray(real, np.float64)
    q, shift = np.frexp(real)
    fixed = round_away(q * float(1 << 31)).astype(np.int64)
    top = fixed == (1 << 31)
    fixed = np.where(top, fixed // 2, fixed)
    shift = np.where(top, shift + 1, shift).astype(np.int64)
    tiny = (shift < -31) | (real == 0)
    return np.where(tiny, 0, fixed), np.where(tiny, 0, shift)


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 values held in int64."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b  # |a b| <= 2^62: exact in int64
    t = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(t >= 0, t >> 31, -((-t) >> 31))  # C's / truncates toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    x, exponent = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def requantize(x, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier(x, m, shift) (double rounding, TFLM's default build): the one
    requantization rule of the tflite profile (conv, depthwise, fully connected, add, quantize)."""
    x, shift = np.asarray(x, np.int64), np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x << left, multiplier), np.maximum(-shift, 0))


def quantize_real(value: float, scale: float, zero_point: int) -> int:
    """zero_point + TfLiteRound(f / scale) in float32, as CalculateActivationRangeQuantized does."""
    return int(zero_point + round_away(np.float32(value) / np.float32(scale)))


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """(min, max) int8 codes of a fused NONE / RELU / RELU6."""
    if activation == "NONE":
        return INT8_MIN, INT8_MAX
    lo = max(INT8_MIN, quantize_real(0.0, scale, zero_point))
    hi = INT8_MAX if activation == "RELU" else min(INT8_MAX, quantize_real(6.0, scale, zero_point))
    return lo, hi


def f32(x) -> float:
    """A scale as the model stores it (float32), back as a Python float."""
    return float(np.float32(x))
