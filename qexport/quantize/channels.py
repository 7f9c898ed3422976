"""Per-channel parameters: shape (C,) for one value per output channel (axis 0), 0-d per tensor."""

from __future__ import annotations

import numpy as np


def axis0(p, ndim: int) -> np.ndarray:
    """`p` reshaped to broadcast along axis 0 of an ndim-D tensor (a 0-d value is left as it is)."""
    p = np.asarray(p)
    return p.reshape(p.shape + (1,) * (ndim - 1)) if p.ndim == 1 and ndim >= 1 else p
