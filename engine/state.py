"""State that a run carries from one input line to the next, and how it is checkpointed.

Every stateful stage owns its state and offers two methods:

    state()          -> JSON data (dicts, lists, strings, finite numbers, booleans, None)
    restore(state)   takes that data back into a freshly built stage of the same configuration

The Engine composes them (`Engine.snapshot()` / `Engine.restore()`); nothing outside a stage
reads or writes its private attributes. Snapshots are JSON, never pickle: a store may come
from elsewhere, and loading it must not run code.

A stage that keeps part of an event beyond the call keeps its own copy (`kept_copy`): a caller
of `Engine.process` may refill one mapping for each event it passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import orjson


class CheckpointError(RuntimeError):
    """A snapshot that does not fit the engine (format, rule set, backend, rules), or state
    that cannot be captured at this moment."""


class Stateful(Protocol):
    """What a stateful stage offers the engine's checkpoints."""

    def state(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


def finite(value: float) -> float | None:
    """±inf (a clock that has not started) as None, for JSON."""
    return None if value in (float("-inf"), float("inf")) else value


def infinite(value: float | None) -> float:
    """The inverse of `finite` for a clock: None is -inf."""
    return float("-inf") if value is None else value


def pairs(mapping: Mapping[Any, Any]) -> list[list[Any]]:
    """A mapping with tuple keys as a JSON list of [key, value] pairs (insertion order kept)."""
    return [[list(k) if isinstance(k, tuple) else k, v] for k, v in mapping.items()]


def kept_copy(data: Mapping[str, Any]) -> Any:
    """A copy of valid event data that a stage keeps, as JSON reads it (lists for arrays, new
    dicts): the caller's mapping may change after the call."""
    return orjson.loads(orjson.dumps(data))
