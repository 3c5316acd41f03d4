"""The Engine: the stages composed into one visible pipeline, from a raw line to decisions.

    prepare: parse ─► validate (validate/) ─► normalise (normalise/readings) ─► digest
    admit:   de-duplicate by id (normalise/dedupe)
    accept:  clock (normalise/clock) ─► enterprises, parcels ─► windows ─► judge (judge/) ─► decide (decide/)

Each stage is an object the Engine is composed of and that owns its state (`state()` /
`restore()`); the stage API (`prepare`, `admit`, `accept`, `flush`'s parts) can be called one
step at a time, which is how distributed replay (engine/distributed.py) and the batch path
(engine/fast/) use it. Bad input is data: `run` turns it into a `Quarantined` record and goes
on; `process` (for embedders handing over one event) raises `InvalidEvent` with the same
message. Event time drives everything; the wall clock is never read. Hooks are called once,
in the constructor, never per event.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from engine.decide import (
    ROUTE_DEADLINES,
    DecisionLayer,
    DecisionRule,
    Detector,
    Evaluation,
    InactiveDecision,
    compile_decisions,
    load_method,
    programme_parameters,
)
from engine.fast import CHUNK_LINES, batches
from engine.ingest import json_problem, may_repeat_keys, overlong_parts, repeated_key
from engine.ingest.archive import rebuild
from engine.judge import JUDGE, READING_TYPES, UNAVAILABLE, InactiveRule, Judge, Rule, compile_rules, fingerprint, \
    cached_by_parameters, parse_pack, route
from engine.normalise import LAND_TYPES, DedupeIndex, Enterprises, EventClock, IdColumns, MeanWindows, Parcels, \
    Reading, Seen, Verdict, canonical_json, digest_of, epoch_of, reading_from_event, stream_of
from engine.plugins import PluginInfo, PluginSet, RulePackSource, load_plugins
from engine.records import DataGap, Decision, Finding, InputLine, InvalidEvent, Quarantined, Record, RunSummary
from engine.state import CheckpointError
from engine.units import UnitError
from engine.validate import EventValidator, first_unwritable, wide_integer, without_surrogates
from engine.version import __version__

BACKENDS = ("compiled", "rete")
# 5: content digests are XXH3-64 ints and the dedupe index keeps its arrival order (was blake2b-96);
#    parcels are engine state; the guarded clock
# 6: the dedupe index purges in steps of half the horizon (its `purged_at` is a step)
SNAPSHOT_FORMAT = 6
POLICY_PACK = RulePackSource.from_package("programme", "engine.decide.policy", "programme.yaml")

Line = InputLine | str | bytes | Mapping[str, Any] | Quarantined  # a source's rejects pass through, counted


@dataclass(slots=True)
class Prepared:
    """A valid event ready to be admitted: what the stages after de-duplication need.

    `raw`, `source` and `line` say where it came from (for a quarantine record, should its id
    turn out to be taken by another event)."""

    event: Mapping[str, Any]
    id: str
    reading: Reading | None
    digest: int
    epoch: float
    raw: Any = None
    source: str = "<input>"
    line: int = 0


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """What an engine compiles from its rule packs, plugins, options and parameters. Immutable:
    the engines a process builds alike share one (`_compiled`)."""

    rules: tuple[Rule, ...]
    inactive_rules: tuple[InactiveRule, ...]
    ruleset: str  # the fingerprint (before a custom evaluation method is mixed in)
    decision_rules: tuple[DecisionRule, ...]
    inactive_decisions: tuple[InactiveDecision, ...]
    policy: Mapping[str, Any]  # the programme policy's parameter values


@cached_by_parameters
def _compiled(sources: tuple[RulePackSource, ...], infos: tuple[PluginInfo, ...], options: tuple[str, ...],
              parameters: Mapping[str, Mapping[str, Any]]) -> CompiledRules:
    """Compiled by content: the pack texts, the plugins' names and versions, the options and the
    parameters."""
    packs = [parse_pack(source) for source in sources]
    rules, inactive = compile_rules(packs, options=options, parameters=parameters)
    decision_rules, inactive_decisions = compile_decisions(packs, parameters)
    return CompiledRules(tuple(rules), tuple(inactive),
                         fingerprint(packs, [(i.name, i.version) for i in infos], __version__, options, parameters),
                         tuple(decision_rules), tuple(inactive_decisions),
                         MappingProxyType(programme_parameters(packs, parameters)))


class Engine:
    """A compliance engine built from the installed plugins.

    `backend` chooses where the decision layer's correlations (count windows, deadlines vs
    the event-time clock, sequences) run: "compiled" (plain Python, the reference) or
    "rete" (durable_rules, through engine/decide/rete_detector.py). Both give identical output.

    Stages may be handed in: `validator` (an `EventValidator` built for the same plugins, e.g.
    shared by several engines) and `dedupe` (a `DedupeIndex`).

    `clock_lead_days` and `clock_quorum` guard the event-time clock (engine/normalise/clock.py):
    an event more than `clock_lead_days` ahead of it moves it only when events of
    `clock_quorum` enterprises agree; `clock_lead_days=None` turns the guard off.

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
        validator: EventValidator | None = None,
        dedupe: DedupeIndex | None = None,
        clock_lead_days: float | None = 7.0,
        clock_quorum: int = 2,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.plugins = plugins if plugins is not None else load_plugins(disable=disable, extra=extra_plugins)
        self.options = tuple(sorted(set(options)))
        self.parameters = {k: dict(v) for k, v in (parameters or {}).items()}
        self.strict = strict
        self.backend = backend
        compiled = _compiled((*self.plugins.rule_packs, POLICY_PACK), tuple(self.plugins.infos), self.options,
                             self.parameters)
        self.rules: tuple[Rule, ...] = compiled.rules
        self.inactive_rules: tuple[InactiveRule, ...] = compiled.inactive_rules
        self.ruleset = compiled.ruleset
        # the mu-average method (engine/decide/policy/mu_average.yaml unless `evaluation_method`); the
        # built-in one is part of the engine version, a custom one is mixed into the fingerprint
        self.method = load_method(evaluation_method, self.parameters)
        if evaluation_method is not None:
            self.ruleset = "sha256:" + hashlib.sha256(f"{self.ruleset}|{self.method.digest}".encode()).hexdigest()
        self.decision_rules: tuple[DecisionRule, ...] = compiled.decision_rules
        self.inactive_decisions: tuple[InactiveDecision, ...] = compiled.inactive_decisions
        policy = compiled.policy
        self.minimums = {"hour": policy.get("min_valid_values_per_hour"), "day": policy.get("min_valid_hours_per_day")}
        deadlines = {route: policy[name] for route, name in ROUTE_DEADLINES.items() if policy.get(name) is not None}

        # the stages, in the order data flows
        self.validator = validator if validator is not None else EventValidator(self.plugins.infos, self.plugins.event_schemas)
        self.dedupe = dedupe if dedupe is not None else DedupeIndex(dedupe_horizon_days)
        self.clock = EventClock(clock_lead_days, clock_quorum)
        self.enterprises = Enterprises()
        self.parcels = Parcels()
        self.hours = MeanWindows("hour")
        self.days = MeanWindows("day")
        self.judge = Judge(self.rules, self.plugins.metrics, self.ruleset, self.enterprises.get, self.parcels.get)
        self.evaluation = Evaluation(self.method, self.ruleset, self.enterprises.get, deadlines)
        self.decisions = DecisionLayer(self.decision_rules, {r.id: r.category for r in self.rules}, self.ruleset,
                                       self.enterprises.get, self.evaluation, self._detector(), parcels=self.parcels)
        self.summary = RunSummary()
        # how the batch path took events: "quiet" in bulk, "exact" one by one (diagnostics, not output)
        self.lane_stats: Counter[str] = Counter()

    def _detector(self) -> Detector | None:
        if self.backend != "rete":
            return None
        from engine.decide.rete_detector import ReteDetector  # durable_rules is imported only when asked for

        return ReteDetector([r for r in self.decision_rules if not r.on_registration])

    # ---- running ------------------------------------------------------------------------

    def process(self, event: Mapping[str, Any]) -> list[Finding | Decision | DataGap]:
        """Validate and evaluate one event: its findings and data gaps (in rule-id order), then the decisions.

        Decisions that fell due because this event moved the event-time clock come first.

        Raises InvalidEvent for a bad event (counted as quarantined). A duplicate (same id,
        same content) returns [] and is counted as duplicate. The engine keeps no reference to
        `event`: the caller may refill the same mapping for its next event.
        """
        self.summary.read += 1
        try:
            prepared = self.prepare(event, False)
        except InvalidEvent:
            self.summary.quarantined += 1
            raise
        return self.accept(prepared, self.dedupe.verdict(prepared.id, prepared.digest, prepared.epoch))

    def run(self, lines: Iterable[Line], as_of: str | None = None) -> Iterator[Record]:
        """Stream input (lines of JSON or event mappings) one event at a time; yield findings,
        decisions and quarantine records. The reference path: `run_batch` gives the same.

        Ends with `flush(as_of)` (end of input), so every finding and due decision is yielded.
        """
        for number, item in enumerate(lines, start=1):
            yield from self.process_line(item, number)
        yield from self.flush(as_of)

    def run_batch(self, lines: Iterable[Line], as_of: str | None = None, batch_size: int = CHUNK_LINES,
                  workers: int = 0) -> Iterator[Record]:
        """The batch path for replays and bulk ingestion: same output as `run`, much faster.

        Quiet readings (valid, new, inside every limit) are committed in bulk; everything else
        takes the per-event stages in input order (engine/fast/). `workers` > 0 sorts chunks
        in that many forked processes: more throughput on more cores, the same output. Pass
        `engine.ingest.JsonlFiles` to read files in blocks.
        """
        for _, records in batches(self, lines, batch_size=batch_size, workers=workers):
            yield from records
        yield from self.flush(as_of)

    def process_line(self, item: Line, number: int = 0) -> list[Record]:
        """One input line (or mapping) to records: findings and decisions, or one quarantine record."""
        if isinstance(item, Quarantined):  # rejected by its source (e.g. a bad HJ 212 packet)
            return self.process_prepared(item)
        source, line = "<input>", number
        if isinstance(item, InputLine):
            source, line, item = item.source, item.number, item.text
        if isinstance(item, Mapping):
            return self.process_parsed(item, item, source, line, from_json=False)
        return self.process_prepared(self.prepare_line(item, source, line))

    def prepare_line(self, text: str | bytes, source: str = "<input>", line: int = 0) -> Prepared | Quarantined:
        """Parse, validate and normalise one raw line: `Prepared`, or the quarantine record a run
        writes for it. Reads no state and changes none (the archive writer validates this way)."""
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            if isinstance(text, str) and without_surrogates(text) is not text:  # a lone surrogate: read as
                return self.prepare_line(text.encode("utf-8", "surrogatepass"), source, line)  # the batch path does
            return quarantined(text, source, line, json_problem(text, exc))
        try:
            return self.prepare(event, True, text, source, line)
        except InvalidEvent as exc:
            return quarantined(text, source, line, str(exc))

    def prepare_archived(self, row: Mapping[str, Any]) -> Prepared | Quarantined:
        """`prepare_line` for a row of an archive this engine trusts (the same validation
        fingerprint, engine/ingest/archive.py), whose valid rows were prepared in full when they
        were written. A typed row is rebuilt from its columns and stands for its line (orjson's
        spelling of it, checked when written), with the content digest made then. A raw row is
        parsed and its digest made again: when it is the one made then, the event is the one
        validated then and is not validated again (its bytes are still screened for repeated
        keys); else the line changed after it was written and is prepared in full, as is a row
        that was not valid (quarantined as a replay of the log quarantines it)."""
        raw, source, line = row["raw"], row["file"], row["line"]
        if raw is None:
            event = rebuild(row)
            try:
                return self.prepare(event, True, event, source, line, valid=True, digest=row["digest"])
            except InvalidEvent as exc:
                return quarantined(event, source, line, str(exc))
        if row["valid"]:
            parsed: Any = None
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
            if parsed is not None and digest_of(canonical := canonical_json(parsed)) == row["digest"]:
                try:
                    return self.prepare(parsed, True, raw, source, line, valid=True, canonical=canonical)
                except InvalidEvent as exc:  # repeated keys: a line changed after it was written
                    return quarantined(raw, source, line, str(exc))
        return self.prepare_line(raw, source, line)

    def prepare_checked(self, event: Any, text: str | bytes, source: str = "<input>", line: int = 0) -> Prepared | Quarantined:
        """`prepare_line` for a line parsed already and proven valid by a shape plan (units are still checked)."""
        try:
            return self.prepare(event, True, text, source, line, valid=True)
        except InvalidEvent as exc:
            return quarantined(text, source, line, str(exc))

    @property
    def validation(self) -> str:
        """What `prepare` accepts, as a fingerprint: the engine version, strict mode and the
        composed schemas. An archive validated by an engine with the same fingerprint is trusted."""
        document = {"rectify": __version__, "strict": self.strict, "schemas": self.validator.schemas}
        return "sha256:" + hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def process_parsed(self, event: Any, raw: Any, source: str, line: int, from_json: bool = True,
                       valid: bool = False, digest: int | None = None) -> list[Record]:
        """A line already parsed (by the batch path): the stages after parsing (`valid`, `digest`:
        see `prepare`)."""
        try:
            prepared: Prepared | Quarantined = self.prepare(event, from_json, raw, source, line, valid, digest)
        except InvalidEvent as exc:
            prepared = quarantined(raw, source, line, str(exc))
        return self.process_prepared(prepared)

    def process_prepared(self, prepared: Prepared | Quarantined, verdict: Verdict | None = None) -> list[Record]:
        """A prepared line (or its quarantine record) to records, counted. `verdict`: the
        de-duplication verdict when someone else decided it (distributed replay), else `admit`'s."""
        self.summary.read += 1
        if isinstance(prepared, Quarantined):
            self.summary.quarantined += 1
            return [prepared]
        try:
            if verdict is None:
                verdict = self.dedupe.verdict(prepared.id, prepared.digest, prepared.epoch)
            return self.accept(prepared, verdict)
        except InvalidEvent as exc:
            return [quarantined(prepared.raw, prepared.source, prepared.line, str(exc))]

    # ---- the stages -----------------------------------------------------------------------

    def prepare(self, event: Any, from_json: bool = True, raw: Any = None, source: str = "<input>",
                line: int = 0, valid: bool = False, digest: int | None = None,
                canonical: bytes | None = None) -> Prepared:
        """Validate and normalise one parsed event; InvalidEvent says what is wrong and where.

        Reads no state and changes none (nothing is counted): any process may prepare.
        `from_json`: parsed by orjson (which refuses NaN and infinities itself). `valid`: the
        batch path has already checked it against the same schemas (a shape plan, or an
        archive validated by an engine with the same `validation` fingerprint). `digest`: its
        content digest, made when it was checked (an archive's row; only with `valid` and a
        `raw` that is not text, which would be checked for repeated keys against the sorted-key JSON).
        `canonical`: the event's `canonical_json`, when the caller made it already.
        """
        if digest is not None and (not valid or isinstance(raw, (str, bytes))):
            raise ValueError("prepare: a digest is taken only for a valid event that is not text")
        problem = None if valid else self.validator.problem(event, from_json)
        if problem is None and not self.validator.known(event["type"]) and self.strict:
            problem = f"type: unknown event type {event['type']!r} (strict mode)"
        reading: Reading | None = None
        if problem is None and event["type"] in READING_TYPES:
            try:
                reading = reading_from_event(event)
            except UnitError as exc:
                problem = f"data.unit: {exc}"
        if problem is not None or digest is not None:
            canonical = b""
        elif canonical is None:
            try:
                canonical = canonical_json(event)
            except TypeError as exc:  # orjson's JSONEncodeError: a mapping (never parsed JSON) no JSON text holds
                problem = first_unwritable(event) or f"(event): not writable as JSON ({exc})"
                canonical = b""
        if problem is None and from_json and isinstance(raw, (str, bytes)) and may_repeat_keys(raw, canonical):
            repeated = repeated_key(raw)
            if repeated is not None:
                problem = f"{repeated}: the key appears twice in one object (JSON readers keep one silently: ambiguous)"
        if problem is not None:
            raise InvalidEvent(problem)
        epoch = reading.epoch if reading is not None else epoch_of(event["time"])
        return Prepared(event, event["id"], reading, digest_of(canonical) if digest is None else digest, epoch,
                        event if raw is None else raw, source, line)

    def admit(self, prepared: Prepared) -> Verdict:
        """The de-duplication verdict for a prepared event (remembered when new)."""
        return self.dedupe.verdict(prepared.id, prepared.digest, prepared.epoch)

    def accept(self, prepared: Prepared, verdict: Verdict) -> list[Finding | Decision | DataGap]:
        """Apply an admitted event: the clock, enterprises, windows, judge and decision layer.

        A duplicate gives [] (counted); an id already used by other content raises InvalidEvent
        (counted as quarantined)."""
        beyond, seen = verdict
        if beyond:
            self.summary.beyond_dedupe_horizon += 1
        if seen is Seen.DUPLICATE:
            self.summary.duplicate += 1
            return []
        if seen is Seen.CONFLICT:
            self.summary.quarantined += 1
            raise InvalidEvent(f"id: {prepared.id!r} was already used by a different event (ids are idempotency keys)")
        self.summary.processed += 1
        event = prepared.event
        out: list[Finding | Decision | DataGap] = []
        held = self.clock.counted
        moved = self.clock.observe(prepared.epoch, event["subject"])
        self.summary.clock_held += self.clock.counted - held
        if moved is not None:
            self.dedupe.advance(moved)
            out.extend(self.decisions.advance(moved))
        judged = self._apply(event, prepared.reading)
        out.extend(judged)
        out.extend(self.decisions.on_event(event, prepared.epoch, [f for f in judged if type(f) is Finding]))
        if out:
            self.summary.count(out)
        return out

    def commit_quiet(self, top: float, ids: list[str], digests: list[int], epochs: list[float], subjects: list[str],
                     unavailable: int) -> None:
        """`accept` in bulk, for valid new readings the batch path proved quiet (no finding, no
        deadline passed up to `top`, the latest of `epochs`, which is at most the clock's
        `plausible_until()`; `unavailable` of them flagged other than N): the clock moves, the
        ids are remembered, the counters add up."""
        self.commit_quiet_counted(top, ids, digests, epochs, self.enterprises.strangers(subjects), unavailable)

    def commit_quiet_counted(self, top: float, ids: list[str], digests: list[int], epochs: list[float], strangers: int,
                             unavailable: int) -> None:
        """`commit_quiet` with the events of unregistered enterprises counted already (`strangers`)."""
        self._moved_quietly(top)
        self._counted_quietly(len(ids), self.dedupe.add_new(ids, digests, epochs), strangers, unavailable)

    def commit_quiet_columns(self, top: float, columns: IdColumns, first: int, last: int, low: float, strangers: int,
                             unavailable: int) -> None:
        """`commit_quiet_counted` for rows first..last-1 of a window's quiet ids held as columns
        (the archive's lane, engine/fast/columns.py; `low` the earliest of their times)."""
        self._moved_quietly(top)
        self._counted_quietly(last - first, self.dedupe.add_columns(columns, first, last, top, low), strangers,
                              unavailable)

    def _moved_quietly(self, top: float) -> None:
        self.clock.move_to(top)
        if top > self.decisions.clock:  # else the clock stays (and no deadline search is needed)
            self.decisions.move_quietly(top)

    def _counted_quietly(self, count: int, beyond: int, strangers: int, unavailable: int) -> None:
        summary = self.summary
        summary.beyond_dedupe_horizon += beyond
        summary.read += count
        summary.processed += count
        summary.unregistered += strangers
        summary.unavailable += unavailable

    def _apply(self, event: Mapping[str, Any], reading: Reading | None) -> list[Finding | DataGap]:
        event_type, subject, data = event["type"], event["subject"], event["data"]
        if event_type == "enterprise.registered":
            self.enterprises.note(event_type, subject, data)
        else:
            if event_type == "equipment.declared":
                self.enterprises.note(event_type, subject, data)
            if event_type != "evaluation.closed" and not self.enterprises.known(subject):  # a close is the authority's
                self.summary.unregistered += 1
            if event_type in LAND_TYPES and not self.parcels.note(event):
                self.summary.unknown_parcels += 1
        if not self.validator.known(event_type):
            self.summary.unknown_types[event_type] += 1
            return []
        if reading is None:
            return list(self.judge.fact(event))
        path = route(reading.type, reading.period, reading.flag)
        if path == UNAVAILABLE:
            self.summary.unavailable += 1
            return []
        if path == JUDGE:
            return self.judge.reading(reading, reading.period)
        out: list[Finding | DataGap] = []
        if reading.period == "minute":
            closed, late = self.hours.add(reading)
            for hour in closed:
                out.extend(self._closed_hour(hour))
            if reading.type == "emission.measured":  # single stack readings, e.g. GB 39726's "any reading" limits
                out.extend(self.judge.reading(reading, "instant"))
        else:  # an hourly wastewater value: into its day
            days, late = self.days.add(reading)
            for day in days:
                out.extend(self.judge.reading(day, "day", self.minimums["day"]))
        if late:
            self.summary.late += 1
        return out

    def _closed_hour(self, hour: Reading) -> list[Finding | DataGap]:
        """An hourly mean: judged (stack data), or folded into its day (wastewater)."""
        if hour.type != "discharge.measured":
            return self.judge.reading(hour, "hour", self.minimums["hour"])
        days, late = self.days.add(hour)
        if late:
            self.summary.late += 1
        return [f for day in days for f in self.judge.reading(day, "day", self.minimums["day"])]

    # ---- the end of input -------------------------------------------------------------------

    def flush(self, as_of: str | None = None) -> list[Finding | Decision | DataGap]:
        """End of input: close open hourly windows, decide on them, escalate what is due.

        `as_of` (RFC 3339) is the reference time of a replay: orders whose deadline lies
        before it escalate. Without it, the clock is the latest event time seen.
        """
        judged = [f for _, found in self.close_windows() for f in found]
        out: list[Finding | Decision | DataGap] = list(judged)
        out.extend(self.decisions.on_findings([f for f in judged if type(f) is Finding]))
        out.extend(self.decisions.finish(epoch_of(as_of) if as_of else None))
        self.summary.count(out)
        self.settle()
        return out

    def close_windows(self) -> list[tuple[Reading, list[Finding | DataGap]]]:
        """Every open window closed and judged (hours, then the days wastewater hours feed), in
        time then stream order; late values are counted."""
        closed: list[tuple[Reading, list[Finding | DataGap]]] = []
        for hour in self.hours.flush():
            if hour.type != "discharge.measured":
                closed.append((hour, self.judge.reading(hour, "hour", self.minimums["hour"])))
                continue
            days, late = self.days.add(hour)
            self.summary.late += late
            closed.extend((day, self.judge.reading(day, "day", self.minimums["day"])) for day in days)
        closed.extend((day, self.judge.reading(day, "day", self.minimums["day"])) for day in self.days.flush())
        return sorted(closed, key=lambda item: (item[0].epoch, stream_of(item[0]), item[0].period))

    def advance_clock(self, epoch: float) -> list[Decision]:
        """Move the event-time clock (a later event elsewhere): what falls due escalates, counted."""
        self.clock.move_to(epoch)
        self.dedupe.advance(epoch)
        decisions = self.decisions.advance(epoch)
        self.summary.count(decisions)
        return decisions

    def settle(self) -> None:
        """Copy the decision layer's counts into the summary (the end of a run)."""
        self.summary.open_orders = self.decisions.open_orders
        self.summary.orders_closed = self.decisions.orders_closed
        self.summary.unmatched_approvals = self.decisions.unmatched_approvals

    # ---- state ------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The state the next input line depends on, as deterministic JSON bytes (sorted keys)."""
        state = {
            "format": SNAPSHOT_FORMAT,
            "ruleset": self.ruleset,
            "backend": self.backend,
            "summary": self.summary.state(),
            "enterprises": self.enterprises.state(),
            "parcels": self.parcels.state(),
            "dedupe": self.dedupe.state(),
            "clock": self.clock.state(),
            "hours": self.hours.state(),
            "days": self.days.state(),
            "decisions": self.decisions.state(),
        }
        return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)

    def restore(self, data: bytes) -> None:
        """Put a freshly built engine (same rule set, same backend) into the state of a snapshot."""
        state = orjson.loads(data)
        if state.get("format") != SNAPSHOT_FORMAT:
            raise CheckpointError(f"snapshot format {state.get('format')!r}, this engine reads {SNAPSHOT_FORMAT}")
        if state["ruleset"] != self.ruleset:
            raise CheckpointError(f"snapshot was taken with rule set {state['ruleset']}, this engine has {self.ruleset}")
        if state["backend"] != self.backend:
            raise CheckpointError(f"snapshot was taken on the {state['backend']} backend, this engine is {self.backend}")
        self.summary.restore(state["summary"])
        self.enterprises.restore(state["enterprises"])
        self.parcels.restore(state["parcels"])
        self.dedupe.restore(state["dedupe"])
        self.hours.restore(state["hours"])
        self.days.restore(state["days"])
        self.decisions.restore(state["decisions"])
        if "clock" in state:
            self.clock.restore(state["clock"])
        else:  # a snapshot from before the guard: its clock is the decision layer's
            self.clock.move_to(self.decisions.clock)

    # ---- what the engine knows ----------------------------------------------------------------

    @property
    def registry(self) -> Mapping[str, Mapping[str, Any]]:
        """The latest registration of every enterprise seen (read-only view)."""
        return self.enterprises.registry

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


def quarantined(raw: Any, source: str, line: int, error: str) -> Quarantined:
    """The quarantine record of an input line: the raw text as far as it can be shown, and why
    (of a line too long to read, its start: engine/ingest/jsonl.py)."""
    if isinstance(raw, bytes):
        parts = overlong_parts(raw)
        text = (raw if parts is None else parts[0]).decode("utf-8", errors="replace")
    elif isinstance(raw, str):
        text = without_surrogates(raw)
    else:
        try:
            text = orjson.dumps(raw, default=str).decode()
        except TypeError:  # an integer orjson cannot write (refused for that): named by its size
            text = orjson.dumps(_wide_integers_named(raw), default=str).decode()
    return Quarantined(line=line, source=source, raw=text.rstrip("\r\n"), error=error)


def _wide_integers_named(value: Any) -> Any:
    """`value` with each integer outside the 64-bit range as the text '<an integer of N bits>' (its
    digits may be more than Python will even print), and each lone surrogate in text as its escape."""
    if wide_integer(value):
        return f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, str):  # a lone surrogate (Python's json module makes them) as its escape
        return without_surrogates(value)
    if isinstance(value, Mapping):
        return {without_surrogates(str(key)): _wide_integers_named(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wide_integers_named(item) for item in value]
    return value
