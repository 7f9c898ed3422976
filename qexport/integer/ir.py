"""The integer graph (README "Integer inference"): the network as integer operations on uint8
affine tensors, lowered from graph + plan + calibration (qexport.integer.lower) and run exactly by
qexport.integer.run.

Arithmetic contract (default profile), every op on integer arrays only:

* A tensor between nodes is uint8 codes q with a real value S * (q - Z) (scale S > 0, zero
  point Z in 0..255).  The network's input is the raw pixel p (0..255): with the model's
  normalisation (p / 255 - mean) / std, S = 1 / (255 std) and Z = round(255 mean).  Where the
  stds differ across channels they are folded into the convs reading the input
  (their float weights times 1 / std_c per input channel before quantizing), so S = 1 / 255; where
  the means differ, Z is one zero point per channel Z_c = round(255 mean_c) (padding holds Z_c).
* rshift(v, s) = (v + 2^(s-1)) >> s on int64 (arithmetic shift: rounds half up, toward +inf);
  rshift(v, 0) = v.
* conv / linear: acc = sum (x - Z_x)(w - Z_w) + b_q over the receptive field (padding holds Z_x,
  so it contributes 0), b_q = round(b / (S_x S_w)) (int32), then
  y = clamp(Z_y + rshift(acc * m, s), lo, hi) with m / 2^s ~ S_x S_w / S_y (per output channel
  where the weights have per-channel scales); a ReLU or ReLU6 after it is the clamp: lo = Z_y,
  hi = min(255, Z_y + round(6 / S_y)) for ReLU6.
* relu / relu6 alone: the same clamp on the input's codes (scale and zero point kept).
* max pool: on codes (padding never wins).  Average pool over k positions (a 2x2 window, or the
  whole plane for a global average): (sum + k // 2) // k on codes, scale and zero point kept
  (count_include_pad: padding holds Z_x).
* add: y = clamp(Z_y + rshift((a - Z_a) m_a, s_a) + rshift((b - Z_b) m_b, s_b), 0, 255) with
  m_a / 2^s_a ~ S_a / S_y, likewise for b.
* prelu / leaky relu: y = clamp(Z_y + rshift(v m_pos, s_pos), 0, 255) for v = q - Z_x >= 0, else
  with the per-channel (m_neg, s_neg) of the slope (m_neg negative for a negative slope).
* cat (channels): every input requantized, clamp(Z_y + rshift((q - Z_i) m_i, s_i), 0, 255).
* BN + sign: code 2 (+1) where (flip ? v <= tau : v >= tau), else 0 (-1), on a layer's accumulator
  or a tensor's codes (qexport.integer.weighted); sign tensors have codes 0, 1, 2 (S = 1, Z = 1).
* sigmoid / tanh: a 256-entry table from input code to output code,
  table[q] = clamp(Z_y + round(f(S_x (q - Z_x)) / S_y), 0, 255).
* flatten / reshape / channel shuffle: index maps on codes.
* A softmax or log-softmax at the end is left out: the output is the logits' codes (argmax is
  unchanged, S > 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class QTensor:
    """uint8 affine codes: real value = scale * (q - zero_point)."""

    scale: float
    zero_point: int | tuple[int, ...]  # a tuple: one per channel (axis 1), the network's input only

    def real(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, np.float64)
        z = np.asarray(self.zero_point, np.float64)
        return self.scale * (q - (z.reshape((1, -1) + (1,) * (q.ndim - 2)) if z.ndim else z))


def _frozen(d=None):
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class IntNode:
    """One integer operation.  `arrays` hold its integer parameters (w_minus_z, b_q, m, s, table);
    `attrs` its plain values (stride, padding, groups, lo, hi, zero points)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    output_shape: tuple[int, ...]
    out: QTensor
    attrs: Mapping[str, Any] = field(default_factory=_frozen)
    arrays: Mapping[str, np.ndarray] = field(default_factory=_frozen)
    source: tuple[str, ...] = ()  # the float graph's nodes this one computes (a fused ReLU...)


@dataclass(frozen=True)
class IntGraph:
    nodes: tuple[IntNode, ...]
    input_shape: tuple[int, ...]
    input: QTensor
    output: str
    notes: tuple[str, ...] = ()

    def node(self, name: str) -> IntNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def accumulator_bound(w_minus_z: np.ndarray) -> int:
    """The worst case of |sum (x - Z_x)(w - Z_w)| of a conv/linear over every input: |x - Z_x| <= 255
    (codes and zero points are 0..255), times max |w - Z_w|, times the weights per output."""
    w = np.asarray(w_minus_z, np.int64)
    return 255 * int(np.abs(w).max(initial=0)) * int(np.prod(w.shape[1:]))
