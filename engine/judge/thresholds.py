"""Threshold arithmetic, once: the corrected value of a reading, the test, and the gates.

`corrected` and `exceeds` are what the judge (engine/judge/judge.py) computes for every
reading a specialised threshold rule sees (`judged > limit`, `>=`, or outside a range).

Gates serve the batch path. Readings that share what the rule index and the corrections
look at (type, pollutant, unit, process, point, destination, period, flag, whether O2 and a
volume are given) meet the same rules. When every one of them is a specialised threshold,
the judged value is `value × scale`, times the O2 factor (21 − O2ref) / (21 − O2) for rules
with a reference oxygen, up to a few units in the last place, then rounded to 9 digits. A
gate turns the limits into cuts on the raw value, widened by 1e-9 (relative and absolute),
far more than float error and rounding can move a value: a reading inside every cut cannot
fire. Readings outside are judged exactly by `Gate.fires`, with `corrected` and `exceeds`;
only those that fire leave the fast lane. The cuts ignore applicability (industry, dates), so
they can send too many readings to the exact test, never too few. Told the reading's local date,
the exact test skips a rule in force on that date for no facility class (e.g. an existing
enterprise's limit that ended in 2014), as the judge does; `Gate.firing` names the
industries of the rules that fire, so that the batch path can keep a reading that only
another industry's rule would judge in bulk (it checks the registry when it commits it). A rule whose condition
is `<guard> and judged > limit` (e.g. a sub-sector's own limit) is gated on its threshold half
(`Rule.necessary`): it cannot fire inside the cut, whatever the guard says.

Daily wastewater readings under a benchmark-volume correction (GB 4287, GB 21900: the judged
value is raised by actual volume ÷ benchmark volume when that exceeds 1) are gated too when
they carry `volume_m3` and one `production` object: `Gate.benchmark_quiet` applies each such
rule's cut to the value times its own ratio (`benchmark_ratio`'s arithmetic). A rule whose
correction cannot be made (a category without a benchmark, another unit, no production, a
benchmark volume too small to divide by) makes the judge write a data gap, but only where it
applies: such a reading is quiet only for an enterprise outside the rule's industries (e.g. a
plating line's production in m2 under the dyeing standard's rule), which the batch path checks
against the registry when it commits the reading, in input order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.judge.rulepacks import Rule
from engine.units import (
    BENCHMARK_UNITS,
    UnitError,
    convert,
    o2_corrected,
    round_judged,
    to_canonical,
)

_MARGIN = 1e-9
_TINY = 1e-300


def corrected(rule: Rule, value: float, unit: str, o2: float | None,
              process: str | None) -> tuple[float, float, float | None, float | None]:
    """A value in canonical units as `rule` sees it: (measured in the rule's unit, judged at the
    reference O₂, the O₂ factor or None, the reference O₂ or None). Before the benchmark
    volume and rounding."""
    assert rule.unit is not None
    measured = convert(value, unit, rule.unit)
    reference = rule.o2_reference.get(process or "")
    judged, factor = o2_corrected(measured, o2, reference)
    return measured, judged, factor, reference


def exceeds(threshold: tuple[Any, ...], judged: float) -> bool:
    """The specialised threshold test (`judged > limit`, `>=`, or outside [low, high])."""
    kind = threshold[0]
    if kind == "gt":
        return judged > threshold[1]
    if kind == "ge":
        return judged >= threshold[1]
    return judged < threshold[1] or judged > threshold[2]


def benchmark_ratio(rule: Rule, data: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """GB 4287 / GB 21900: actual volume ÷ benchmark volume Σ Yᵢ·Qᵢ for the day's production (one
    category, or a list of them); (None, {"applied": False, "reason": why}) when it cannot be made
    (`benchmark_corrected` tells when the corrected value is beyond the float range)."""
    found = benchmark_volumes(rule, data)
    if isinstance(found, str):
        return None, {"applied": False, "reason": found}
    ratio, volume, benchmark_m3 = found
    return ratio, {"applied": ratio > 1, "actual_m3": round_judged(volume), "benchmark_m3": round_judged(benchmark_m3),
                   "ratio": round_judged(ratio)}


def benchmark_volumes(rule: Rule, data: Mapping[str, Any]) -> tuple[float, float, float] | str:
    """`benchmark_ratio`'s arithmetic: (the ratio, the actual and the benchmark volume in m3), or
    why the correction cannot be made."""
    assert rule.benchmark is not None and rule.benchmark_unit is not None
    volume, production = data.get("volume_m3"), data.get("production")
    if volume is None or production is None:
        missing = " and ".join(name for name, v in (("volume_m3", volume), ("production", production)) if v is None)
        return f"the reading carries no {missing}"
    product_unit, to_m3 = BENCHMARK_UNITS[rule.benchmark_unit]
    benchmark_m3 = 0.0
    for item in production if isinstance(production, list) else [production]:
        category = item.get("category")
        per_unit = rule.benchmark.get(category) if category is not None else None
        if per_unit is None:
            return f"no benchmark volume for category {category!r}"
        if item.get("unit") != product_unit:
            return f"production unit {item.get('unit')!r}, benchmark is per {product_unit}"
        benchmark_m3 += item["quantity"] * per_unit * to_m3
    if benchmark_m3 <= 0:
        return "no production in the accounting period"
    ratio = volume / benchmark_m3
    if not math.isfinite(ratio):
        return f"a benchmark volume of {benchmark_m3:g} m3 is too small to divide the actual volume by"
    return ratio, volume, benchmark_m3


def benchmark_corrected(judged: float, ratio: float) -> float | None:
    """`judged` raised by a benchmark-volume ratio above 1; None when that is not a finite number
    (the correction cannot be made)."""
    if not ratio > 1:
        return judged
    raised = judged * ratio
    return raised if math.isfinite(raised) else None


@dataclass(frozen=True, slots=True)
class _Threshold:
    """One rule in a gate: how a raw value of the group becomes the rule's judged value
    (`benchmark`: with the daily benchmark-volume correction)."""

    rule: Rule
    process: str | None
    benchmark: bool = False
    # a raw value above `sure` (at the reference O2 when `o2_free`, 21 - that O2, is set) exceeds
    # the threshold whatever the rounding and the arithmetic's order (`build_gate`)
    sure: float = math.inf
    o2_free: float | None = None

    def fires(self, value: float, o2: float | None, pollutant: str, unit: str,
              data: Mapping[str, Any] | None = None, day: str | None = None) -> bool:
        """Whether the rule's necessary threshold is exceeded (the rule may then fire), or its
        benchmark-volume correction cannot be made (the judge then writes a data gap); never
        on a `day` (the reading's local date) the rule is in force for no facility class."""
        if day is not None and not self.rule.in_force_on(day):
            return False
        if self.o2_free is None:
            if value > self.sure:
                return True
        elif o2 is not None and o2 < 21.0 and value * self.o2_free / (21.0 - o2) > self.sure:
            return True
        canonical_value, canonical_unit = to_canonical(pollutant, value, unit)
        judged = corrected(self.rule, canonical_value, canonical_unit, o2, self.process)[1]
        if self.benchmark:
            found = benchmark_volumes(self.rule, data or {})
            raised = None if isinstance(found, str) else benchmark_corrected(judged, found[0])
            if raised is None:  # the correction cannot be made: a data gap (or a finding)
                return True
            judged = raised
        return exceeds(self.rule.necessary, round_judged(judged))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _BenchmarkCut:
    """A benchmark rule's cut on value × max(1, actual ÷ benchmark volume); `per_unit`: the
    benchmark volume per unit of product by (category, production unit), in m3 (Yᵢ and the
    unit's factor, multiplied in `benchmark_ratio`'s order)."""

    high: float
    per_unit: Mapping[tuple[str, str], tuple[Any, float]]
    industries: frozenset[str] | None  # the rule's industries (None: every enterprise)


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
    pollutant: str
    unit: str
    rules: tuple[_Threshold, ...]
    benchmarks: tuple[_BenchmarkCut, ...] = ()

    def fires(self, value: float, o2: float | None, data: Mapping[str, Any] | None = None,
              day: str | None = None) -> bool:
        """The exact test: does any rule fire on this reading (before the enterprise's
        applicability), or can a benchmark-volume correction not be made? `data`: the reading's
        data (for that correction); `day`: its local date (rules in force then only)."""
        return any(rule.fires(value, o2, self.pollutant, self.unit, data, day) for rule in self.rules)

    def fires_for(self, value: float, o2: float | None, data: Mapping[str, Any] | None, industry: str | None,
                  day: str | None = None) -> bool:
        """`fires` for an enterprise of `industry` (None: not registered): only the rules that may
        apply to it (the judge skips a rule of another industry before anything else)."""
        return any(rule.fires(value, o2, self.pollutant, self.unit, data, day) for rule in self.rules
                   if rule.rule.industries is None or industry in rule.rule.industries)

    def fire_surely(self, values: np.ndarray, o2: np.ndarray, applies: Callable[[Rule], np.ndarray | None],
                    days: tuple[str, str]) -> np.ndarray:
        """`fires_for` by column, where it answers True without conversions: readings (float64
        `values`, `o2` NaN where none was given) past the `sure` cut of a rule in force on every
        date from days[0] to days[1] that may apply to their enterprise (`applies(rule)`: a mask
        of the readings, None for all of them)."""
        sure = np.zeros(len(values), dtype=bool)
        for threshold in self.rules:
            rule = threshold.rule
            if threshold.benchmark or not math.isfinite(threshold.sure) or not rule.in_force_throughout(*days):
                continue
            if threshold.o2_free is None:
                above = values > threshold.sure
            else:  # as `_Threshold.fires`: value × (21 − O2ref) / (21 − O2), in that order
                with np.errstate(divide="ignore", invalid="ignore"):
                    above = (o2 < 21.0) & (values * threshold.o2_free / (21.0 - o2) > threshold.sure)
            mask = applies(rule)
            sure |= above if mask is None else above & mask
        return sure

    def firing(self, value: float, o2: float | None, data: Mapping[str, Any] | None = None,
               day: str | None = None) -> frozenset[str] | None:
        """`fires`, told by industry: None when a rule for every enterprise fires (or cannot make
        its correction), else the industries whose rules do (the judge skips a rule of another
        industry before anything else); an empty set: no rule fires."""
        industries: frozenset[str] = frozenset()
        for rule in self.rules:
            if rule.fires(value, o2, self.pollutant, self.unit, data, day):
                if rule.rule.industries is None:
                    return None
                industries |= rule.rule.industries
        return industries

    def benchmark_quiet(self, value: float, data: Mapping[str, Any]) -> frozenset[str] | None:
        """Whether `value` is inside every benchmark rule's cut after its correction (`data` holds
        `volume_m3` and one `production` object): None when it may not be, else the industries
        of the enterprises for which it still is not (a rule of some industries, whose cut the
        value passes or whose correction cannot be made, fires or gives a data gap where it
        applies: to its own industries only); an empty set: quiet."""
        production = data["production"]
        volume, quantity = data["volume_m3"], production["quantity"]
        key = (production.get("category"), production["unit"])
        blocked: frozenset[str] = frozenset()
        for cut in self.benchmarks:
            factors = cut.per_unit.get(key)
            benchmark_m3 = quantity * factors[0] * factors[1] if factors is not None else 0.0
            if not benchmark_m3 > 0:
                if cut.industries is None:
                    return None
                blocked |= cut.industries
                continue
            ratio = volume / benchmark_m3
            if not value * (ratio if ratio > 1 else 1.0) <= cut.high:
                if cut.industries is None:
                    return None
                blocked |= cut.industries
        return blocked

    def benchmark_quiet_columns(self, values: np.ndarray, volumes: np.ndarray, quantities: np.ndarray,
                                products: np.ndarray, pairs: Sequence[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray, list[frozenset[str]]]:
        """`benchmark_quiet` of many readings at once (float64 columns; `products` indexes
        `pairs`, each reading's (category, production unit)): where it gives None (a bool
        array), and the industries it gives elsewhere as indexes into a list of sets (0: the
        empty set). The same arithmetic in the same order: an integer quantity or volume (below
        2**53, as the schema bounds them) is the same float here (tests/test_thresholds_columns.py)."""
        unquiet = np.zeros(len(values), dtype=bool)
        if not len(values):
            return unquiet, np.zeros(0, dtype=np.int64), [frozenset()]
        gaps = np.zeros(len(values), dtype=np.int64)  # per reading, the cuts (bits) of some industries it is not inside
        partial: list[frozenset[str]] = []
        for cut in self.benchmarks:
            factors = [cut.per_unit.get(pair) for pair in pairs]
            y = np.array([np.nan if f is None else float(f[0]) for f in factors], dtype=np.float64)[products]
            to_m3 = np.array([np.nan if f is None else float(f[1]) for f in factors], dtype=np.float64)[products]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf and NaN compare as in Python
                benchmark_m3 = quantities * y * to_m3
                made = benchmark_m3 > 0
                ratio = volumes / benchmark_m3
                beyond = ~made | ~(values * np.where(ratio > 1, ratio, 1.0) <= cut.high)
            if cut.industries is None:
                unquiet |= beyond
            else:
                gaps |= beyond.astype(np.int64) << len(partial)
                partial.append(cut.industries)
        masks, index = np.unique(gaps, return_inverse=True)
        sets = [frozenset().union(*(industries for bit, industries in enumerate(partial) if mask >> bit & 1))
                for mask in masks.tolist()]
        if sets[0]:  # no reading with every correction made: keep index 0 the empty set
            sets.insert(0, frozenset())
            index = index + 1
        return unquiet, index.reshape(-1), sets


def build_gate(rules: Sequence[Rule], pollutant: str, unit: str, process: str | None, period: str,
               has_o2: bool, has_benchmark_inputs: bool = False) -> Gate | None:
    """The gate of a reading group, or None when its readings need the exact path anyway: a rule
    beyond the specialised thresholds, a daily benchmark-volume correction without its inputs
    (`has_benchmark_inputs`: `volume_m3` and one `production` object; else a data gap), an
    O2-referenced limit without O2 (a data gap)."""
    try:
        canonical = to_canonical(pollutant, 1.0, unit)[1]
    except UnitError:
        return None  # quarantined on the exact path, with its message
    high, low, o2_high = math.inf, -math.inf, math.inf
    references: set[float] = set()
    thresholds: list[_Threshold] = []
    benchmarks: list[_BenchmarkCut] = []
    for rule in rules:
        corrects = rule.benchmark is not None and period == "day"
        if rule.necessary is None or rule.unit is None or (corrects and not has_benchmark_inputs):
            return None
        if not has_o2 and rule.o2_reference.get(process or "") is not None:
            return None
        try:
            scale = convert(to_canonical(pollutant, 1.0, unit)[0], canonical, rule.unit)
        except UnitError:
            return None
        if not scale > 0:
            return None
        kind, bounds = rule.necessary[0], tuple(rule.necessary[1:])
        reference = rule.o2_reference.get(process or "") if has_o2 else None
        # above `sure` the judged value exceeds the bound by more than rounding and the order of
        # the arithmetic can move it (not for a benchmark volume's correction)
        sure = _cut(_above(bounds[-1]), scale, up=True) if kind in ("gt", "ge") and not corrects else math.inf
        thresholds.append(_Threshold(rule, process if has_o2 else None, corrects, sure,
                                     21.0 - reference if reference is not None else None))
        if corrects:
            if kind == "range" or reference is not None:
                return None  # not met in the rule packs; the exact path covers it
            assert rule.benchmark is not None and rule.benchmark_unit is not None
            product_unit, to_m3 = BENCHMARK_UNITS[rule.benchmark_unit]
            per_unit = {(category, product_unit): (y, to_m3) for category, y in rule.benchmark.items() if y is not None}
            benchmarks.append(_BenchmarkCut(_cut(_below(bounds[-1]), scale), per_unit,
                                            None if rule.industries is None else frozenset(rule.industries)))
            continue
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
    return Gate(high, low, o2_free, o2_high, pollutant, unit, tuple(thresholds), tuple(benchmarks))


def _below(bound: float) -> float:
    return bound - _MARGIN - abs(bound) * _MARGIN


def _above(bound: float) -> float:
    return bound + _MARGIN + abs(bound) * _MARGIN


def _cut(bound: float, scale: float, up: bool = False) -> float:
    """The raw value matching a judged bound, moved outwards so the cut stays conservative."""
    raw = bound / scale
    return raw + abs(raw) * _MARGIN + _TINY if up else raw - abs(raw) * _MARGIN - _TINY
