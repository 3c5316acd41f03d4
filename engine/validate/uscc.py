"""Unified social credit codes (GB 32100-2015): the enterprise identifier of every event.

The check character is verified so that a mistyped code is quarantined instead of
silently creating a second enterprise.
"""

from __future__ import annotations

import functools

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def check_character(body: str) -> str:
    """The check character for the first 17 characters of a code."""
    if len(body) != 17:
        raise ValueError(f"a code body has 17 characters, got {len(body)}")
    total = 0
    for ch, weight in zip(body, _WEIGHTS):
        value = _VALUE.get(ch)
        if value is None:
            raise ValueError(f"{ch!r} is not a GB 32100 character")
        total += value * weight
    return ALPHABET[(31 - total % 31) % 31]


def uscc_problem(code: object) -> str | None:
    """Why `code` is not a valid unified social credit code, or None when it is."""
    if not isinstance(code, str):
        return "is not a string"
    return _string_problem(code)


@functools.lru_cache(maxsize=1 << 17)
def _string_problem(code: str) -> str | None:
    """Cached: a city has a bounded set of enterprises and each code recurs in every event."""
    if len(code) != 18:
        return f"has {len(code)} characters, a unified social credit code has 18"
    for position, ch in enumerate(code, start=1):
        if ch not in _VALUE:
            return f"character {position} {ch!r} is not allowed (I, O, S, V, Z and lower case never occur)"
    expected = check_character(code[:17])
    if code[17] != expected:
        return f"check character is {code[17]!r}, expected {expected!r}"
    return None


def is_uscc(code: object) -> bool:
    """True when `code` is a well-formed code with a correct check character."""
    return uscc_problem(code) is None


def make_uscc(body: str) -> str:
    """Complete a 17-character body with its check character (used by the demo and tests)."""
    return body + check_character(body)
