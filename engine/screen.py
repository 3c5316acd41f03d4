"""Threshold gates: which readings could make a rule fire, decided with one comparison each.

Readings that share what the rule index and the corrections look at (type, pollutant,
unit, process, point, destination, period, flag, whether O2 and a volume are given) meet
the same rules. When every one of them is a specialised threshold (`judged > limit`,
`>=`, or outside a range), the judged value is `value × scale`, times the O2 factor
(21 − O2ref) / (21 − O2) for rules with a reference oxygen, up to a few units in the last
place, then rounded to 9 digits. A gate turns the limits into cuts on the raw value,
widened by 1e-9 (relative and absolute), far more than float error and rounding can move
a value: a reading inside every cut cannot fire. Readings outside are judged exactly by
`Gate.fires`, which is `Engine._judge`'s arithmetic step for step (same functions, same
order); only those that fire leave the fast lane. Gates ignore applicability (industry,
dates), so they can send too many readings to the exact path, never too few.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.rules import Rule
from engine.units import UnitError, convert, o2_corrected, round_judged, to_canonical

_MARGIN = 1e-9
_TINY = 1e-300


@dataclass(frozen=True, slots=True)
class _Threshold:
    """One rule specialised to a group: value (and O2) -> judged, and the test on it."""

    judge: Callable[[float, float | None], float]
    kind: str
    bounds: tuple[float, ...]

    def fires(self, value: float, o2: float | None) -> bool:
        judged = self.judge(value, o2)
        if self.kind == "gt":
            return judged > self.bounds[0]
        if self.kind == "ge":
            return judged >= self.bounds[0]
        return judged < self.bounds[0] or judged > self.bounds[1]


@dataclass(frozen=True, slots=True)
class Gate:
    """Cuts on the raw value of a reading group; `o2_free` (21 − O2ref) is None without O2 rules.

    A reading is quiet when low <= value <= high and, with O2 rules,
    value × o2_free / (21 − O2) <= o2_high.
    """

    high: float
    low: float
    o2_free: float | None
    o2_high: float
    rules: tuple[_Threshold, ...]

    def fires(self, value: float, o2: float | None) -> bool:
        """The exact test: does any rule fire on this reading (before applicability)?"""
        return any(rule.fires(value, o2) for rule in self.rules)


def build_gate(rules: Sequence[Rule], pollutant: str, unit: str, process: str | None,
               has_o2: bool, has_volume: bool) -> Gate | None:
    """The gate of a reading group, or None when its readings need the exact path anyway."""
    try:
        canonical = to_canonical(pollutant, 1.0, unit)[1]
    except UnitError:
        return None  # quarantined on the exact path, with its message
    high, low, o2_high = math.inf, -math.inf, math.inf
    references: set[float] = set()
    thresholds: list[_Threshold] = []
    for rule in rules:
        if rule.threshold is None or rule.unit is None or (rule.benchmark is not None and has_volume):
            return None
        try:
            scale = convert(to_canonical(pollutant, 1.0, unit)[0], canonical, rule.unit)
        except UnitError:
            return None
        if not scale > 0:
            return None
        kind, bounds = rule.threshold[0], tuple(rule.threshold[1:])
        reference = rule.o2_reference.get(process or "") if has_o2 else None
        thresholds.append(_Threshold(_judge(pollutant, unit, canonical, rule.unit, reference), kind, bounds))
        if reference is not None:
            references.add(float(reference))
            if kind == "range" or len(references) > 1:
                return None  # not met in the rule packs; the exact path covers it
            o2_high = min(o2_high, _cut(_below(bounds[-1]), scale))
            continue
        high = min(high, _cut(_below(bounds[-1]), scale))
        if kind == "range":
            low = max(low, _cut(_above(bounds[0]), scale, up=True))
    o2_free = 21.0 - references.pop() if references else None
    return Gate(high, low, o2_free, o2_high, tuple(thresholds))


def _below(bound: float) -> float:
    return bound - _MARGIN - abs(bound) * _MARGIN


def _above(bound: float) -> float:
    return bound + _MARGIN + abs(bound) * _MARGIN


def _cut(bound: float, scale: float, up: bool = False) -> float:
    """The raw value matching a judged bound, moved outwards so the cut stays conservative."""
    raw = bound / scale
    return raw + abs(raw) * _MARGIN + _TINY if up else raw - abs(raw) * _MARGIN - _TINY


def _judge(pollutant: str, unit: str, canonical: str, target: str, reference: float | None) -> Callable[[float, float | None], float]:
    """Engine._judge's arithmetic for one rule: the same functions (engine/units.py), in the same order."""

    def judge(value: float, o2: float | None) -> float:
        measured = convert(to_canonical(pollutant, value, unit)[0], canonical, target)
        return round_judged(o2_corrected(measured, o2, reference)[0])

    return judge
