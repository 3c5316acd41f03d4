"""The records that cross the engine's boundary: input lines in, findings, decisions and
quarantined lines out, and the run summary that counts them.

Field order and spelling are the output contract (schemas/finding.schema.json,
decision.schema.json, quarantine.schema.json): `to_dict` gives a record exactly as it is
written, one JSON object per line. Every layer of the engine may import this module; it
imports none of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class InputLine:
    """One line of input and where it came from (for quarantine records)."""

    source: str
    number: int
    text: str | bytes


class InvalidEvent(ValueError):
    """An event that cannot be processed; the message says which field and what is wrong."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule was broken, with the evidence and the legal basis."""

    id: str
    rule: str
    rule_version: int
    plugin: str
    enterprise: str
    time: str
    event: tuple[str, ...]
    pollutant: str | None
    measured: Mapping[str, Any] | None
    judged: float | None
    limit: Mapping[str, Any] | None
    basis: Mapping[str, str]
    verified: bool
    ruleset: str
    corrections: tuple[Mapping[str, Any], ...] = ()
    parcel: str | None = None  # findings about a parcel of land (the `land` plugin)

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "record": "finding",
            "id": self.id,
            "rule": self.rule,
            "rule_version": self.rule_version,
            "plugin": self.plugin,
            "enterprise": self.enterprise,
            "time": self.time,
            "event": list(self.event),
            "pollutant": self.pollutant,
            "measured": dict(self.measured) if self.measured is not None else None,
            "judged": self.judged,
            "limit": dict(self.limit) if self.limit is not None else None,
            "basis": dict(self.basis),
            "verified": self.verified,
            "ruleset": self.ruleset,
            "corrections": [dict(c) for c in self.corrections],
        }
        if self.parcel is not None:  # written only when set, so other findings keep their bytes
            record["parcel"] = self.parcel
        return record


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An input line that could not be processed: where it was, what it was, what is wrong."""

    line: int
    source: str
    raw: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"record": "quarantine", "line": self.line, "source": self.source, "raw": self.raw, "error": self.error}


@dataclass(frozen=True, slots=True)
class DataGap:
    """A reading a rule could not judge, and why: never judged uncorrected in silence.

    `reason`: `o2_missing` (the limit is referenced to O₂ and no O₂ was measured),
    `benchmark_inputs_missing` (a benchmark-volume correction without volume or production),
    `too_few_values` (an hourly or daily average with fewer valid values than the authority's minimum),
    `figure_missing` (an event that is not a reading lacks a figure the rule must judge: the rule's
    `data_gap`, e.g. a standard-land inspection without an indicator the parcel committed to;
    `period` is then `none`), `figure_out_of_range` (the figures give the rule's measure or limit
    as no finite number, e.g. a quotient by 5e-324: the rule cannot cite a number).
    """

    id: str
    rule: str
    rule_version: int
    plugin: str
    enterprise: str
    time: str
    event: tuple[str, ...]
    pollutant: str | None
    period: str
    reason: str
    detail: str
    measured: Mapping[str, Any] | None
    basis: Mapping[str, str]
    ruleset: str
    parcel: str | None = None  # data gaps of an event about a parcel of land (the `land` plugin)

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "record": "data_gap",
            "id": self.id,
            "rule": self.rule,
            "rule_version": self.rule_version,
            "plugin": self.plugin,
            "enterprise": self.enterprise,
            "time": self.time,
            "event": list(self.event),
            "pollutant": self.pollutant,
            "period": self.period,
            "reason": self.reason,
            "detail": self.detail,
            "measured": dict(self.measured) if self.measured is not None else None,
            "basis": dict(self.basis),
            "ruleset": self.ruleset,
        }
        if self.parcel is not None:  # written only when set, so other data gaps keep their bytes
            record["parcel"] = self.parcel
        return record


@dataclass(slots=True)
class RunSummary:
    """Counts of a run. read == processed + duplicate + quarantined, always."""

    read: int = 0
    processed: int = 0
    duplicate: int = 0
    quarantined: int = 0
    findings: Counter[str] = field(default_factory=Counter)
    unknown_types: Counter[str] = field(default_factory=Counter)
    unregistered: int = 0
    unavailable: int = 0
    late: int = 0
    beyond_dedupe_horizon: int = 0
    clock_held: int = 0  # events too far ahead of the clock to move it alone (engine/normalise/clock.py)
    decisions: Counter[str] = field(default_factory=Counter)
    open_orders: int = 0
    orders_closed: int = 0
    data_gaps: Counter[str] = field(default_factory=Counter)
    unmatched_approvals: int = 0
    unknown_parcels: int = 0  # land.parcel.* events about a parcel their subject does not hold

    def balanced(self) -> bool:
        return self.read == self.processed + self.duplicate + self.quarantined

    def count(self, records: Iterable[Finding | Decision | DataGap]) -> None:
        """Count findings per plugin, decisions per list/route (and status, when not effective),
        data gaps per reason."""
        for record in records:
            if isinstance(record, Finding):
                self.findings[record.plugin] += 1
            elif isinstance(record, Decision):
                status = "" if record.status == "effective" else f" ({record.status})"
                self.decisions[f"{record.list or 'unlisted'}/{record.action}{status}"] += 1
            else:
                self.data_gaps[record.reason] += 1

    def merge(self, other: RunSummary) -> None:
        """Add another summary's counts (partitions of one run)."""
        for f in fields(self):
            mine = getattr(self, f.name)
            if isinstance(mine, Counter):
                mine.update(getattr(other, f.name))
            else:
                setattr(self, f.name, mine + getattr(other, f.name))

    def state(self) -> dict[str, Any]:
        """The counts as JSON data (a checkpoint)."""
        return {f.name: {"counter": dict(v)} if isinstance(v := getattr(self, f.name), Counter) else v
                for f in fields(self)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take the counts of `state()` (a checkpoint)."""
        for name, value in state.items():
            setattr(self, name, Counter(value["counter"]) if isinstance(value, dict) else value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "processed": self.processed,
            "duplicate": self.duplicate,
            "quarantined": self.quarantined,
            "findings": {k: self.findings[k] for k in sorted(self.findings)},
            "findings_total": sum(self.findings.values()),
            "unknown_types": {k: self.unknown_types[k] for k in sorted(self.unknown_types)},
            "unregistered_events": self.unregistered,
            "unavailable_readings": self.unavailable,
            "late_readings": self.late,
            "beyond_dedupe_horizon": self.beyond_dedupe_horizon,
            "clock_held": self.clock_held,
            "decisions": {k: self.decisions[k] for k in sorted(self.decisions)},
            "decisions_total": sum(self.decisions.values()),
            "open_orders": self.open_orders,
            "orders_closed": self.orders_closed,
            "data_gaps": {k: self.data_gaps[k] for k in sorted(self.data_gaps)},
            "data_gaps_total": sum(self.data_gaps.values()),
            "unmatched_approvals": self.unmatched_approvals,
            "unknown_parcels": self.unknown_parcels,
        }


AMOUNT_FIELDS = ("yuan", "base", "base_yuan", "share", "parameter")  # a decision's `amount`, as written


@dataclass(frozen=True, slots=True)
class Decision:
    """A rectification decision: which list, which route, by when, on what basis, from what evidence."""

    id: str
    rule: str
    rule_version: int
    enterprise: str
    time: str
    list: str | None
    action: str
    deadline: str | None
    basis: Mapping[str, str]
    findings: tuple[str, ...]
    events: tuple[str, ...]
    supersedes: str | None
    ruleset: str
    evaluation: Mapping[str, Any] | None = None  # mu-average decisions only (engine/decide/evaluation.py)
    surcharge_yuan_per_kwh: float | None = None  # differentiated electricity surcharge, D class only
    status: str = "effective"  # proposed (needs an approval), effective, withdrawn, completed (verified)
    parcel: str | None = None  # land decisions: the parcel decided on
    # a share of a figure of the parcel (the rule's `amount`, e.g. the idle-land fee: 20 % of the land
    # price): {yuan, base, base_yuan, share, parameter}; only when the parcel's record gives the figure
    amount: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "record": "decision",
            "id": self.id,
            "rule": self.rule,
            "rule_version": self.rule_version,
            "enterprise": self.enterprise,
            "time": self.time,
            "list": self.list,
            "action": self.action,
            "deadline": self.deadline,
            "basis": dict(self.basis),
            "evidence": {"findings": list(self.findings), "events": list(self.events)},
            "supersedes": self.supersedes,
            "status": self.status,
            "ruleset": self.ruleset,
        }
        # optional fields are written only when set, so other decision records keep their bytes
        if self.evaluation is not None:
            record["evaluation"] = dict(self.evaluation)
        if self.surcharge_yuan_per_kwh is not None:
            record["surcharge_yuan_per_kwh"] = self.surcharge_yuan_per_kwh
        if self.parcel is not None:
            record["parcel"] = self.parcel
        if self.amount is not None:
            # in this order whatever the mapping's (a snapshot restores it with sorted keys)
            record["amount"] = {k: self.amount[k] for k in AMOUNT_FIELDS if k in self.amount}
        return record


Record = Finding | Decision | DataGap | Quarantined
