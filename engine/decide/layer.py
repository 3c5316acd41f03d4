"""The decision layer: findings and registry facts become rectification decisions.

Decision rules are data (the `decisions:` of a rule pack; the programme's own policy is in
engine/decide/policy/programme.yaml; compiled by engine/decide/rules.py). Three kinds of
trigger:

- findings: at least `count` matching findings of one enterprise within `within_days` of
  event time (a count window), optionally with a `where` condition on the registration;
- registration: a condition on the enterprise's registration alone;
- escalation (built in for `rectify` orders): an order whose deadline passes with no passing
  `rectification.verified` becomes `close_by_law` at the deadline, superseding the order; a
  passing verification at or before the deadline closes the order; a failing inspection while
  the order is open escalates at the inspection's time;
- the yearly mu-average evaluation (engine/decide/evaluation.py): a barrier at
  `evaluation.closed` that ranks every enterprise with a `finance.reported` for the year.

Event time only. The clock is the latest event time seen; an order falls due when the clock
passes its deadline (a later event of any enterprise, or the end of input / `as_of`), and the
escalation record's time is the deadline itself, so what is decided never depends on when it
was noticed.

Where correlations are detected is a `Detector`, handed in: `PlainDetector` here (plain
Python, the reference) or `ReteDetector` (durable_rules, engine/decide/rete_detector.py). The
layer keeps the state and makes every record, so the two can only differ in detection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from engine.decide.evaluation import Evaluation
from engine.decide.rules import DecisionRule
from engine.normalise.readings import epoch_of
from engine.records import Decision, Finding
from engine.state import CheckpointError, pairs


@dataclass(slots=True)
class Order:
    """An open `rectify` order: the decision, its rule, its deadline (epoch seconds)."""

    decision: Decision
    rule: DecisionRule
    deadline: float


@dataclass(frozen=True, slots=True)
class Entry:
    """A counted finding in a window: event time, arrival order, ids."""

    epoch: float
    seq: int
    finding: str
    events: tuple[str, ...]


class Detector(Protocol):
    """Where the layer's correlations are detected. Told of every change to the state it may
    mirror (`entry_added`... `order_ended`), asked four questions (`count_reached`... `failed_inspection`)."""

    name: str

    def count_reached(self, rule: DecisionRule, enterprise: str, window: list[Entry], entry: Entry) -> bool: ...

    def due(self, orders: Mapping[str, Order], epoch: float) -> list[str]: ...

    def verified(self, orders: Mapping[str, Order], enterprise: str, decision: str, epoch: float) -> str | None: ...

    def failed_inspection(self, orders: Mapping[str, Order], enterprise: str, epoch: float) -> list[str]: ...

    def entry_added(self, rule: DecisionRule, enterprise: str, entry: Entry) -> None: ...

    def entries_dropped(self, rule: DecisionRule, enterprise: str, entries: list[Entry]) -> None: ...

    def order_opened(self, order: Order) -> None: ...

    def order_ended(self, order: Order) -> None: ...

    def state(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


class PlainDetector:
    """The reference detector: plain Python over the layer's own state; mirrors nothing."""

    name = "compiled"

    def count_reached(self, rule: DecisionRule, enterprise: str, window: list[Entry], entry: Entry) -> bool:
        low = entry.epoch - rule.within if rule.within is not None else float("-inf")
        return sum(1 for e in window if low <= e.epoch <= entry.epoch) >= rule.count

    def due(self, orders: Mapping[str, Order], epoch: float) -> list[str]:
        return [order_id for order_id, order in orders.items() if order.deadline < epoch]

    def verified(self, orders: Mapping[str, Order], enterprise: str, decision: str, epoch: float) -> str | None:
        order = orders.get(decision)
        if order is not None and order.decision.enterprise == enterprise and epoch <= order.deadline:
            return decision
        return None

    def failed_inspection(self, orders: Mapping[str, Order], enterprise: str, epoch: float) -> list[str]:
        return [i for i, o in orders.items() if o.decision.enterprise == enterprise and epoch <= o.deadline]

    def entry_added(self, rule: DecisionRule, enterprise: str, entry: Entry) -> None:
        pass

    def entries_dropped(self, rule: DecisionRule, enterprise: str, entries: list[Entry]) -> None:
        pass

    def order_opened(self, order: Order) -> None:
        pass

    def order_ended(self, order: Order) -> None:
        pass

    def state(self) -> None:
        return None

    def restore(self, state: Any) -> None:
        if state is not None:
            raise CheckpointError("snapshot of the rete backend restored into the compiled backend")


