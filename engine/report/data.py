"""What a report or a notice is made from: the records of a run, the registry, and each
enterprise's history read from the event log.

In: an Engine and event files (`collect`), or records and a registry from elsewhere (a store,
a live service: build `ReportData` directly). Out: `ReportData` — findings and decisions as
written (dicts, so records of kinds this module does not know pass through as `other`), the
data period (first and last event time of the events processed), the reference time (`--as-of`,
else the last event time: event time, so the same log gives the same page), the rule set, the
rule titles in both languages, per enterprise its registrations, equipment, inspections,
verifications and approvals ("one enterprise, one file"), and every parcel of land as the engine
keeps it (`Engine.parcels.registry`: holder, area, contract, commitments, development, recovery).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from engine.i18n import translator
from engine.fast import CHUNK_LINES, parse_lines
from engine.ingest import JsonlFiles
from engine.ingest.archive import Archive, event_sources
from engine.normalise.readings import epoch_of
from engine.output import ListSink
from engine.pipeline import POLICY_PACK, Engine
from engine.report.summary import programme_report
from engine.run import Outputs, Run

# event types kept in an enterprise's file, beside its findings and decisions
_LINES = CHUNK_LINES  # lines parsed at a time (the batch path's chunk: the parsed events stay in the CPU cache)
HISTORY_TYPES = ("enterprise.registered", "equipment.declared", "inspection.recorded", "rectification.verified",
                 "approval.recorded")


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """A finding or decision rule as people read it: titles in both languages, severity, plugin."""

    id: str
    title_zh: str
    title_en: str
    plugin: str
    severity: str | None = None
    category: str | None = None
    escalation: Mapping[str, str] | None = None  # the basis of escalating an order (decision rules)

    def title(self, lang: str) -> str:
        return self.title_zh if lang == "zh" and self.title_zh else self.title_en or self.id


@dataclass
class History:
    """What the event log says of one enterprise besides its readings: (time, data) pairs."""

    events: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)

    def of(self, event_type: str) -> list[tuple[str, dict[str, Any]]]:
        return self.events.get(event_type, [])


@dataclass
class ReportData:
    """Everything the report page and the notices show. Records are dicts as written."""

    ruleset: str
    registry: Mapping[str, Mapping[str, Any]]
    targets: Mapping[str, Any]
    findings: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    other: list[dict[str, Any]] = field(default_factory=list)
    period: tuple[str | None, str | None] = (None, None)
    reference_time: str | None = None
    as_of: str | None = None
    counts: Mapping[str, Any] = field(default_factory=dict)
    rules: Mapping[str, RuleInfo] = field(default_factory=dict)
    programme_title: Mapping[str, str] = field(default_factory=dict)
    history: dict[str, History] = field(default_factory=dict)
    parcels: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def rule(self, rule_id: str) -> RuleInfo:
        return self.rules.get(rule_id) or RuleInfo(rule_id, "", rule_id, "")

    def enterprises(self) -> list[str]:
        """Every enterprise the page knows: registered, or named by a record; sorted by code."""
        codes = set(self.registry)
        codes.update(r["enterprise"] for r in self.findings if r.get("enterprise"))
        codes.update(r["enterprise"] for r in self.decisions if r.get("enterprise"))
        codes.update(r["enterprise"] for r in self.other if isinstance(r.get("enterprise"), str))
        return sorted(codes)

    def name(self, code: str) -> str:
        return str((self.registry.get(code) or {}).get("name") or "")


def summary_of(data: ReportData) -> dict[str, Any]:
    """The programme summary of `data` (engine/report/summary.py): decisions, registry, targets,
    parcels and findings."""
    return programme_report(data.decisions, data.registry, data.targets, data.parcels, data.findings)


def rule_infos(engine: Engine) -> tuple[dict[str, RuleInfo], dict[str, str]]:
    """Titles of every finding and decision rule in both languages (from the rule packs the
    engine loaded: compiled decision rules keep only the English title), and the programme's
    title from the policy pack."""
    infos: dict[str, RuleInfo] = {}
    programme: dict[str, str] = {}
    for source in [*engine.plugins.rule_packs, POLICY_PACK]:
        document = yaml.load(source.text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        if source is POLICY_PACK:
            programme = {k: str(v) for k, v in (document.get("title") or {}).items()}
        for spec in [*(document.get("rules") or []), *(document.get("decisions") or [])]:
            title = spec.get("title") or {}
            escalation = spec.get("escalation")
            infos[spec["id"]] = RuleInfo(spec["id"], str(title.get("zh", "")), str(title.get("en", spec["id"])),
                                         source.plugin, spec.get("severity"), spec.get("category"),
                                         escalation.get("basis") if isinstance(escalation, dict) else None)
    for rule in engine.rules:  # compiled: the category the engine derived
        infos[rule.id] = RuleInfo(rule.id, rule.title_zh, rule.title_en, rule.plugin, rule.severity, rule.category)
    method = engine.method  # the mu-average rules carry no titles: named by the vocabulary
    zh, en = translator("zh"), translator("en")
    for rule_id in [method.id, method.classify_rule, *(r.id for r in method.rules)]:
        infos.setdefault(rule_id, RuleInfo(rule_id, zh.name("rule", rule_id), en.name("rule", rule_id), "programme"))
    return infos, programme


def scan(sources: Iterable[JsonlFiles | Archive], skipped: set[tuple[str, int]]
         ) -> tuple[tuple[str | None, str | None], dict[str, History]]:
    """The data period (first and last event time, as written) and each enterprise's history,
    from the event files and archives, leaving out the lines the run quarantined (source, line).
    Of equal times the first in input order is kept."""
    first: tuple[float, str] | None = None
    last: tuple[float, str] | None = None
    history: dict[str, History] = {}
    for source in sources:
        if isinstance(source, Archive):
            for low, high in _archive_times(source, skipped, history):
                if first is None or low[0] < first[0]:
                    first = low
                if last is None or high[0] > last[0]:
                    last = high
            continue
        for name, number, texts in source.chunks(_LINES):  # blocks split in C, parsed in one map
            for line, event in enumerate(parse_lines(texts), start=number):
                if skipped and (name, line) in skipped:
                    continue
                seen = _seen(event, history)
                if seen is not None:
                    if first is None or seen[0] < first[0]:
                        first = seen
                    if last is None or seen[0] > last[0]:
                        last = seen
    return (first[1] if first else None, last[1] if last else None), history


def _seen(event: Any, history: dict[str, History]) -> tuple[float, str] | None:
    """A parsed line's event time (epoch, as written), None when it has none (or did not parse:
    `UNPARSED`); a history event is noted."""
    try:
        time = event["time"]
        at = epoch_of(time)
    except (KeyError, TypeError, ValueError):
        return None
    kind = event.get("type")
    if kind in HISTORY_TYPES and isinstance(event.get("subject"), str) and isinstance(event.get("data"), dict):
        entry = history.setdefault(event["subject"], History())
        entry.events.setdefault(kind, []).append((time, {"id": event.get("id"), **event["data"]}))
    return at, time


def _archive_times(archive: Archive, skipped: set[tuple[str, int]], history: dict[str, History]
                   ) -> Iterator[tuple[tuple[float, str], tuple[float, str]]]:
    """Per window of an archive that has event times: the earliest and the latest (the first in
    input order of equal ones). Typed rows (valid readings, never history) by column, with the
    event time the archive keeps; raw rows line by line, as `scan` reads a file."""
    quarantined: dict[str, list[int]] = {}
    for source, line in skipped:
        quarantined.setdefault(source, []).append(line)
    for table in archive.tables(columns=["seq", "file", "line", "raw", "shape", "time", "epoch"]):
        out = np.zeros(table.num_rows, dtype=bool)
        for source, lines in quarantined.items():
            out |= pc.fill_null(pc.and_(pc.equal(table.column("file"), source),
                                        pc.is_in(table.column("line"), value_set=pa.array(lines, pa.int64()))),
                                False).to_numpy(zero_copy_only=False)
        seen: list[tuple[float, int, str]] = []  # (epoch, row, time as written)
        typed = np.flatnonzero(pc.is_valid(table.column("shape")).to_numpy(zero_copy_only=False) & ~out)
        if len(typed):
            epochs = table.column("epoch").to_numpy(zero_copy_only=False)[typed]
            for row in {int(typed[np.argmin(epochs)]), int(typed[np.argmax(epochs)])}:
                seen.append((float(table.column("epoch")[row].as_py()), row, table.column("time")[row].as_py()))
        raw = np.flatnonzero(pc.is_valid(table.column("raw")).to_numpy(zero_copy_only=False) & ~out)
        for row, event in zip(raw.tolist(), parse_lines(table.column("raw").take(raw).to_pylist())):
            found = _seen(event, history)
            if found is not None:
                seen.append((found[0], row, found[1]))
        if seen:
            low = min(seen, key=lambda s: (s[0], s[1]))
            high = min(seen, key=lambda s: (-s[0], s[1]))
            yield (low[0], low[2]), (high[0], high[2])


def collect(engine: Engine, paths: list[str], as_of: str | None = None) -> ReportData:
    """Run the event files, or archives made by `rectify archive`, in their order, through the
    engine (the batch path) and gather what a report needs."""
    sources = event_sources(paths)
    records, bad = ListSink(), ListSink()  # quarantine records apart: the lines the scan below skips
    run = Run(engine, Outputs(records, bad, chain=False), as_of=as_of)
    for source in sources:
        run.feed(source)
    run.finish()
    findings: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for data in records.records:
        kind = data.get("record")
        (findings if kind == "finding" else decisions if kind == "decision" else other).append(data)
    period, history = scan(sources, {(q["source"], q["line"]) for q in bad.records})
    infos, programme = rule_infos(engine)
    return ReportData(ruleset=engine.ruleset, registry=dict(engine.registry), targets=dict(engine.targets()),
                      findings=findings, decisions=decisions, other=other, period=period,
                      reference_time=as_of or period[1], as_of=as_of, counts=engine.summary.to_dict(),
                      rules=infos, programme_title=programme, history=history, parcels=dict(engine.parcels.registry))


def from_records(records: Iterable[Mapping[str, Any]], registry: Mapping[str, Mapping[str, Any]], *, ruleset: str = "",
                 targets: Mapping[str, Any] | None = None, rules: Mapping[str, RuleInfo] | None = None,
                 reference_time: str | None = None, parcels: Mapping[str, Mapping[str, Any]] | None = None) -> ReportData:
    """ReportData from records already written (a store, a JSONL log, a live service); without
    `parcels` the land freed counts each enterprise's registered land."""
    findings: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    times: list[tuple[float, str]] = []
    for record in records:
        data = dict(record)
        kind = data.get("record")
        if kind == "quarantine":
            continue
        (findings if kind == "finding" else decisions if kind == "decision" else other).append(data)
        if isinstance(data.get("time"), str):
            try:
                times.append((epoch_of(data["time"]), data["time"]))
            except ValueError:
                pass
        ruleset = ruleset or str(data.get("ruleset") or "")
    period = (min(times)[1], max(times)[1]) if times else (None, None)
    return ReportData(ruleset=ruleset, registry=registry, targets=dict(targets or {}), findings=findings,
                      decisions=decisions, other=other, period=period, reference_time=reference_time or period[1],
                      rules=dict(rules or {}), parcels=dict(parcels or {}))
