"""Dead channels: run-time scales too small for any `m >> s` the options allow (README "Numerics").

A pruned or dead output channel (weights ~1e-19..1e-38) has an alpha or scale S whose best pair
(m, s) needs a shift beyond 31: at s = 31 the multiplier m = round(S * 2^31) is 0 or 1 and the
relative error is far above --max-scale-error, and no --mult-bits can help.  Such a channel is
exported as an exact zero channel: m = 0, s = 0 and its alpha 0, the rule an empty ternary channel
already follows (S = 0).  It is counted (LayerReport.dead_channels) and named in one note; the
--max-scale-error check applies to the other channels, and its error names only fixes that work.
"""

from __future__ import annotations

import math

import numpy as np

from . import intscale

MAX_SHIFT = 31


def zero_dead(scale: np.ndarray, m: np.ndarray, s: np.ndarray, err: np.ndarray, max_error: float):
    """(m, s, err) with every dead channel set to m = 0, s = 0, err = 0.  A channel is dead when its
    best pair already uses the largest shift and still misses `max_error`: only a larger shift
    could represent it, and there is none."""
    scale = np.asarray(scale, np.float64)
    dead = (err > max_error) & (s == MAX_SHIFT) & (scale > 0)
    if not dead.any():
        return m, s, err
    return (np.where(dead, 0, m).astype(np.int32), np.where(dead, 0, s).astype(np.int32),
            np.where(dead, 0.0, err).astype(np.float64))  # fmt: skip


def dead_mask(scale: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Channels exported as exact zeros although their float scale is not zero."""
    return (np.asarray(m) == 0) & (np.asarray(scale) != 0)


def zeroed(scale: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """The scale (alpha) with the dead channels set to 0, so every writer writes the same zeros."""
    scale = np.asarray(scale)
    return np.where(dead, 0, scale).astype(scale.dtype).reshape(scale.shape) if dead.any() else scale


def note(layer: str, what: str, scale: np.ndarray, dead: np.ndarray, limit: int = 8) -> list[str]:
    """One note naming the dead channels of a layer (none when there are none)."""
    count = int(np.count_nonzero(dead))
    if not count:
        return []
    if dead.ndim == 0:
        where = "the whole tensor"
    else:
        idx = np.flatnonzero(dead)
        shown = ", ".join(str(int(i)) for i in idx[:limit]) + (", ..." if count > limit else "")
        where = f"{count} channel(s) ({shown})"
    largest = float(np.max(np.asarray(scale, np.float64)[dead]))
    return [f"{layer}: {where} exported as exact zeros (m = 0, {what} 0): {what} up to {largest:.3g} is below "
            f"what m >> s with s <= {MAX_SHIFT} can represent (pruned or dead channels)"]


def scale_error_message(layer: str, what: str, scale: np.ndarray, m, s, err, opts) -> str:
    """The --max-scale-error refusal, advising only the fixes that would work for this scale."""
    i = int(np.argmax(err))
    value = float(np.asarray(scale, np.float64).reshape(-1)[i])
    worst = float(np.max(err))
    fixes = []
    for bits in range(opts.mult_bits + 1, 32):  # the narrowest --mult-bits that fits every channel
        m2, s2, e2 = intscale.integer_scale(np.asarray(scale, np.float64), bits)
        if float(np.max(zero_dead(scale, m2, s2, e2, opts.max_scale_error)[2])) <= opts.max_scale_error:
            fixes.append(f"--mult-bits {bits}")
            break
    needed = math.ceil(worst * 1e4) / 1e4  # rounded up: the suggested bound really admits the pair
    if needed <= 1.0:
        fixes.append(f"--max-scale-error {needed:g}")
    if np.ndim(scale) == 0:
        fixes.append(f"--scale-shift {layer}=m,s")
    advice = "; use " + " or ".join(fixes) if fixes else ""
    return (f"layer {layer}: {what} {value:.6g} is approximated by m >> s = {int(np.reshape(m, -1)[i])} >> "
            f"{int(np.reshape(s, -1)[i])} with relative error {worst:.3%} > --max-scale-error "
            f"{opts.max_scale_error:.3%}{advice}")
