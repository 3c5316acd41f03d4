"""Timing helpers the benchmarks share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best(function: Callable[[], Any], repeats: int = 3) -> float:
    """The shortest of `repeats` wall-clock timings of `function()`, in seconds."""
    shortest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        shortest = min(shortest, time.perf_counter() - started)
    return shortest
