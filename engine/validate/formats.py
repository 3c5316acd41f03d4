"""The string formats the schemas use: RFC 3339 date-times with offset, dates, unified social
credit codes. Each check raises ValueError saying why a value is not valid (jsonschema uses
the message; the compiled validator on the hot path uses the yes/no of `FAST_FORMATS`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import date, datetime

from engine.validate.uscc import uscc_problem

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_date_time(value: object) -> bool:
    """RFC 3339 date-time with an explicit offset; raises ValueError saying why not."""
    if not isinstance(value, str):
        return True  # format applies to strings only; `type` catches the rest
    return _check_date_time(value)


@functools.lru_cache(maxsize=1 << 16)
def _check_date_time(value: str) -> bool:
    """Cached: a city's monitoring data share a handful of timestamps per hour."""
    if not _RFC3339.match(value):
        raise ValueError("is not an RFC 3339 date-time with offset, e.g. 2024-03-01T10:00:00+08:00")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"is not a real date-time ({exc})") from None
    return True


def check_date(value: object) -> bool:
    """A calendar date YYYY-MM-DD; raises ValueError saying why not."""
    if not isinstance(value, str):
        return True
    return _check_date(value)


@functools.lru_cache(maxsize=1 << 14)
def _check_date(value: str) -> bool:
    """Cached: contracts, inspections and reports of a city share their dates."""
    if not _DATE.match(value):
        raise ValueError("is not a date YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"is not a real date ({exc})") from None
    return True


def check_uscc(value: object) -> bool:
    """A unified social credit code with a correct check character (GB 32100)."""
    if not isinstance(value, str):
        return True
    problem = uscc_problem(value)
    if problem:
        raise ValueError(problem)
    return True


FORMATS: dict[str, Callable[[object], bool]] = {
    "date-time": check_date_time,
    "date": check_date,
    "uscc": check_uscc,
}


def _bool_format(check: Callable[[object], bool]) -> Callable[[object], bool]:
    def wrapped(value: object) -> bool:
        try:
            return check(value)
        except ValueError:
            return False

    return wrapped

FAST_FORMATS: dict[str, Callable[[object], bool]] = {name: _bool_format(check) for name, check in FORMATS.items()}
