"""The judge: which rules apply to a reading or a fact, the corrected value, and the findings.

Applicability (industry, process, point, destination, equipment kind, the dates a rule is in
force for new and existing facilities) and the arithmetic (unit → the limit's unit, O₂
reference correction, benchmark water volume, rounding to `JUDGED_DIGITS`, the threshold
test) are written once: here and in engine/judge/thresholds.py, whose gates for the batch
path are built from the same functions, so a reading the fast path lets through is one this judge would pass.

A valid reading first takes a `route`: a flag other than N is counted and never judged, a
minute value goes to the hourly window (and is judged as an instant value), anything else is
judged at its own period.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from engine.judge.thresholds import Gate, benchmark_corrected, benchmark_ratio, build_gate, corrected, exceeds
from engine.judge.index import RuleIndex
from engine.judge.rulepacks import Rule
from engine.normalise.readings import Reading
from engine.plugins import Metric
from engine.records import DataGap, Finding
from engine.units import UnitError, round_judged, to_canonical

UNAVAILABLE, WINDOW, JUDGE = "unavailable", "window", "judge"

Registration = Callable[[str], Mapping[str, Any] | None]
ParcelLookup = Callable[[str, str], Mapping[str, Any] | None]


def _no_parcel(holder: str, parcel: str) -> None:
    return None


def route(event_type: str, period: str, flag: str) -> str:
    """What becomes of a valid reading before any rule looks at it: UNAVAILABLE (a flag other than
    N: counted, never judged), WINDOW (minute values go to hourly means; hourly wastewater values
    to daily means), or JUDGE (at its own period)."""
    if flag != "N":
        return UNAVAILABLE
    if period == "minute" or (period == "hour" and event_type == "discharge.measured"):
        return WINDOW
    return JUDGE


_NOT_FINITE = "is not a finite number"


def not_finite(value: Any) -> bool:
    """A float that is ±inf or NaN: a measure or limit whose figures leave the float range."""
    return isinstance(value, float) and not math.isfinite(value)


def could_hold(rule: Rule, scope: dict[str, Any]) -> bool:
    """Whether `rule`'s condition holds for a judged value at either end of the number line: the
    rule would judge the event (its other terms hold), had its measure been a finite number."""
    for end in (math.inf, -math.inf):
        scope["judged"] = scope["measured"] = end
        if rule.condition(scope) is True:
            return True
    return False


def _round(value: float | None) -> float | None:
    return None if value is None else round_judged(value)


class MetricView(Mapping[str, Any]):
    """`metric.NAME` in expressions: computed on first use for the current event only."""

    __slots__ = ("_metrics", "_data", "_type", "_cache")

    def __init__(self, metrics: Mapping[str, Metric], event_type: str, data: Mapping[str, Any]) -> None:
        self._metrics, self._type, self._data, self._cache = metrics, event_type, data, {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._cache:
            metric = self._metrics.get(name)
            if metric is None or metric.event_type != self._type:
                self._cache[name] = None
            else:
                value = metric.compute(self._data)
                self._cache[name] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        return self._cache[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._metrics))

    def __len__(self) -> int:
        return len(self._metrics)


class Judge:
    """Rules → findings for readings and facts; immutable after construction (shareable).

    `registration(code)` gives an enterprise's registration (the engine's `Enterprises.get`);
    `parcels(holder, parcel)` a parcel's record (the engine's `Parcels.get`), read by rules as
    `parcel.*` for events whose data names a `parcel`.
    """

    def __init__(self, rules: Iterable[Rule], metrics: Iterable[Metric], ruleset: str,
                 registration: Registration, parcels: ParcelLookup = _no_parcel) -> None:
        self.rules = tuple(rules)
        self.index = RuleIndex(self.rules)
        self.metrics = {m.name: m for m in metrics}
        self.ruleset = ruleset
        self._registration = registration
        self._parcels = parcels

    # ---- readings -----------------------------------------------------------------------

    def reading(self, reading: Reading, period: str, minimum: int | None = None) -> list[Finding | DataGap]:
        """Findings of one reading (or mean) judged at `period`, in rule-id order, and a data gap
        for each applicable rule that cannot judge it: the limit is referenced to O2 and no O2
        was measured; a daily benchmark-volume correction lacks its inputs (unless the measured
        value already exceeds, which the correction could only raise); a mean of fewer than
        `minimum` values."""
        registration = self._registration(reading.enterprise)
        industry = registration.get("industry") if registration is not None else None
        eia = registration.get("eia_approved_on") if registration is not None else None
        day = reading.time[:10]
        out: list[Finding | DataGap] = []
        for rule in self.index.for_reading(reading.type, reading.pollutant, reading.process, reading.point,
                                           reading.destination, period):
            if rule.industries is not None and industry not in rule.industries:
                continue
            if rule.windows is not None and not rule.applies_on(day, eia):
                continue
            measured, judged, factor, reference = corrected(rule, reading.value, reading.unit, reading.o2, reading.process)
            if minimum is not None and reading.count < minimum:
                out.append(self.gap(rule, reading, period, "too_few_values",
                                    f"a {period} mean of {reading.count} valid value(s); the authority's minimum is {minimum}",
                                    measured))
                continue
            if reference is not None and factor is None:
                out.append(self.gap(rule, reading, period, "o2_missing",
                                    f"the limit is referenced to {reference:g} % O2 for process {reading.process}; "
                                    "the reading carries no O2 (o2_percent)", measured))
                continue
            ratio, note = None, {}
            if rule.benchmark is not None and period == "day":  # the standards' accounting period is one working day
                ratio, note = benchmark_ratio(rule, reading.data)
            if ratio is not None:
                raised = benchmark_corrected(judged, ratio)
                if raised is None:  # beyond the float range: the correction cannot be made
                    ratio, note = None, {"applied": False, "reason": f"the value times the volume ratio {ratio:g} "
                                                                     "is beyond the float range"}
                else:
                    judged = raised
            rounded = _round(judged)
            if rule.threshold is not None:  # specialised: the common `judged > limit` family, no scope built
                fire = exceeds(rule.threshold, rounded)  # type: ignore[arg-type]
            else:
                event = {"type": reading.type, "time": reading.time, "subject": reading.enterprise}
                scope = self.scope(rule, event, reading.data, registration, rounded, _round(measured))
                if rule.measure is not None:
                    value = rule.measure(scope)
                    if not_finite(value):
                        if could_hold(rule, scope):
                            out.append(self.gap(rule, reading, period, "figure_out_of_range",
                                                f"the measure {rule.measure_text} {_NOT_FINITE}", measured))
                        continue
                    scope["judged"] = rounded = _round(value) if value is not None else None
                fire = rule.condition(scope) is True
            if note and ratio is None:  # the correction could not be made; it could only raise the value
                if not fire:
                    out.append(self.gap(rule, reading, period, "benchmark_inputs_missing",
                                        f"the benchmark-volume correction cannot be made: {note['reason']}", measured))
                    continue
                note = {**note, "reason": note["reason"] + "; the measured concentration exceeds the limit already"}
            if not fire:
                continue
            corrections: list[dict[str, Any]] = []
            if reading.raw_unit != rule.unit:
                corrections.append({"kind": "unit", "from": reading.raw_unit, "to": rule.unit})
            if reference is not None:
                corrections.append({"kind": "o2", "reference": reference, "measured": reading.o2, "factor": _round(factor)})
            if note:
                corrections.append({**note, "kind": "benchmark_volume"})
            # nothing corrected the measured value (the same float) and no measure replaced `rounded`: it is rounded already
            measured_rounded = rounded if judged is measured and rule.threshold is not None else _round(measured)
            out.append(self.finding(rule, reading.enterprise, reading.time, reading.event_ids, reading.pollutant,
                                    {"value": measured_rounded, "unit": rule.unit}, rounded, corrections))
        return out

    def gap(self, rule: Rule, reading: Reading, period: str, reason: str, detail: str, measured: float) -> DataGap:
        """The record of a reading `rule` could not judge (engine/records.py `DataGap`)."""
        return self.data_gap(rule, reading.enterprise, reading.time, reading.event_ids, reading.pollutant, period, reason,
                             detail, {"value": _round(measured), "unit": rule.unit})

    def data_gap(self, rule: Rule, enterprise: str, time: str, events: tuple[str, ...], pollutant: str | None, period: str,
                 reason: str, detail: str, measured: Mapping[str, Any] | None, parcel: str | None = None) -> DataGap:
        """A data-gap record (engine/records.py `DataGap`): what `rule` could not judge, citing its basis."""
        key = "|".join((rule.id, str(rule.version), enterprise, time, ",".join(events), reason))
        return DataGap(
            id="G-" + hashlib.sha256(key.encode()).hexdigest()[:24], rule=rule.id, rule_version=rule.version,
            plugin=rule.plugin, enterprise=enterprise, time=time, event=events, pollutant=pollutant, period=period,
            reason=reason, detail=detail, measured=measured, basis=rule.basis, ruleset=self.ruleset, parcel=parcel,
        )

    # ---- facts ----------------------------------------------------------------------------

    def fact(self, event: Mapping[str, Any]) -> list[Finding | DataGap]:
        """Findings of an event that is not a reading (registration, equipment, energy, a parcel...),
        in rule-id order, and a data gap (`figure_missing`, period `none`) for each applicable rule
        whose `data_gap.when` holds: the event lacks a figure the rule must judge (e.g. a
        standard-land inspection without an indicator the parcel committed to), so it is not judged."""
        subject, data = event["subject"], event["data"]
        registration = self._registration(subject)
        day = event["time"][:10]
        parcel_id = data.get("parcel") if isinstance(data.get("parcel"), str) else None
        parcel = self._parcels(subject, parcel_id) if parcel_id is not None else None
        findings: list[Finding | DataGap] = []
        for rule in self.index.candidates(event["type"], None):
            if not applicable(rule, registration, day, kind=data.get("kind")):
                continue
            scope = self.scope(rule, event, data, registration, None, None, parcel)
            if rule.data_gap is not None and rule.data_gap.when(scope) is True:
                findings.append(self.data_gap(rule, subject, event["time"], (event["id"],), None, "none", "figure_missing",
                                              rule.data_gap.detail(scope), None, parcel_id))
                continue
            if rule.measure is not None:
                value = rule.measure(scope)
                if not_finite(value):
                    if could_hold(rule, scope):
                        findings.append(self.out_of_range(rule, event, "the measure " + str(rule.measure_text), parcel_id))
                    continue
                scope["judged"] = scope["measured"] = _round(value) if value is not None else None
            if rule.condition(scope) is True:
                judged = scope["judged"]
                measured = None if judged is None else {"value": judged, "unit": rule.unit}
                limit = None
                if rule.limit_from is not None:
                    bound = rule.limit_from[2](scope)
                    if bound is None or not_finite(bound):
                        findings.append(self.out_of_range(rule, event, "the limit " + rule.limit_from[1], parcel_id,
                                                          missing=bound is None))
                        continue
                    limit = {rule.limit_from[0]: _round(bound) if isinstance(bound, (int, float)) else bound, "unit": rule.unit}
                findings.append(self.finding(rule, subject, event["time"], (event["id"],), None, measured, judged, [],
                                             limit=limit, parcel=parcel_id))
        return findings

    def out_of_range(self, rule: Rule, event: Mapping[str, Any], what: str, parcel: str | None,
                     missing: bool = False) -> DataGap:
        """The data gap of a fact whose figures give `what` (the rule's measure or limit) as no
        finite number (`figure_out_of_range`: a figure so large, or a divisor so small, that the
        result leaves the float range), or a limit as no number at all (`figure_missing`). The rule
        cannot judge it: a finding must cite numbers."""
        reason, words = ("figure_missing", "gives no number") if missing else ("figure_out_of_range", _NOT_FINITE)
        return self.data_gap(rule, event["subject"], event["time"], (event["id"],), None, "none", reason,
                             f"{what} {words} for this event's figures", None, parcel)

    def scope(self, rule: Rule, event: Mapping[str, Any], data: Mapping[str, Any],
              registration: Mapping[str, Any] | None, judged: Any, measured: Any,
              parcel: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The names a rule's condition and measure read (also rebuilt by `rectify explain`)."""
        enterprise: Mapping[str, Any] | None = registration
        if rule.uses_facility and registration is not None:
            enterprise = {**registration, "facility": rule.facility(registration.get("eia_approved_on"))}
        scope: dict[str, Any] = dict(rule.parameters)
        scope.update(
            judged=judged, measured=measured, data=data, event=event, enterprise=enterprise,
            params=rule.pack_parameters, metric=MetricView(self.metrics, event.get("type", ""), data), parcel=parcel,
        )
        return scope

    def finding(self, rule: Rule, enterprise: str, time: str, events: tuple[str, ...], pollutant: str | None,
                measured: Mapping[str, Any] | None, judged: float | None, corrections: list[dict[str, Any]],
                limit: Mapping[str, Any] | None = None, parcel: str | None = None) -> Finding:
        key = "|".join((rule.id, str(rule.version), enterprise, time, ",".join(events)))
        # the fields in their order, by position: keywords make the class call build a dict of them
        # first (one per reading that fires)
        return Finding(
            "F-" + hashlib.sha256(key.encode()).hexdigest()[:24],  # id
            rule.id,  # rule
            rule.version,  # rule_version
            rule.plugin,  # plugin
            enterprise,  # enterprise
            time,  # time
            events,  # event
            pollutant,  # pollutant
            measured,  # measured
            judged,  # judged
            limit if limit is not None else rule.limit,  # limit
            rule.basis,  # basis
            rule.verified,  # verified
            self.ruleset,  # ruleset
            tuple(corrections),  # corrections
            parcel,  # parcel
        )

    # ---- the batch path ---------------------------------------------------------------------

    def era(self, first_day: str, last_day: str) -> tuple[int, int]:
        """The index's `era` of a span of local dates: what a cache of `screen(..., days)` keys on."""
        return self.index.era(first_day, last_day)

    def screen(self, event_type: str, pollutant: str, unit: str, process: str | None, point: str | None,
               destination: str | None, period: str, flag: str, has_o2: bool,
               has_benchmark_inputs: bool = False, days: tuple[str, str] | None = None) -> Gate | str | None:
        """How the batch path may take valid readings of one group (same type, pollutant, unit,
        process, point, destination, period, flag, whether O₂ is given, and whether `volume_m3`
        and one `production` object are, the inputs of a benchmark-volume correction):

        UNAVAILABLE (counted, never judged), a `Gate` (quiet unless the gate lets it through),
        or None (only the per-event path can say: a unit error, the hourly window, a rule
        beyond the specialised thresholds).

        `days`: the first and last local date of the readings (inclusive). A rule in force on
        none of them is left out of the gate, as the judge skips it for each of them; spans of
        one `era` give the same gate."""
        try:
            to_canonical(pollutant, 1.0, unit)
        except UnitError:
            return None  # quarantined on the per-event path, with its message
        path = route(event_type, period, flag)
        if path == UNAVAILABLE:
            return UNAVAILABLE
        if path == WINDOW:
            return None
        rules = self.index.for_reading(event_type, pollutant, process, point, destination, period)
        if days is not None:
            rules = tuple(rule for rule in rules if rule.in_force_between(*days))
        return build_gate(rules, pollutant, unit, process, period, has_o2, has_benchmark_inputs)


def applicable(rule: Rule, registration: Mapping[str, Any] | None, day: str, *, process: str | None = None,
               point: str | None = None, destination: str | None = None, kind: str | None = None) -> bool:
    """Whether a rule applies to an enterprise and event on a local date (its static filters and dates)."""
    if rule.industries is not None and (registration is None or registration.get("industry") not in rule.industries):
        return False
    if rule.processes is not None and process not in rule.processes:
        return False
    if rule.points is not None and point not in rule.points:
        return False
    if rule.destinations is not None and destination not in rule.destinations:
        return False
    if rule.kinds is not None and kind not in rule.kinds:
        return False
    eia = registration.get("eia_approved_on") if registration is not None else None
    return rule.applies_on(day, eia)
