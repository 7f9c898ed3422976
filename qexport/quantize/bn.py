"""BatchNorm folding and BNN thresholds, README "Numerics": BN.

BN(z) = (z - mean) / sigma * gamma + beta with sigma = sqrt(var + eps) (the module's own eps);
gamma/beta None (BN with affine=False) mean 1/0.  All arithmetic is float64.

Folding (affine plans):   W' = W * gamma / sigma  (per output channel, axis 0)
                          b' = (b - mean) * gamma / sigma + beta        (b None -> 0)

Thresholds (binary plans, BN followed by sign, sign(0) = +1): for the integer accumulator y of
a binary layer (popcount domain, before the layer's float bias b is added),
sign(BN(y + b)) = +1  <=>  BN(y + b) >= 0  <=>
    y >= tau_c   (flip 0, gamma_c > 0),   tau_c = ceil(t_c)
    y <= tau_c   (flip 1, gamma_c < 0),   tau_c = floor(t_c)
with t_c = mean_c - b_c - beta_c * sigma_c / gamma_c.  tau is then corrected by +-1 where float
rounding at an exact tie would disagree with the float64 evaluation `bn_eval` (the reference the
tests and golden vectors use), so the integer rule and bn_eval(y) >= 0 agree for every integer y.
gamma_c == 0 makes the output constant: beta_c >= 0 -> tau = INT32_MIN (always +1), beta_c < 0
-> tau = INT32_MAX (never +1 for any accumulator short of INT32_MAX itself, i.e. for any the
hardware can produce); flip 0 in both cases.  tau is clamped into int32, which is exact for every
accumulator with |y| < 2**31 - 1.
"""

from __future__ import annotations

import numpy as np

from ..errors import PlanError

_I32 = np.iinfo(np.int32)


def _vec(x, like: np.ndarray, default: float) -> np.ndarray:
    return np.full_like(like, default) if x is None else np.asarray(x, dtype=np.float64).reshape(like.shape)


def _bn_params(gamma, beta, mean, var, eps, bias=None):
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    var = np.asarray(var, dtype=np.float64).reshape(mean.shape)
    gamma, beta, bias = _vec(gamma, mean, 1.0), _vec(beta, mean, 0.0), _vec(bias, mean, 0.0)
    for name, v in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var), ("bias", bias)):
        if not np.isfinite(v).all():
            raise ValueError(f"BatchNorm {name} has non-finite values")
    denom = var + float(eps)
    if not (denom > 0).all():
        raise ValueError("BatchNorm var + eps must be > 0")
    return gamma, beta, mean, np.sqrt(denom), bias


def bn_eval(y, gamma, beta, mean, var, eps, bias=None) -> np.ndarray:
    """float64 reference BN(y + bias) = ((y + bias) - mean) / sigma * gamma + beta.

    The channel parameters (C,) broadcast against the LAST axis of y.
    """
    gamma, beta, mean, sigma, bias = _bn_params(gamma, beta, mean, var, eps, bias)
    z = np.asarray(y, dtype=np.float64) + bias
    return (z - mean) / sigma * gamma + beta


FOLD_BLOCK = 1 << 18  # weights folded at a time: float64 intermediates of one block only


def fold_bn(w, b, gamma, beta, mean, var, eps, layer: str = "?"):
    """(W', b') as float32; see the module docstring.  PlanError if the result overflows float32.

    W' is computed in blocks of whole output channels (float64 product, rounded once to float32),
    so no float64 copy of the whole tensor is made; the values are those of the whole-array formula."""
    w = np.asarray(w)
    gamma, beta, mean, sigma, b = _bn_params(gamma, beta, mean, var, eps, b)
    if w.ndim == 0 or w.shape[0] != mean.shape[0]:
        raise ValueError(f"weight shape {w.shape} does not match {mean.shape[0]} BatchNorm channels")
    k = gamma / sigma
    b_f = (b - mean) * k + beta
    w32 = np.empty(w.shape, dtype=np.float32)
    rows, out = w.reshape(w.shape[0], -1), w32.reshape(w.shape[0], -1)
    step = max(1, FOLD_BLOCK // max(1, rows.shape[1]))
    finite = True
    with np.errstate(over="ignore"):
        b32 = b_f.astype(np.float32)
        for r0 in range(0, rows.shape[0], step):  # blocks of channels, each a whole-array numpy pass
            block = out[r0:r0 + step]
            np.multiply(rows[r0:r0 + step], k[r0:r0 + step, None], out=block, dtype=np.float64, casting="same_kind")
            finite = finite and bool(np.isfinite(block).all())
    if not (finite and np.isfinite(b32).all()):
        raise PlanError(f"layer {layer}: folding BatchNorm overflows float32")
    return w32, b32


def bnn_thresholds(gamma, beta, mean, var, eps, bias=None, layer: str = "?"):
    """(tau int32 (C,), flip uint8 (C,)); see the module docstring for the rule."""
    g, bt, mu, sigma, b = _bn_params(gamma, beta, mean, var, eps, bias)
    pos, neg = g > 0, g < 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = mu - b - bt * sigma / g
    t = np.where(g == 0, 0.0, t)
    tau = np.where(pos, np.ceil(t), np.floor(t))
    tau = np.where(g == 0, np.where(bt >= 0, _I32.min, _I32.max), tau)
    tau = np.clip(tau, _I32.min, _I32.max)

    var = np.asarray(var, dtype=np.float64).reshape(mu.shape)

    def holds(y):  # the float64 reference predicate, per channel, evaluated exactly as bn_eval
        with np.errstate(over="ignore", invalid="ignore"):
            return bn_eval(y, g, bt, mu, var, eps, b) >= 0

    step = np.where(pos, 1.0, -1.0)  # direction in which the predicate becomes true
    for _ in range(64):
        free = (g != 0) & (tau > _I32.min) & (tau < _I32.max)  # not clamped: can be corrected
        inside = holds(tau)
        before = holds(tau - step)
        up = free & ~inside  # tau is not yet in the +1 region: move into it
        down = free & inside & before  # the previous integer is already +1: move back
        if not (up.any() or down.any()):
            break
        tau = np.where(up, tau + step, np.where(down, tau - step, tau))  # stays within int32
    else:
        raise PlanError(f"layer {layer}: cannot place the BN threshold (extreme BatchNorm parameters)")
    return tau.astype(np.int32), neg.astype(np.uint8)
