"""Sanitising names taken from checkpoints before they reach C, MATLAB, HDF5, file names or comments.

Every function here is total: any input string gives a valid, non-empty result, and the
`unique_*` helpers resolve collisions created by sanitising or truncating.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

C_KEYWORDS = frozenset(
    """auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef union
    unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary
    _Noreturn _Static_assert _Thread_local alignas alignof and and_eq asm bitand bitor bool catch
    char16_t char32_t class compl constexpr const_cast decltype delete dynamic_cast explicit export
    false friend mutable namespace new noexcept not not_eq nullptr operator or or_eq private
    protected public reinterpret_cast static_assert static_cast template this thread_local throw
    true try typeid typename using virtual wchar_t xor xor_eq NULL""".split()
)

MATLAB_KEYWORDS = frozenset(
    """break case catch classdef continue else elseif end for function global if otherwise parfor
    persistent return spmd switch try while""".split()
)

_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")


def c_identifier(name: str) -> str:
    """`features.0.weight` -> `features_0_weight`; never a keyword, never starts with a digit."""
    ident = _NOT_IDENT.sub("_", name) or "_"
    if ident[0].isdigit():
        ident = "t_" + ident
    # Identifiers starting with "__" or "_X" are reserved for the implementation in C.
    if ident.startswith("_"):
        ident = "t" + ident
    if ident in C_KEYWORDS:
        ident += "_"
    return ident


def matlab_identifier(name: str, maxlen: int = 63) -> str:
    """A valid MATLAB variable/field name: a letter first, then letters, digits, _; <= 63 chars."""
    ident = _NOT_IDENT.sub("_", name)
    if not ident or not ident[0].isalpha():
        ident = "x" + ident
    ident = ident[:maxlen]
    if ident in MATLAB_KEYWORDS:
        ident = (ident + "_")[:maxlen]
    return ident


def file_stem(name: str, maxlen: int = 200) -> str:
    """A safe single path component: no separators, no leading dot, printable ASCII only."""
    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", name).lstrip(".") or "_"
    return stem[:maxlen]


def comment_text(text: str) -> str:
    """Text safe inside a C block comment, a `#`/`%`/`--` line comment or a file header line.

    Keeps printable ASCII, turns everything else (newlines, NUL, non-ASCII) into '?', and breaks
    the sequences that could end or alter a comment (`*/`, `/*`, trigraphs, trailing backslash).
    """
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in str(text))
    text = text.replace("*/", "* /").replace("/*", "/ *").replace("??", "?_?")
    return text.rstrip("\\")


def unique(names: Iterable[str], sanitize: Callable[[str], str], maxlen: int | None = None) -> list[str]:
    """Sanitise each name and make the results unique (case-insensitively, for file systems and
    MATLAB users alike) by appending `_2`, `_3`, ... while respecting `maxlen`."""
    out: list[str] = []
    taken: set[str] = set()
    for name in names:
        base = sanitize(name)
        if maxlen is not None:
            base = base[:maxlen]
        candidate, n = base, 1
        while candidate.lower() in taken:
            n += 1
            suffix = f"_{n}"
            head = base if maxlen is None else base[: maxlen - len(suffix)]
            candidate = head + suffix
        taken.add(candidate.lower())
        out.append(candidate)
    return out
