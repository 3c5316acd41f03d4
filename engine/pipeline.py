"""The Engine: one visible pipeline from a raw line to findings.

    parse ─► validate (schemas) ─► normalise (units) ─► de-duplicate (id) ─► clock
          ─► state ─► windows (hourly means) ─► rules (indexed by type and pollutant)
          ─► findings ─► decision layer (lists, routes, deadlines, escalation)

Each stage is a small method with one job. Bad input is data: `run` turns it into a
`Quarantined` record and goes on; `process` (for embedders handing over one event) raises
`InvalidEvent` with the same message. Event time drives everything; the wall clock is
never read. Hooks are called once, in the constructor, never per event.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.contributions import Metric, RulePackSource
from engine.dedupe import DedupeIndex, Seen
from engine.decisions import DecisionLayer, DecisionRule, InactiveDecision, compile_decisions
from engine.evaluation import Evaluation, load_method
from engine.normalise import Reading, epoch_of, reading_from_event
from engine.plugins import PluginSet, load_plugins
from engine.records import Decision, Finding, Quarantined, RunSummary
from engine.rules import READING_TYPES, InactiveRule, Rule, RuleIndex, compile_rules, fingerprint, parse_pack
from engine.units import BENCHMARK_UNITS, UnitError, convert, o2_corrected, round_judged
from engine.validation import EventValidator
from engine.windows import HourlyAverager
from engine.version import __version__

Record = Finding | Decision | Quarantined
BACKENDS = ("compiled", "rete")


class InvalidEvent(ValueError):
    """An event that cannot be processed; the message says which field and what is wrong."""


@dataclass(frozen=True, slots=True)
class InputLine:
    """One line of input and where it came from (for quarantine records)."""

    source: str
    number: int
    text: str | bytes


class _MetricView(Mapping[str, Any]):
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


def _round(value: float | None) -> float | None:
    return None if value is None else round_judged(value)


class Engine:
    """A compliance engine built from the installed plugins.

    `backend` chooses where the decision layer's correlations (count windows, deadlines vs
    the event-time clock, sequences) run: "compiled" (plain Python, the reference) or
    "rete" (durable_rules, through engine.rete). Both give identical output.

    Not thread-safe: one Engine per thread (or per shard of enterprises). Rules, the
    index and the validators are immutable after construction and could be shared.
    """

    def __init__(
        self,
        *,
        plugins: PluginSet | None = None,
        disable: Iterable[str] = (),
        extra_plugins: Iterable[tuple[str, object]] = (),
        options: Iterable[str] = (),
        parameters: Mapping[str, Mapping[str, Any]] | None = None,
        strict: bool = False,
        backend: str = "compiled",
        evaluation_method: str | Path | Mapping[str, Any] | None = None,
        dedupe_horizon_days: float | None = 7.0,
    ) -> None:
        self.plugins = plugins if plugins is not None else load_plugins(disable=disable, extra=extra_plugins)
        self.options = tuple(sorted(set(options)))
        self.parameters = {k: dict(v) for k, v in (parameters or {}).items()}
        packs = [parse_pack(source) for source in self.plugins.rule_packs]
        packs.append(parse_pack(POLICY_PACK))
        self.rules: tuple[Rule, ...]
        self.inactive_rules: tuple[InactiveRule, ...]
        rules, inactive = compile_rules(packs, options=self.options, parameters=self.parameters)
        self.rules, self.inactive_rules = tuple(rules), tuple(inactive)
        self.ruleset = fingerprint(
            packs, [(i.name, i.version) for i in self.plugins.infos], __version__, self.options, self.parameters
        )
        # the mu-average method (engine/policy/mu_average.yaml unless `evaluation_method`); the
        # built-in one is part of the engine version, a custom one is mixed into the fingerprint
        self.method = load_method(evaluation_method, self.parameters)
        if evaluation_method is not None:
            self.ruleset = "sha256:" + hashlib.sha256(f"{self.ruleset}|{self.method.digest}".encode()).hexdigest()
        self.validator = EventValidator(self.plugins.infos, self.plugins.event_schemas)
        self.strict = strict
        self.summary = RunSummary()
        # how the batch path took events: "quiet" in bulk, "exact" one by one (diagnostics, not output)
        self.lane_stats: Counter[str] = Counter()
        self._index = RuleIndex(self.rules)
        self._metrics = {m.name: m for m in self.plugins.metrics}
        self._registry: dict[str, Mapping[str, Any]] = {}
        self._equipment: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._seen = DedupeIndex(dedupe_horizon_days)
        self._hours = HourlyAverager()
        self.decision_rules: tuple[DecisionRule, ...]
        self.inactive_decisions: tuple[InactiveDecision, ...]
        decision_rules, inactive_decisions = compile_decisions(packs, self.parameters)
        self.decision_rules, self.inactive_decisions = tuple(decision_rules), tuple(inactive_decisions)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend = backend
        layer = DecisionLayer
        if backend == "rete":
            from engine.rete_decisions import ReteDecisionLayer

            layer = ReteDecisionLayer
        self._decisions = layer(self.decision_rules, {r.id: r.category for r in self.rules}, self.ruleset,
                                self._registry.get)
        self._decisions.evaluation = self.evaluation = Evaluation(self.method, self.ruleset, self._registry.get)

    # ---- public API -------------------------------------------------------------------

    def process(self, event: Mapping[str, Any]) -> list[Finding | Decision]:
        """Validate and evaluate one event: its findings (in rule-id order), then the decisions.

        Decisions that fell due because this event moved the event-time clock come first.

        Raises InvalidEvent for a bad event (counted as quarantined). A duplicate (same id,
        same content) returns [] and is counted as duplicate.
        """
        self.summary.read += 1
        return self._accept(event)

    def run(self, lines: Iterable[InputLine | str | bytes | Mapping[str, Any]], as_of: str | None = None) -> Iterator[Record]:
        """Stream input (lines of JSON or event mappings); yield findings, decisions, quarantine records.

        Ends with `flush(as_of)` (end of input), so every finding and due decision is yielded.
        """
        for number, item in enumerate(lines, start=1):
            yield from self.process_line(item, number)
        yield from self.flush(as_of)

    def process_line(self, item: InputLine | str | bytes | Mapping[str, Any], number: int = 0) -> list[Record]:
        """One input line (or mapping) to records: findings and decisions, or one quarantine record."""
        source, line = "<input>", number
        if isinstance(item, InputLine):
            source, line, item = item.source, item.number, item.text
        if isinstance(item, Mapping):
            return self.process_parsed(item, item, source, line, from_json=False)
        try:
            event = orjson.loads(item)
        except orjson.JSONDecodeError as exc:
            self.summary.read += 1
            return [self._quarantine(item, source, line, f"invalid JSON: {exc}")]
        return self.process_parsed(event, item, source, line)

    def process_parsed(self, event: Any, raw: Any, source: str, line: int, from_json: bool = True) -> list[Record]:
        """A line already parsed (by the batch path): the stages after parsing."""
        self.summary.read += 1
        try:
            return list(self._accept(event, from_json))
        except InvalidEvent as exc:
            return [self._quarantine(raw, source, line, str(exc), counted=True)]

    def run_batch(self, lines: Iterable[InputLine | str | bytes | Mapping[str, Any]], as_of: str | None = None,
                  batch_size: int = 256, workers: int = 0) -> Iterator[Record]:
        """The batch path for replays and bulk ingestion: same output as `run`, much faster.

        Quiet readings (valid, new, inside every limit) are committed in bulk; everything else
        takes the per-event stages in input order (engine/fastlane.py). `workers` > 0 sorts
        chunks in that many forked processes (engine/parallel.py): more throughput on more
        cores, the same output. Pass `engine.sources.JsonlFiles` to read files in blocks.
        """
        from engine.batch import run_batch

        return run_batch(self, lines, as_of=as_of, batch_size=batch_size, workers=workers)

    def flush(self, as_of: str | None = None) -> list[Finding | Decision]:
        """End of input: close open hourly windows, decide on them, escalate what is due.

        `as_of` (RFC 3339) is the reference time of a replay: orders whose deadline lies
        before it escalate. Without it, the clock is the latest event time seen.
        """
        findings: list[Finding] = []
        for reading in self._hours.flush():
            findings.extend(self._judge(reading, "hour"))
        out: list[Finding | Decision] = list(findings)
        out.extend(self._decisions.on_findings(findings))
        out.extend(self._decisions.finish(epoch_of(as_of) if as_of else None))
        self._count(out)
        self.summary.open_orders = self._decisions.open_orders
        self.summary.orders_closed = self._decisions.orders_closed
        return out

    @property
    def registry(self) -> Mapping[str, Mapping[str, Any]]:
        """The latest registration of every enterprise seen (read-only view)."""
        from types import MappingProxyType

        return MappingProxyType(self._registry)

    def targets(self) -> dict[str, Any]:
        """The programme targets (policy-pack parameters, after the authority's overrides)."""
        document = parse_pack(POLICY_PACK).document
        values = {name: spec["value"] for name, spec in document.get("parameters", {}).items() if name.startswith("target_")}
        values.update({k: v for k, v in self.parameters.get("programme", {}).items() if k.startswith("target_")})
        return values

    def rules_table(self) -> list[dict[str, Any]]:
        """Every loaded rule, active or not, for `rectify rules`."""
        rows = [
            {"id": r.id, "version": r.version, "plugin": r.plugin, "title": r.title_en, "basis": dict(r.basis),
             "verified": r.verified, "active": True, "reason": None}
            for r in self.rules
        ]
        rows += [
            {"id": r.id, "version": r.version, "plugin": r.plugin, "title": r.title, "basis": dict(r.basis),
             "verified": r.verified, "active": False, "reason": r.reason}
            for r in self.inactive_rules
        ]
        return sorted(rows, key=lambda row: row["id"])

    # ---- stages -----------------------------------------------------------------------

    def _quarantine(self, raw: Any, source: str, line: int, error: str, counted: bool = False) -> Quarantined:
        if not counted:
            self.summary.quarantined += 1
        if isinstance(raw, bytes):
            text = raw.decode("utf-8", errors="replace")
        elif isinstance(raw, str):
            text = raw
        else:
            text = orjson.dumps(raw, default=str).decode()
        return Quarantined(line=line, source=source, raw=text.rstrip("\r\n"), error=error)

    def _accept(self, event: Any, from_json: bool = False) -> list[Finding | Decision]:
        problem = self.validator.problem(event, from_json)
        if problem is None and not self.validator.known(event["type"]) and self.strict:
            problem = f"type: unknown event type {event['type']!r} (strict mode)"
        reading: Reading | None = None
        if problem is None and event["type"] in READING_TYPES:
            try:
                reading = reading_from_event(event)
            except UnitError as exc:
                problem = f"data.unit: {exc}"
        if problem is not None:
            self.summary.quarantined += 1
            raise InvalidEvent(problem)
        digest = hashlib.blake2b(orjson.dumps(event, option=orjson.OPT_SORT_KEYS), digest_size=12).digest()
        epoch = reading.epoch if reading is not None else epoch_of(event["time"])
        if self._seen.beyond_horizon(epoch):
            self.summary.beyond_dedupe_horizon += 1
        seen = self._seen.check(event["id"], digest, epoch)
        if seen is Seen.DUPLICATE:
            self.summary.duplicate += 1
            return []
        if seen is Seen.CONFLICT:
            self.summary.quarantined += 1
            raise InvalidEvent(f"id: {event['id']!r} was already used by a different event (ids are idempotency keys)")
        self.summary.processed += 1
        out: list[Finding | Decision] = list(self._decisions.advance(epoch))
        findings = self._apply(event, reading)
        out.extend(findings)
        out.extend(self._decisions.on_event(event, epoch, findings))
        self._count(out)
        return out

    def _count(self, records: list[Finding | Decision]) -> None:
        for record in records:
            if isinstance(record, Finding):
                self.summary.findings[record.plugin] += 1
            else:
                self.summary.decisions[f"{record.list or 'unlisted'}/{record.action}"] += 1

    def _apply(self, event: Mapping[str, Any], reading: Reading | None) -> list[Finding]:
        event_type, subject, data = event["type"], event["subject"], event["data"]
        if event_type == "enterprise.registered":
            self._registry[subject] = data
        elif subject not in self._registry and event_type != "evaluation.closed":  # a close is the authority's
            self.summary.unregistered += 1
        if event_type == "equipment.declared":
            self._equipment.setdefault(subject, {})[data["equipment_id"]] = data
        if not self.validator.known(event_type):
            self.summary.unknown_types[event_type] += 1
            return []
        if reading is None:
            return self._evaluate_fact(event)
        if reading.flag != "N":
            self.summary.unavailable += 1
            return []
        if reading.period == "minute":
            closed, late = self._hours.add(reading)
            if late:
                self.summary.late += 1
            findings = [f for hour in closed for f in self._judge(hour, "hour")]
            return findings + self._judge(reading, "instant")
        return self._judge(reading, reading.period)

    def _applicable(self, rule: Rule, registration: Mapping[str, Any] | None, day: str, *, process: str | None = None,
                    point: str | None = None, destination: str | None = None, kind: str | None = None) -> bool:
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

    def _scope(self, rule: Rule, event: Mapping[str, Any], data: Mapping[str, Any],
               registration: Mapping[str, Any] | None, judged: Any, measured: Any) -> dict[str, Any]:
        enterprise: Mapping[str, Any] | None = registration
        if rule.uses_facility and registration is not None:
            enterprise = {**registration, "facility": rule.facility(registration.get("eia_approved_on"))}
        scope: dict[str, Any] = dict(rule.parameters)
        scope.update(
            judged=judged, measured=measured, data=data, event=event, enterprise=enterprise,
            params=rule.pack_parameters, metric=_MetricView(self._metrics, event.get("type", ""), data),
        )
        return scope

    def _judge(self, reading: Reading, period: str) -> list[Finding]:
        registration = self._registry.get(reading.enterprise)
        industry = registration.get("industry") if registration is not None else None
        eia = registration.get("eia_approved_on") if registration is not None else None
        day = reading.time[:10]
        findings: list[Finding] = []
        for rule in self._index.for_reading(reading.type, reading.pollutant, reading.process, reading.point,
                                            reading.destination, period):
            if rule.industries is not None and industry not in rule.industries:
                continue
            if rule.windows is not None and not rule.applies_on(day, eia):
                continue
            assert rule.unit is not None
            measured = convert(reading.value, reading.unit, rule.unit)
            reference = rule.o2_reference.get(reading.process or "")
            judged, factor = o2_corrected(measured, reading.o2, reference)
            ratio, note = (None, {}) if rule.benchmark is None else _benchmark_ratio(rule, reading.data)
            if ratio is not None and ratio > 1:
                judged *= ratio
            rounded = _round(judged)
            threshold = rule.threshold
            if threshold is not None:  # specialised: the common `judged > limit` family, no scope built
                kind = threshold[0]
                fire = (rounded > threshold[1]) if kind == "gt" else (rounded >= threshold[1]) if kind == "ge" else (
                    rounded < threshold[1] or rounded > threshold[2])
            else:
                event = {"type": reading.type, "time": reading.time, "subject": reading.enterprise}
                scope = self._scope(rule, event, reading.data, registration, rounded, _round(measured))
                if rule.measure is not None:
                    value = rule.measure(scope)
                    scope["judged"] = rounded = _round(value) if value is not None else None
                fire = rule.condition(scope) is True
            if not fire:
                continue
            corrections: list[dict[str, Any]] = []
            if reading.raw_unit != rule.unit:
                corrections.append({"kind": "unit", "from": reading.raw_unit, "to": rule.unit})
            if reference is not None:
                if factor is None:
                    corrections.append({"kind": "o2", "reference": reference, "measured": None, "applied": False})
                else:
                    corrections.append({"kind": "o2", "reference": reference, "measured": reading.o2, "factor": _round(factor)})
            if ratio is not None or note.get("reason"):
                corrections.append({**note, "kind": "benchmark_volume"})
            findings.append(self._finding(rule, reading.enterprise, reading.time, reading.event_ids, reading.pollutant,
                                          {"value": _round(measured), "unit": rule.unit}, rounded, corrections))
        return findings

    def _evaluate_fact(self, event: Mapping[str, Any]) -> list[Finding]:
        subject, data = event["subject"], event["data"]
        registration = self._registry.get(subject)
        day = event["time"][:10]
        findings: list[Finding] = []
        for rule in self._index.candidates(event["type"], None):
            if not self._applicable(rule, registration, day, kind=data.get("kind")):
                continue
            scope = self._scope(rule, event, data, registration, None, None)
            if rule.measure is not None:
                value = rule.measure(scope)
                scope["judged"] = scope["measured"] = _round(value) if value is not None else None
            if rule.condition(scope) is True:
                judged = scope["judged"]
                measured = None if judged is None else {"value": judged, "unit": rule.unit}
                findings.append(self._finding(rule, subject, event["time"], (event["id"],), None, measured, judged, []))
        return findings

    def _finding(self, rule: Rule, enterprise: str, time: str, events: tuple[str, ...], pollutant: str | None,
                 measured: Mapping[str, Any] | None, judged: float | None, corrections: list[dict[str, Any]]) -> Finding:
        key = "|".join((rule.id, str(rule.version), enterprise, time, ",".join(events)))
        return Finding(
            id="F-" + hashlib.sha256(key.encode()).hexdigest()[:24],
            rule=rule.id,
            rule_version=rule.version,
            plugin=rule.plugin,
            enterprise=enterprise,
            time=time,
            event=events,
            pollutant=pollutant,
            measured=measured,
            judged=judged,
            limit=rule.limit,
            basis=rule.basis,
            verified=rule.verified,
            ruleset=self.ruleset,
            corrections=tuple(corrections),
        )


def _benchmark_ratio(rule: Rule, data: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """GB 4287 / GB 21900: actual volume ÷ benchmark volume for the production, when data carry both."""
    volume, production = data.get("volume_m3"), data.get("production")
    if volume is None or production is None:
        return None, {}
    assert rule.benchmark is not None and rule.benchmark_unit is not None
    category = production.get("category")
    per_unit = rule.benchmark.get(category) if category is not None else None
    product_unit, to_m3 = BENCHMARK_UNITS[rule.benchmark_unit]
    if per_unit is None:
        return None, {"applied": False, "reason": f"no benchmark volume for category {category!r}"}
    if production.get("unit") != product_unit:
        return None, {"applied": False, "reason": f"production unit {production.get('unit')!r}, benchmark is per {product_unit}"}
    benchmark_m3 = production["quantity"] * per_unit * to_m3
    if benchmark_m3 <= 0:
        return None, {"applied": False, "reason": "no production in the accounting period"}
    ratio = volume / benchmark_m3
    return ratio, {"applied": ratio > 1, "actual_m3": _round(volume), "benchmark_m3": _round(benchmark_m3), "ratio": _round(ratio)}


POLICY_PACK = RulePackSource.from_package("programme", "engine.policy", "programme.yaml")
