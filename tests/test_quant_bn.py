"""qexport.quantize.bn: BN folding against torch and a per-channel loop; BNN thresholds checked
exhaustively against the float64 BatchNorm for every integer accumulator in [-N, N]."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from qexport.errors import PlanError
from qexport.quantize.bn import bn_eval, bnn_thresholds, fold_bn

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def ref_bn(y, gamma, beta, mean, var, eps, bias):
    """The float64 reference, written out: BN(y + b) = ((y + b) - mean) / sqrt(var + eps) * gamma + beta,
    channels on the last axis."""
    return ((y + bias) - mean) / np.sqrt(var + eps) * gamma + beta


def check_thresholds(gamma, beta, mean, var, eps, bias, N):
    tau, flip = bnn_thresholds(gamma, beta, mean, var, eps, bias)
    C = len(mean)
    assert tau.dtype == np.int32 and flip.dtype == np.uint8 and tau.shape == flip.shape == (C,)
    g = np.ones(C) if gamma is None else np.asarray(gamma, np.float64)
    bt = np.zeros(C) if beta is None else np.asarray(beta, np.float64)
    b = np.zeros(C) if bias is None else np.asarray(bias, np.float64)
    y = np.arange(-N, N + 1, dtype=np.float64)[:, None]  # every integer accumulator in [-N, N]
    expect = ref_bn(y, g, bt, np.asarray(mean, np.float64), np.asarray(var, np.float64), eps, b) >= 0
    yi = np.arange(-N, N + 1, dtype=np.int64)[:, None]
    got = np.where(flip == 0, yi >= tau, yi <= tau)
    assert np.array_equal(got, expect)
    assert np.array_equal(flip, (g < 0).astype(np.uint8))
    return tau, flip


GAMMAS = st.one_of(st.floats(-3, 3), st.sampled_from([0.0, -0.0, 1e-300, -1e-300, 0.1, -0.1, 1 / 3, 1e-9]))
BETAS = st.one_of(st.floats(-50, 50), st.sampled_from([0.0, -0.0, 0.3, 0.7, -0.3, 1e6, -1e6]))
MEANS = st.one_of(st.floats(-700, 700), st.integers(-600, 600).map(float))


@settings(max_examples=250, deadline=None)
@given(
    st.lists(st.tuples(GAMMAS, BETAS, MEANS, st.one_of(st.floats(0, 100), st.just(0.75)),
                       st.one_of(st.just(0.0), st.floats(-5, 5), st.just(0.3))), min_size=1, max_size=8),
    st.sampled_from([1e-5, 1e-3, 0.25, 1e-4]),
    st.integers(1, 600),
    st.booleans(),
)  # fmt: skip
def test_thresholds_exhaustive(params, eps, N, with_bias):
    gamma, beta, mean, var, bias = (list(col) for col in zip(*params))
    check_thresholds(gamma, beta, mean, var, eps, bias if with_bias else None, N)


def test_thresholds_exact_ties():
    """var + eps = 1 exactly, so sigma = 1 and the exact threshold lands on integers."""
    # gamma 1, beta 0, mean 3: BN(3) = 0 exactly -> +1 (sign(0) = +1): y >= 3
    tau, flip = check_thresholds([1.0, -1.0, 2.0, 0.5], [0.0, 0.0, -3.0, 1.0], [3.0, 3.0, 0.0, 10.0],
                                 [0.75] * 4, 0.25, None, 50)  # fmt: skip
    assert tau.tolist() == [3, 3, 2, 8] and flip.tolist() == [0, 1, 0, 0]
    # where float64 rounding breaks an exact tie, float64 is the reference: 0.1 * (-3) + 0.3 < 0,
    # so y = mean - 3 (exact tie) is NOT +1 and tau = mean - 2; likewise for the flipped case
    tau, flip = check_thresholds([0.1, -0.1, 0.1], [0.3, 0.7, 0.7], [-6.0, 13.0, -28.0], [0.75] * 3, 0.25, None, 100)
    assert tau.tolist() == [-8, 19, -34] and flip.tolist() == [0, 1, 0]


def test_thresholds_constant_and_clamped():
    # gamma == 0: constant output; beta >= 0 -> always +1, beta < 0 -> never
    tau, flip = check_thresholds([0.0, 0.0, -0.0, 0.0], [0.5, -0.5, 0.0, -0.0], [0.0] * 4, [1.0] * 4, 1e-5, None, 300)
    assert tau.tolist() == [I32_MIN, I32_MAX, I32_MIN, I32_MIN] and flip.tolist() == [0, 0, 0, 0]
    # huge beta / tiny gamma: thresholds beyond int32 clamp and still agree on [-N, N]
    tau, flip = check_thresholds([1e-12, -1e-12, 1e-12], [1.0, 1.0, -1.0], [0.0] * 3, [1.0] * 3, 1e-5, None, 600)
    assert tau.tolist() == [I32_MIN, I32_MAX, I32_MAX]
    # affine=False BN: gamma/beta None
    tau, flip = check_thresholds(None, None, [2.5, -7.0], [4.0, 1.0], 1e-5, [0.5, 0.0], 30)
    assert tau.tolist() == [2, -7] and flip.tolist() == [0, 0]


def test_bn_eval_matches_torch_batch_norm():
    gen = torch.Generator().manual_seed(0)
    C = 6
    x = torch.randn(20, C, dtype=torch.float64, generator=gen) * 10
    g, b, mu = (torch.randn(C, dtype=torch.float64, generator=gen) for _ in range(3))
    var = torch.rand(C, dtype=torch.float64, generator=gen) + 0.1
    ref = F.batch_norm(x, mu, var, g, b, training=False, eps=1e-5).numpy()
    got = bn_eval(x.numpy(), g.numpy(), b.numpy(), mu.numpy(), var.numpy(), 1e-5)
    assert np.allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_fold_bn_matches_channel_loop_and_torch():
    gen = torch.Generator().manual_seed(1)
    O, C = 8, 3
    w = torch.randn(O, C, 3, 3, generator=gen)
    bias = torch.randn(O, generator=gen)
    g, bt, mu = (torch.randn(O, generator=gen) for _ in range(3))
    var = torch.rand(O, generator=gen) + 0.5
    eps = 1e-5
    wf, bf = fold_bn(w.numpy(), bias.numpy(), g.numpy(), bt.numpy(), mu.numpy(), var.numpy(), eps)
    assert wf.dtype == np.float32 and bf.dtype == np.float32 and wf.shape == w.shape
    for o in range(O):  # per-channel scalar transcription, float64
        k = float(g[o]) / math.sqrt(float(var[o]) + eps)
        exp_w = (w[o].double().numpy() * k).astype(np.float32)
        exp_b = np.float32((float(bias[o]) - float(mu[o])) * k + float(bt[o]))
        assert np.array_equal(wf[o], exp_w) and bf[o] == exp_b
    # the folded conv equals conv + BN (float64 torch)
    x = torch.randn(2, C, 7, 7, dtype=torch.float64, generator=gen)
    ref = F.batch_norm(F.conv2d(x, w.double(), bias.double()), mu.double(), var.double(), g.double(), bt.double(),
                       training=False, eps=eps)  # fmt: skip
    got = F.conv2d(x, torch.from_numpy(wf).double(), torch.from_numpy(bf).double())
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_fold_bn_defaults_and_errors():
    w = np.ones((2, 3), np.float32)
    wf, bf = fold_bn(w, None, None, None, [1.0, -1.0], [3.0, 0.0], 1.0)  # sigma = 2, 1
    assert wf.tolist() == [[0.5] * 3, [1.0] * 3] and bf.tolist() == [-0.5, 1.0]
    with pytest.raises(ValueError):
        fold_bn(w, None, None, None, [0.0, 0.0], [0.0, -1.0], 0.0)  # var + eps <= 0
    with pytest.raises(ValueError):
        fold_bn(w, None, None, None, [0.0], [1.0], 1e-5)  # channel count mismatch
    with pytest.raises(PlanError, match="conv9"):
        fold_bn(np.full((1, 2), 3e38, np.float32), None, [1e10], None, [0.0], [1.0], 0.0, layer="conv9")
    with pytest.raises(ValueError):
        bnn_thresholds([np.nan], [0.0], [0.0], [1.0], 1e-5)
