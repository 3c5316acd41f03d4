"""The decision layer: findings and registry facts become rectification decisions.

Decision rules are data (the `decisions:` of a rule pack; the programme's own policy is in
engine/policy/programme.yaml). Three kinds of trigger:

- findings: at least `count` matching findings of one enterprise within `within_days` of
  event time (a count window), optionally with a `where` condition on the registration;
- registration: a condition on the enterprise's registration alone;
- escalation (built in for `rectify` orders): an order whose deadline passes with no passing
  `rectification.verified` becomes `close_by_law` at the deadline, superseding the order; a
  passing verification at or before the deadline closes the order; a failing inspection while
  the order is open escalates at the inspection's time;
- the yearly mu-average evaluation (engine/evaluation.py): a barrier at `evaluation.closed` that
  ranks every enterprise with a `finance.reported` for the year (not a correlation: both
  backends run the same code from `on_event`).

Event time only. The clock is the latest event time seen; an order falls due when the clock
passes its deadline (a later event of any enterprise, or the end of input / `as_of`), and the
escalation record's time is the deadline itself, so what is decided never depends on when it
was noticed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.evaluation import Evaluation
from engine.expressions import Compiled, ExpressionError, compile_expression
from engine.normalise import epoch_of
from engine.records import Decision, Finding
from engine.rules import RulePack, RulePackError

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class DecisionRule:
    """One compiled decision rule."""

    id: str
    version: int
    plugin: str
    title: str
    categories: frozenset[str] | None
    prefixes: tuple[str, ...] | None
    plugins: frozenset[str] | None
    count: int
    within: float | None
    on_registration: bool
    where_text: str | None
    where: Compiled | None = field(repr=False, compare=False)
    list: str | None
    action: str
    deadline_days: float | None
    escalation_basis: Mapping[str, str] | None
    basis: Mapping[str, str]
    params: Mapping[str, Any] = field(repr=False, compare=False)

    def counts(self, finding: Finding, category: str) -> bool:
        """Whether a finding is evidence for this rule."""
        if self.categories is not None and category not in self.categories:
            return False
        if self.plugins is not None and finding.plugin not in self.plugins:
            return False
        if self.prefixes is not None and not finding.rule.startswith(self.prefixes):
            return False
        return True


@dataclass(frozen=True, slots=True)
class InactiveDecision:
    id: str
    plugin: str
    reason: str


def _as_set(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


def compile_decisions(packs: Iterable[RulePack], parameters: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> tuple[list[DecisionRule], list[InactiveDecision]]:
    """Compile the `decisions:` of every pack, sorted by id; a duplicate id names both plugins."""
    overrides = parameters or {}
    seen: dict[str, str] = {}
    active: list[DecisionRule] = []
    inactive: list[InactiveDecision] = []
    for pack in sorted(packs, key=lambda p: p.plugin):
        document = pack.document
        pack_params = {n: s["value"] for n, s in document.get("parameters", {}).items()}
        pack_params.update({k: v for k, v in overrides.get(document["pack"], {}).items() if k in pack_params})
        for spec in document.get("decisions", []):
            if spec["id"] in seen:
                raise RulePackError(f"duplicate decision id {spec['id']!r}: defined by plugin {seen[spec['id']]!r} and by plugin {pack.plugin!r}")
            if not spec["id"].startswith(document["pack"] + "."):
                raise RulePackError(f"{pack.origin}: decision {spec['id']!r} must start with {document['pack'] + '.'!r}")
            seen[spec["id"]] = pack.plugin
            local = {n: p["value"] for n, p in spec.get("parameters", {}).items()}
            missing: list[str] = []

            def resolve(value: Any, what: str) -> Any:
                if value is None or isinstance(value, (int, float)):
                    return value
                for table in (local, pack_params):
                    if value in table:
                        if table[value] is None:
                            missing.append(value)
                        return table[value]
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): {what} names no parameter {value!r}")

            trigger = spec["trigger"]
            count = resolve(trigger.get("count", 1), "count")
            within = resolve(trigger.get("within_days"), "within_days")
            deadline = resolve(spec.get("deadline_days"), "deadline_days")
            where_text = trigger.get("where")
            try:
                where = compile_expression(where_text, frozenset({"enterprise", "params"})) if where_text else None
            except ExpressionError as exc:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): {exc}") from None
            if spec["action"] == "rectify" and spec.get("deadline_days") is None:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): a rectify order needs deadline_days")
            if spec["action"] == "rectify" and "escalation" not in spec:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): a rectify order needs an escalation basis")
            findings = trigger.get("findings")
            prefixes = _as_set((findings or {}).get("rules"))
            if missing:
                inactive.append(InactiveDecision(spec["id"], pack.plugin, "needs parameter " + ", ".join(sorted(set(missing)))))
                continue
            active.append(DecisionRule(
                id=spec["id"], version=spec["version"], plugin=pack.plugin, title=spec["title"]["en"],
                categories=_as_set((findings or {}).get("category")),
                prefixes=tuple(sorted(prefixes)) if prefixes else None,
                plugins=_as_set((findings or {}).get("plugin")),
                count=int(count or 1),
                within=float(within) * DAY if within is not None else None,
                on_registration=bool(trigger.get("registration")) and findings is None,
                where_text=where_text, where=where,
                list=spec["list"], action=spec["action"],
                deadline_days=float(deadline) if deadline is not None else None,
                escalation_basis=(spec.get("escalation") or {}).get("basis"),
                basis=spec["basis"], params=pack_params,
            ))
    active.sort(key=lambda r: r.id)
    inactive.sort(key=lambda r: r.id)
    return active, inactive


@dataclass(slots=True)
class _Order:
    decision: Decision
    rule: DecisionRule
    deadline: float


def _plus_days(time: str, days: float) -> str:
    return (datetime.fromisoformat(time.replace("Z", "+00:00")) + timedelta(days=days)).isoformat()


@dataclass(frozen=True, slots=True)
class _Entry:
    """A counted finding in a window: event time, arrival order, ids."""

    epoch: float
    seq: int
    finding: str
    events: tuple[str, ...]


class DecisionLayer:
    """Per-enterprise decision state; fed by the Engine after each event's findings.

    This class is the reference ("compiled") backend: it keeps the state and makes the
    records, and detects correlations in plain Python. `engine.rete_decisions` overrides only
    the `_detect_*` methods (and the `_track_*` hooks that mirror state into durable_rules),
    so both backends share every other line and can only differ in detection.

    A count window for (decision rule, enterprise) holds the counted findings since the last
    reset; a finding with event time e fires the rule when at least `count` of them (itself
    included) lie in [e - within, e]. Entries older than the newest time seen minus `within`
    are dropped (without `within`, only the last `count`), so memory is bounded per enterprise.
    """

    def __init__(self, rules: Iterable[DecisionRule], categories: Mapping[str, str], ruleset: str,
                 registration: Callable[[str], Mapping[str, Any] | None]) -> None:
        self.rules = tuple(rules)
        self._by_findings = tuple(r for r in self.rules if not r.on_registration)
        self._by_registration = tuple(r for r in self.rules if r.on_registration)
        self._categories = categories
        self._ruleset = ruleset
        self._registration = registration
        self._windows: dict[tuple[str, str], list[_Entry]] = {}
        self._newest: dict[tuple[str, str], float] = {}
        self._open: dict[str, _Order] = {}
        self._open_key: dict[tuple[str, str], str] = {}
        self._done: set[tuple[str, str]] = set()
        self._closed_by_law: set[str] = set()
        self._seq = 0
        self.clock = float("-inf")
        self.orders_closed = 0
        # the yearly mu-average evaluation (engine/evaluation.py), attached by the Engine: a
        # barrier over all enterprises at `evaluation.closed`, shared by both backends
        self.evaluation: Evaluation | None = None

    @property
    def open_orders(self) -> int:
        return len(self._open)

    # ---- detection (the part a backend may replace) -------------------------------------

    def _detect_count(self, rule: DecisionRule, window: list[_Entry], entry: _Entry) -> bool:
        low = entry.epoch - rule.within if rule.within is not None else float("-inf")
        return sum(1 for e in window if low <= e.epoch <= entry.epoch) >= rule.count

    def _detect_due(self, epoch: float) -> list[str]:
        return [order_id for order_id, order in self._open.items() if order.deadline < epoch]

    def _detect_verified(self, enterprise: str, decision: str, epoch: float) -> str | None:
        order = self._open.get(decision)
        if order is not None and order.decision.enterprise == enterprise and epoch <= order.deadline:
            return decision
        return None

    def _detect_failed_inspection(self, enterprise: str, epoch: float) -> list[str]:
        return [i for i, o in self._open.items() if o.decision.enterprise == enterprise and epoch <= o.deadline]

    # hooks a backend uses to mirror state; the reference keeps it all in the dicts above
    def _track_entry(self, rule: DecisionRule, enterprise: str, entry: _Entry) -> None:
        pass

    def _untrack_entries(self, rule: DecisionRule, enterprise: str, entries: list[_Entry]) -> None:
        pass

    def _track_order(self, order: _Order) -> None:
        pass

    def _untrack_order(self, order: _Order) -> None:
        pass

    # ---- the clock ----------------------------------------------------------------------

    def advance(self, epoch: float) -> list[Decision]:
        """Move the event-time clock; orders whose deadline it passed escalate, in deadline order."""
        if epoch <= self.clock:
            return []
        self.clock = epoch
        if not self._open:
            return []
        due = sorted((self._open[i] for i in self._detect_due(epoch)),
                     key=lambda o: (o.deadline, o.decision.enterprise, o.decision.id))
        return [self._escalate(order, order.decision.deadline or "", ()) for order in due]

    def quiet_until(self) -> float:
        """The latest event time the clock can move to without an order falling due (the batch path)."""
        if not self._open:
            return math.inf
        return max(self.clock, min(o.deadline for o in self._open.values()))

    def move_quietly(self, epoch: float) -> None:
        """`advance(epoch)` for an epoch at most `quiet_until()`: the clock moves, nothing escalates."""
        assert epoch <= self.quiet_until()
        if epoch > self.clock:
            self.clock = epoch

    # ---- events and findings ------------------------------------------------------------

    def on_event(self, event: Mapping[str, Any], epoch: float, findings: list[Finding]) -> list[Decision]:
        """Decisions caused by one event and its findings."""
        event_type, subject, data = event["type"], event["subject"], event["data"]
        out: list[Decision] = []
        if event_type == "rectification.verified" and data["passed"] and self._open:
            closed = self._detect_verified(subject, data["decision"], epoch)
            if closed is not None:
                self._close(self._open[closed])
        elif event_type == "inspection.recorded" and data["result"] == "fail" and self._open:
            for order_id in sorted(self._detect_failed_inspection(subject, epoch)):
                out.append(self._escalate(self._open[order_id], event["time"], (event["id"],)))
        elif event_type == "enterprise.registered":
            out.extend(self._on_registration(event))
        elif event_type in ("finance.reported", "evaluation.closed") and self.evaluation is not None:
            out.extend(self.evaluation.on_event(event, epoch, self._closed_by_law))
        out.extend(self.on_findings(findings))
        return out

    def on_findings(self, findings: Iterable[Finding]) -> list[Decision]:
        out: list[Decision] = []
        for finding in findings:
            category = self._categories.get(finding.rule, "")
            epoch = epoch_of(finding.time)
            for rule in self._by_findings:
                if not rule.counts(finding, category) or not self._may_decide(rule, finding.enterprise):
                    continue
                if rule.where is not None and rule.where({"enterprise": self._registration(finding.enterprise), "params": rule.params}) is not True:
                    continue
                key = (rule.id, finding.enterprise)
                self._seq += 1
                entry = _Entry(epoch, self._seq, finding.id, finding.event)
                window = self._windows.setdefault(key, [])
                window.append(entry)
                self._track_entry(rule, finding.enterprise, entry)
                self._prune(rule, key, window, epoch)
                if window and window[-1] is not entry:
                    continue  # arrived too late for any window: pruned at once, it can decide nothing
                if self._detect_count(rule, window, entry):
                    low = epoch - rule.within if rule.within is not None else float("-inf")
                    counted = [e for e in window if low <= e.epoch <= epoch]
                    ids = tuple(e.finding for e in counted)
                    events = tuple(sorted({i for e in counted for i in e.events}))
                    out.append(self._decide(rule, finding.enterprise, finding.time, ids, events))
        return out

    def _prune(self, rule: DecisionRule, key: tuple[str, str], window: list[_Entry], epoch: float) -> None:
        newest = max(self._newest.get(key, epoch), epoch)
        self._newest[key] = newest
        if rule.within is not None:
            dropped = [e for e in window if e.epoch < newest - rule.within]
        else:
            dropped = window[: max(0, len(window) - rule.count)]
        if dropped:
            gone = {e.seq for e in dropped}
            window[:] = [e for e in window if e.seq not in gone]
            self._untrack_entries(rule, key[1], dropped)

    def _on_registration(self, event: Mapping[str, Any]) -> list[Decision]:
        out = []
        for rule in self._by_registration:
            if not self._may_decide(rule, event["subject"]):
                continue
            if rule.where is None or rule.where({"enterprise": event["data"], "params": rule.params}) is True:
                out.append(self._decide(rule, event["subject"], event["time"], (), (event["id"],)))
        return out

    def finish(self, as_of: float | None = None) -> list[Decision]:
        """End of input: escalate what is due at `as_of` (default: the latest event time seen)."""
        if as_of is None:
            return []
        return self.advance(as_of)

    # ---- making decisions ---------------------------------------------------------------

    def _may_decide(self, rule: DecisionRule, enterprise: str) -> bool:
        if enterprise in self._closed_by_law:
            return False
        if rule.action == "rectify":
            return (rule.id, enterprise) not in self._open_key
        return (rule.id, enterprise) not in self._done

    def _record(self, rule: DecisionRule, enterprise: str, time: str, action: str, deadline: str | None,
                basis: Mapping[str, str], findings: tuple[str, ...], events: tuple[str, ...], supersedes: str | None) -> Decision:
        key = "|".join((rule.id, str(rule.version), enterprise, time, action, ",".join(findings), ",".join(events), supersedes or ""))
        return Decision(
            id="D-" + hashlib.sha256(key.encode()).hexdigest()[:24], rule=rule.id, rule_version=rule.version,
            enterprise=enterprise, time=time, list=rule.list, action=action, deadline=deadline, basis=basis,
            findings=findings, events=events, supersedes=supersedes, ruleset=self._ruleset,
        )

    def _decide(self, rule: DecisionRule, enterprise: str, time: str, findings: tuple[str, ...], events: tuple[str, ...]) -> Decision:
        deadline = _plus_days(time, rule.deadline_days) if rule.deadline_days is not None else None
        decision = self._record(rule, enterprise, time, rule.action, deadline, rule.basis, findings, events, None)
        key = (rule.id, enterprise)
        if key in self._windows:  # the evidence is used up: counting starts again after this decision
            self._untrack_entries(rule, enterprise, self._windows.pop(key))
        if rule.action == "rectify":
            assert deadline is not None
            order = _Order(decision, rule, epoch_of(deadline))
            self._open[decision.id] = order
            self._open_key[key] = decision.id
            self._track_order(order)
        else:
            self._done.add(key)
        return decision

    def _end(self, order: _Order) -> None:
        del self._open[order.decision.id]
        del self._open_key[(order.rule.id, order.decision.enterprise)]
        self._untrack_order(order)

    def _close(self, order: _Order) -> None:
        self._end(order)
        self.orders_closed += 1

    def _escalate(self, order: _Order, time: str, events: tuple[str, ...]) -> Decision:
        self._end(order)
        self._closed_by_law.add(order.decision.enterprise)
        assert order.rule.escalation_basis is not None
        return self._record(order.rule, order.decision.enterprise, time, "close_by_law", None, order.rule.escalation_basis,
                            order.decision.findings, events, order.decision.id)
