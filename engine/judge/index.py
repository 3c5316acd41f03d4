"""The rule index: rules looked up by what an event is, never every rule on every event."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Any

from engine.judge.rulepacks import Rule


class RuleIndex:
    """Rules looked up by (event type, pollutant): never try every rule on every event."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        rules = tuple(rules)
        buckets: dict[tuple[str, str | None], list[Rule]] = {}
        for rule in rules:
            for pollutant in sorted(rule.pollutants) if rule.pollutants else [None]:
                buckets.setdefault((rule.type, pollutant), []).append(rule)
        self._buckets = {key: tuple(sorted(value, key=lambda r: r.id)) for key, value in buckets.items()}
        self._merged: dict[tuple[str, str | None], tuple[Rule, ...]] = {}
        self._readings: dict[tuple[Any, ...], tuple[Rule, ...]] = {}
        windows = [window for rule in rules if rule.windows for window in rule.windows.values()]
        self._starts = sorted({w.start for w in windows if w.start is not None})
        self._ends = sorted({w.end for w in windows if w.end is not None})

    def era(self, first_day: str, last_day: str) -> tuple[int, int]:
        """Where a span of local dates (inclusive) lies among the dates rules come into and go out
        of force: spans of one era have the same rules in force on some date of theirs."""
        return bisect_right(self._starts, last_day), bisect_left(self._ends, first_day)

    def for_reading(self, event_type: str, pollutant: str, process: str | None, point: str | None,
                    destination: str | None, period: str) -> tuple[Rule, ...]:
        """Rules whose static filters (process, point, destination, period) admit a reading; cached."""
        key = (event_type, pollutant, process, point, destination, period)
        found = self._readings.get(key)
        if found is None:
            found = tuple(
                r for r in self.candidates(event_type, pollutant)
                if period in r.periods
                and (r.processes is None or process in r.processes)
                and (r.points is None or point in r.points)
                and (r.destinations is None or destination in r.destinations)
            )
            self._readings[key] = found
        return found

    def candidates(self, event_type: str, pollutant: str | None) -> tuple[Rule, ...]:
        """Rules that could apply to an event of this type and pollutant, sorted by id."""
        key = (event_type, pollutant)
        found = self._merged.get(key)
        if found is None:
            specific = self._buckets.get(key, ()) if pollutant is not None else ()
            general = self._buckets.get((event_type, None), ())
            found = tuple(sorted(specific + general, key=lambda r: r.id))
            self._merged[key] = found
        return found