def _plus_days(time: str, days: float) -> str:
    return (datetime.fromisoformat(time.replace("Z", "+00:00")) + timedelta(days=days)).isoformat()


class DecisionLayer:
    """Per-enterprise decision state; fed by the Engine after each event's findings.

    A count window for (decision rule, enterprise) holds the counted findings since the last
    reset; a finding with event time e fires the rule when at least `count` of them (itself
    included) lie in [e - within, e]. Entries older than the newest time seen minus `within`
    are dropped (without `within`, only the last `count`), so memory is bounded per enterprise.
    """

    def __init__(self, rules: Iterable[DecisionRule], categories: Mapping[str, str], ruleset: str,
                 registration: Callable[[str], Mapping[str, Any] | None], evaluation: Evaluation,
                 detector: Detector | None = None) -> None:
        self.rules = tuple(rules)
        self.by_findings = tuple(r for r in self.rules if not r.on_registration)
        self._by_registration = tuple(r for r in self.rules if r.on_registration)
        self._categories = categories
        self._ruleset = ruleset
        self._registration = registration
        self.detector: Detector = detector if detector is not None else PlainDetector()
        # the yearly mu-average evaluation: a barrier over all enterprises at `evaluation.closed`
        self.evaluation = evaluation
        self._windows: dict[tuple[str, str], list[Entry]] = {}
        self._newest: dict[tuple[str, str], float] = {}
        self._open: dict[str, Order] = {}
        self._open_key: dict[tuple[str, str], str] = {}
        self._done: set[tuple[str, str]] = set()
        self._closed_by_law: set[str] = set()
        self._seq = 0
        self.clock = float("-inf")
        self.orders_closed = 0

    @property
    def open_orders(self) -> int:
        return len(self._open)

    def next_deadline(self) -> float | None:
        """The earliest deadline of an open order (epoch seconds), or None."""
        return min((o.deadline for o in self._open.values()), default=None)

    def orders_of(self, enterprise: str) -> list[Decision]:
        """The open `rectify` orders of one enterprise (their decisions, deadline included), by deadline."""
        orders = sorted((o for o in self._open.values() if o.decision.enterprise == enterprise),
                        key=lambda o: (o.deadline, o.decision.id))
        return [o.decision for o in orders]

    def is_closed(self, enterprise: str) -> bool:
        """Whether the enterprise has been escalated to closure."""
        return enterprise in self._closed_by_law

    # ---- the clock ----------------------------------------------------------------------

    def advance(self, epoch: float) -> list[Decision]:
        """Move the event-time clock; orders whose deadline it passed escalate, in deadline order."""
        if epoch <= self.clock:
            return []
        self.clock = epoch
        if not self._open:
            return []
        due = sorted((self._open[i] for i in self.detector.due(self._open, epoch)),
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
            closed = self.detector.verified(self._open, subject, data["decision"], epoch)
            if closed is not None:
                self._close(self._open[closed])
        elif event_type == "inspection.recorded" and data["result"] == "fail" and self._open:
            for order_id in sorted(self.detector.failed_inspection(self._open, subject, epoch)):
                out.append(self._escalate(self._open[order_id], event["time"], (event["id"],)))
        elif event_type == "enterprise.registered":
            out.extend(self._on_registration(event))
        elif event_type in ("finance.reported", "evaluation.closed"):
            out.extend(self.evaluation.on_event(event, epoch, self._closed_by_law))
        out.extend(self.on_findings(findings))
        return out

    def on_findings(self, findings: Iterable[Finding]) -> list[Decision]:
        out: list[Decision] = []
        for finding in findings:
            category = self._categories.get(finding.rule, "")
            epoch = epoch_of(finding.time)
            for rule in self.by_findings:
                if not rule.counts(finding, category) or not self._may_decide(rule, finding.enterprise):
                    continue
                if rule.where is not None and rule.where({"enterprise": self._registration(finding.enterprise), "params": rule.params}) is not True:
                    continue
                key = (rule.id, finding.enterprise)
                self._seq += 1
                entry = Entry(epoch, self._seq, finding.id, finding.event)
                window = self._windows.setdefault(key, [])
                window.append(entry)
                self.detector.entry_added(rule, finding.enterprise, entry)
                self._prune(rule, key, window, epoch)
                if window and window[-1] is not entry:
                    continue  # arrived too late for any window: pruned at once, it can decide nothing
                if self.detector.count_reached(rule, finding.enterprise, window, entry):
                    low = epoch - rule.within if rule.within is not None else float("-inf")
                    counted = [e for e in window if low <= e.epoch <= epoch]
                    ids = tuple(e.finding for e in counted)
                    events = tuple(sorted({i for e in counted for i in e.events}))
                    out.append(self._decide(rule, finding.enterprise, finding.time, ids, events))
        return out

    def _prune(self, rule: DecisionRule, key: tuple[str, str], window: list[Entry], epoch: float) -> None:
        newest = max(self._newest.get(key, epoch), epoch)
        self._newest[key] = newest
        if rule.within is not None:
            dropped = [e for e in window if e.epoch < newest - rule.within]
        else:
            dropped = window[: max(0, len(window) - rule.count)]
        if dropped:
            gone = {e.seq for e in dropped}
            window[:] = [e for e in window if e.seq not in gone]
            self.detector.entries_dropped(rule, key[1], dropped)

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
            self.detector.entries_dropped(rule, enterprise, self._windows.pop(key))
        if rule.action == "rectify":
            assert deadline is not None
            order = Order(decision, rule, epoch_of(deadline))
            self._open[decision.id] = order
            self._open_key[key] = decision.id
            self.detector.order_opened(order)
        else:
            self._done.add(key)
        return decision

    def _end(self, order: Order) -> None:
        del self._open[order.decision.id]
        del self._open_key[(order.rule.id, order.decision.enterprise)]
        self.detector.order_ended(order)

    def _close(self, order: Order) -> None:
        self._end(order)
        self.orders_closed += 1

    def _escalate(self, order: Order, time: str, events: tuple[str, ...]) -> Decision:
        self._end(order)
        self._closed_by_law.add(order.decision.enterprise)
        assert order.rule.escalation_basis is not None
        return self._record(order.rule, order.decision.enterprise, time, "close_by_law", None, order.rule.escalation_basis,
                            order.decision.findings, events, order.decision.id)

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Windows, open orders, closures, the clock, the detector's and the evaluation's state."""
        return {
            "windows": [[list(k), [[e.epoch, e.seq, e.finding, list(e.events)] for e in v]] for k, v in self._windows.items()],
            "newest": pairs(self._newest),
            "open": [[oid, {f.name: getattr(o.decision, f.name) for f in dataclasses.fields(o.decision)}, o.rule.id,
                      o.deadline] for oid, o in self._open.items()],
            "open_key": pairs(self._open_key),
            "done": sorted(list(k) for k in self._done),
            "closed_by_law": sorted(self._closed_by_law),
            "seq": self._seq,
            "clock": None if self.clock == float("-inf") else self.clock,
            "orders_closed": self.orders_closed,
            "detector": self.detector.state(),
            "evaluation": self.evaluation.state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        rules = {r.id: r for r in self.rules}
        self._windows = {(k[0], k[1]): [Entry(e[0], e[1], e[2], tuple(e[3])) for e in v] for k, v in state["windows"]}
        self._newest = {(k[0], k[1]): v for k, v in state["newest"]}
        self._open = {}
        for oid, decision, rule_id, deadline in state["open"]:
            if rule_id not in rules:
                raise CheckpointError(f"snapshot names decision rule {rule_id!r}, which this engine does not have")
            record = Decision(**{**decision, "findings": tuple(decision["findings"]), "events": tuple(decision["events"])})
            self._open[oid] = Order(record, rules[rule_id], deadline)
        self._open_key = {(k[0], k[1]): v for k, v in state["open_key"]}
        self._done = {(k[0], k[1]) for k in state["done"]}
        self._closed_by_law = set(state["closed_by_law"])
        self._seq = state["seq"]
        self.clock = float("-inf") if state["clock"] is None else state["clock"]
        self.orders_closed = state["orders_closed"]
        self.detector.restore(state["detector"])
        self.evaluation.restore(state["evaluation"])
