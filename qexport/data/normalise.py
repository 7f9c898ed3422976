"""`parse_normalisation`: --mean / --std on the 0..1 pixel scale, one value or one per channel.

The float model saw `(pixel / 255 - mean) / std`; the integer network takes the raw uint8 pixels
and the first layer is to absorb the normalisation (done by the integer graph, not here).
"""

from __future__ import annotations

import math

from ..errors import UsageError


def _values(text: str, option: str, channels: int) -> tuple:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{option} {text}: give numbers separated by commas, e.g. {option} 0.5 or 0.49,0.48,0.45") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{option} {text}: every value must be a finite number")
    if len(values) not in (1, channels):
        want = "1 value" if channels == 1 else f"1 value or {channels} (one per channel)"
        raise UsageError(f"{option} {text}: {len(values)} values for {channels} channel{'s' * (channels != 1)}; give {want}")
    return values * channels if len(values) == 1 else values


def parse_normalisation(mean: str | None, std: str | None, channels: int) -> tuple[tuple, tuple]:
    """`--mean` / `--std` strings -> (mean, std), each a tuple of `channels` floats.

    Values are on the 0..1 pixel scale (the float input was `(pixel / 255 - mean) / std`); one
    value is used for every channel; None means mean 0 / std 1.  Means outside 0..1 and stds above
    1 are refused as the 0..255 scale given by mistake (ImageNet's 123.7 / 58.4 are 0.485 / 0.229).
    """
    if type(channels) is not int or channels < 1:
        raise UsageError(f"channels {channels!r}: must be a whole number, 1 or more")
    means = _values(mean, "--mean", channels) if mean is not None else (0.0,) * channels
    stds = _values(std, "--std", channels) if std is not None else (1.0,) * channels
    bad = next((v for v in means if not 0.0 <= v <= 1.0), None)
    if bad is not None:
        raise UsageError(f"--mean {mean}: {bad:g} is outside 0..1; give the mean on the 0..1 pixel scale (value / 255)")
    bad = next((v for v in stds if v <= 0.0), None)
    if bad is not None:
        raise UsageError(f"--std {std}: {bad:g} is not above 0; every std must be positive")
    bad = next((v for v in stds if v > 1.0), None)
    if bad is not None:
        raise UsageError(f"--std {std}: {bad:g} is above 1; give the std on the 0..1 pixel scale (value / 255)")
    return means, stds
