"""External tools used as independent readers.  Under CI a missing tool is a failure, never a skip."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    unavailable(f"{name} not found; `bash scripts/test.sh` installs it")


def unavailable(message: str):
    """A tool or a capability of the machine that a test needs is missing: under CI the test fails
    (CI must prove what the test proves), elsewhere it skips with the reason."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)  # only outside CI, when pytest is run by hand without the test command
