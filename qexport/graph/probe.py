"""Modules and autograd Functions that torch.fx cannot see into, identified by BEHAVIOUR on probe
inputs (README "The network graph", "Opaque modules").

* a parameter-free leaf (or an autograd Function) whose outputs on random probes (with exact
  zeros among them) equal torch.sign(x) is `sign`;
* an nn.Conv2d / nn.Linear subclass is run on a copy holding random weights (never the user's
  module, whose forward may overwrite its own weights, as BinaryNet's does) and compared with
  F.conv2d / F.linear on {x, sign(x)} x {w, sign(w)}: the one that matches decides the op
  (conv2d / binary_conv2d, linear / binary_linear) and `binarize_input`;
* anything else is not identified: the caller raises a GraphError naming it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

N_PROBES = 3


def _probes(shape, gen) -> list[torch.Tensor]:
    out = []
    for _ in range(N_PROBES):
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        x[torch.rand(shape, generator=gen) < 0.1] = 0.0  # sign(0) = 0 must hold too
        out.append(x)
    return out


def _same(a, b) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-9, atol=1e-9))


def behaves_like_sign(fn, shape) -> bool:
    """fn(x) == sign(x), values in {-1, 0, +1}, on random float64 probes of `shape`."""
    gen = torch.Generator().manual_seed(14)
    for x in _probes(shape, gen):
        with torch.no_grad():
            try:
                y = fn(x.clone())
            except Exception:
                return False
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            return False
        y = y.to(torch.float64)
        if not bool(torch.isin(y, torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)).all()):
            return False
        if not torch.equal(y, torch.sign(x)):
            return False
    return True


def identify_weighted(module: nn.Module, input_shape) -> dict | None:
    """For an nn.Conv2d / nn.Linear subclass: {"op": ..., "binarize_input": bool} or None."""
    conv = isinstance(module, nn.Conv2d)
    try:
        probe = copy.deepcopy(module).to(torch.float64)
    except Exception:
        return None
    gen = torch.Generator().manual_seed(41)
    with torch.no_grad():
        probe.weight.copy_(torch.randn(probe.weight.shape, generator=gen, dtype=torch.float64) * 0.7 + 0.05)
        if probe.bias is not None:
            probe.bias.copy_(torch.randn(probe.bias.shape, generator=gen, dtype=torch.float64))
        for param in (probe.weight, probe.bias):
            # copies a forward keeps beside its parameter (BinaryNet's `.org`) get the same values
            for key, value in list(getattr(param, "__dict__", {}).items()):
                if isinstance(value, torch.Tensor) and param is not None and value.shape == param.shape:
                    setattr(param, key, param.detach().clone())
    w = probe.weight.detach().clone()
    b = None if probe.bias is None else probe.bias.detach().clone()

    def reference(x, bin_w, bin_x):
        x = torch.sign(x) if bin_x else x
        wt = torch.sign(w) if bin_w else w
        if conv:
            if probe.padding_mode != "zeros" or isinstance(probe.padding, str):
                return None
            return F.conv2d(x, wt, b, probe.stride, probe.padding, probe.dilation, probe.groups)
        return F.linear(x, wt, b)

    candidates = [(bw, bx) for bw in (False, True) for bx in (False, True)]
    for x in _probes(tuple(input_shape), gen):
        with torch.no_grad():
            try:
                y = probe(x.clone())
            except Exception:
                return None
            # the forward may have rewritten its weights (BinaryNet keeps the float copy in .org)
            candidates = [c for c in candidates if _same(y, reference(x, *c))]
        if not candidates:
            return None
    bin_w, bin_x = candidates[0]
    base = "conv2d" if conv else "linear"
    return {"op": ("binary_" + base) if bin_w else base, "binarize_input": bin_x}
