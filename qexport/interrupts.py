"""Signals the CLI received (SIGINT, SIGTERM), checked again at every atomic commit.

The CLI's handlers record the signal here and raise KeyboardInterrupt, which unwinds the atomic
writers (temporary files removed, nothing renamed into place).  C code can lose an exception
raised by a signal handler: numpy.char.mod, which formats float arrays for the C header, clears
it mid-array.  So every rename into place checks this record as well, and an interrupted export
never replaces an output even when its KeyboardInterrupt was swallowed.  Standard library only:
it is on the start-up path of the CLI.
"""

from __future__ import annotations

import signal

received: list[int] = []


def record(signum: int) -> None:
    received.append(signum)


def check() -> None:
    """Raise KeyboardInterrupt if a signal was received (call before renaming an output into place)."""
    if received:
        raise KeyboardInterrupt


def signal_name() -> str:
    """"SIGTERM", "SIGINT" (the first signal received), or "" when none was."""
    if not received:
        return ""
    try:
        return signal.Signals(received[0]).name
    except ValueError:
        return f"signal {received[0]}"
