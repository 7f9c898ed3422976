"""One conversion of parameter and attribute values to JSON values (manifests, metadata)."""

from __future__ import annotations

import math

import numpy as np


def json_value(value):
    """numpy scalars and arrays to Python values, tuples to lists (recursively), non-finite floats
    to their text ("inf", "nan": JSON has no such numbers); anything else unknown to str."""
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)
