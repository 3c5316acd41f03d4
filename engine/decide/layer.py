"""The decision layer: findings, events and registrations become rectification decisions.

Decision rules are data (the `decisions:` of a rule pack; the programme's own policy is in
engine/decide/policy/programme.yaml; compiled by engine/decide/rules.py). Triggers:

- findings: at least `count` matching findings of one enterprise within `within_days` of
  event time (a count window), optionally with a `where` condition on the registration;
- events: any event of the given types from an enterprise whose registration meets `where`
  (discharging without an emission permit is itself the violation);
- registration: a condition on the enterprise's registration alone;
- the yearly mu-average evaluation (engine/decide/evaluation.py): a barrier at
  `evaluation.closed` that ranks every enterprise with a `finance.reported` for the year.

A decision with a deadline is an **order** (a rectification order, and every route given a
deadline: eliminate, relocate, merge, vacate, transform). A passing `rectification.verified`
at or before the deadline completes it (a record with status `completed`). It escalates to a
closure **proposal** (`close_by_law`, status `proposed`, superseding the order) when the
event-time clock passes the deadline without a passing verification (the proposal's time is
the deadline itself), or when a verification fails at or after the deadline. A failing
inspection or verification before the deadline is evidence on the order (its id goes into the
evidence of a later escalation), not a closure. Closures need the approval of the people's
government with approval authority (Environmental Protection Law Art. 60): an
`approval.recorded` event turns a proposal into an `effective` closure, or `withdrawn`.

Event time only. The clock is the latest event time seen; an order falls due when the clock
passes its deadline (a later event of any enterprise, or the end of input / `as_of`), so what
is decided never depends on when it was noticed.

Where correlations are detected is a `Detector`, handed in: `PlainDetector` here (plain
Python, the reference) or `ReteDetector` (durable_rules, engine/decide/rete_detector.py). The
layer keeps the state and makes every record, so the two can only differ in detection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.decide.evaluation import Evaluation
from engine.decide.rules import DecisionRule
from engine.normalise.readings import epoch_of, plus_days
from engine.records import Decision, Finding
from engine.state import CheckpointError, pairs

CLOSE = "close_by_law"
ESCALATION = {"standard": "Environmental Protection Law of the PRC (2014)",
              "clause": "Art. 60: in serious cases, ordered to close with the approval of the people's government with approval authority",
              "note": "a closure proposal: the order's deadline passed without a passing verification, or a verification failed at or after it"}


@dataclass(slots=True)
class Order:
    """An open order: the decision, its deadline (epoch seconds), the basis an escalation cites,
    and the failing inspections and verifications seen while it ran."""

    decision: Decision
    deadline: float
    escalation: Mapping[str, str]
    evidence: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Entry:
    """A counted finding in a window: event time, arrival order, ids."""

    epoch: float
    seq: int
    finding: str
    events: tuple[str, ...]


class Detector(Protocol):
    """Where the layer's correlations are detected. Told of every change to the state it may
    mirror (`entry_added`... `order_ended`), asked five questions (`count_reached`... `running`)."""

    name: str

    def count_reached(self, rule: DecisionRule, enterprise: str, window: list[Entry], entry: Entry) -> bool: ...

    def due(self, orders: Mapping[str, Order], epoch: float) -> list[str]: ...

    def verified(self, orders: Mapping[str, Order], enterprise: str, decision: str, epoch: float) -> str | None: ...

    def failed_late(self, orders: Mapping[str, Order], enterprise: str, decision: str, epoch: float) -> str | None: ...

    def running(self, orders: Mapping[str, Order], enterprise: str, epoch: float) -> list[str]: ...

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

    def failed_late(self, orders: Mapping[str, Order], enterprise: str, decision: str, epoch: float) -> str | None:
        order = orders.get(decision)
        if order is not None and order.decision.enterprise == enterprise and epoch >= order.deadline:
            return decision
        return None

    def running(self, orders: Mapping[str, Order], enterprise: str, epoch: float) -> list[str]:
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


def _decision_state(decision: Decision) -> dict[str, Any]:
    return {f.name: getattr(decision, f.name) for f in dataclasses.fields(decision)}


def _restore_decision(data: Mapping[str, Any]) -> Decision:
    return Decision(**{**data, "findings": tuple(data["findings"]), "events": tuple(data["events"])})


class DecisionLayer:
    """Per-enterprise decision state; fed by the Engine after each event's findings.

    A count window for (decision rule, enterprise) holds the counted findings since the last
    reset; a finding with event time e fires the rule when at least `count` of them (itself
    included) lie in [e - within, e]. Entries older than the newest time seen minus `within`
    are dropped (without `within`, only the last `count`), so memory is bounded per enterprise.

    `escalation` is the basis an order without its own (a mu-average route with a deadline)
    cites when it escalates.
    """

    def __init__(self, rules: Iterable[DecisionRule], categories: Mapping[str, str], ruleset: str,
                 registration: Callable[[str], Mapping[str, Any] | None], evaluation: Evaluation,
                 detector: Detector | None = None, escalation: Mapping[str, str] | None = None) -> None:
        self.rules = tuple(rules)
        self.by_findings = tuple(r for r in self.rules if r.kind == "findings")
        self._by_registration = tuple(r for r in self.rules if r.kind == "registration")
        self._by_events = tuple(r for r in self.rules if r.kind == "events")
        self._rules = {r.id: r for r in self.rules}
        self._categories = categories
        self._ruleset = ruleset
        self._registration = registration
        self.detector: Detector = detector if detector is not None else PlainDetector()
        # the yearly mu-average evaluation: a barrier over all enterprises at `evaluation.closed`
        self.evaluation = evaluation
        self._escalation = escalation or ESCALATION
        self._windows: dict[tuple[str, str], list[Entry]] = {}
        self._newest: dict[tuple[str, str], float] = {}
        self._open: dict[str, Order] = {}
        self._open_key: dict[tuple[str, str], str] = {}
        self._done: set[tuple[str, str]] = set()
        self._proposals: dict[str, Decision] = {}
        self._closed_by_law: set[str] = set()
        self._watch: dict[str, tuple[str, ...]] = {}  # enterprise -> event-triggered rules that may fire on it
        self._seq = 0
        self.clock = float("-inf")
        self.orders_closed = 0
        self.unmatched_approvals = 0

    @property
    def open_orders(self) -> int:
        return len(self._open)

    @property
    def watched(self) -> Collection[str]:
        """Enterprises whose next event of a watched type decides (the batch path takes those exactly)."""
        return self._watch.keys()

    def next_deadline(self) -> float | None:
        """The earliest deadline of an open order (epoch seconds), or None."""
        return min((o.deadline for o in self._open.values()), default=None)

    def orders_of(self, enterprise: str) -> list[Decision]:
        """The open `rectify` orders of one enterprise (their decisions, deadline included), by deadline."""
        orders = sorted((o for o in self._open.values() if o.decision.enterprise == enterprise),
                        key=lambda o: (o.deadline, o.decision.id))
        return [o.decision for o in orders]

    def is_closed(self, enterprise: str) -> bool:
        """Whether a closure of the enterprise is proposed or in effect."""
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
        return [self._escalate(order, order.decision.deadline or "", tuple(order.evidence)) for order in due]

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
        if event_type == "rectification.verified":
            out.extend(self._on_verification(event, epoch))
        elif event_type == "inspection.recorded":
            if data["result"] == "fail" and self._open:
                for order_id in sorted(self.detector.running(self._open, subject, epoch)):
                    self._open[order_id].evidence.append(event["id"])
        elif event_type == "approval.recorded":
            out.extend(self._on_approval(event))
        elif event_type == "enterprise.registered":
            out.extend(self._on_registration(event))
        elif event_type in ("finance.reported", "evaluation.closed"):
            for decision in self.evaluation.on_event(event, epoch, self._closed_by_law):
                out.append(self._adopt(decision))
        if self._watch and subject in self._watch:
            out.extend(self._on_watched(event))
        out.extend(self.on_findings(findings))
        return out

    def _on_verification(self, event: Mapping[str, Any], epoch: float) -> list[Decision]:
        subject, data = event["subject"], event["data"]
        if not self._open:
            return []
        if data["passed"]:
            done = self.detector.verified(self._open, subject, data["decision"], epoch)
            return [] if done is None else [self._complete(self._open[done], event)]
        late = self.detector.failed_late(self._open, subject, data["decision"], epoch)
        if late is not None:
            order = self._open[late]
            return [self._escalate(order, event["time"], (*order.evidence, event["id"]))]
        if data["decision"] in self.detector.running(self._open, subject, epoch):
            self._open[data["decision"]].evidence.append(event["id"])
        return []

    def _on_approval(self, event: Mapping[str, Any]) -> list[Decision]:
        data = event["data"]
        proposal = self._proposals.get(data["decision"])
        if proposal is None or proposal.enterprise != event["subject"]:
            self.unmatched_approvals += 1
            return []
        del self._proposals[proposal.id]
        basis = {"standard": proposal.basis.get("standard", ""), "clause": proposal.basis.get("clause", ""),
                 "note": f"{data['authority']} {data['document']}" + (f": {data['note']}" if data.get("note") else "")}
        status = "effective" if data["approved"] else "withdrawn"
        if not data["approved"] and not any(p.enterprise == proposal.enterprise for p in self._proposals.values()):
            self._closed_by_law.discard(proposal.enterprise)
            self._rewatch(proposal.enterprise)
        return [self._record(proposal.rule, proposal.rule_version, proposal.list, proposal.enterprise, event["time"],
                             proposal.action, None, basis, proposal.findings, (event["id"],), proposal.id, status)]

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
        self._rewatch(event["subject"], event["data"])
        return out

    def _rewatch(self, enterprise: str, registration: Mapping[str, Any] | None = None) -> None:
        """Which event-triggered rules may fire on the enterprise's next event."""
        if not self._by_events:
            return
        registration = registration if registration is not None else self._registration(enterprise)
        rules = tuple(r.id for r in self._by_events if self._may_decide(r, enterprise) and registration is not None
                      and (r.where is None or r.where({"enterprise": registration, "params": r.params}) is True))
        if rules:
            self._watch[enterprise] = rules
        else:
            self._watch.pop(enterprise, None)

    def _on_watched(self, event: Mapping[str, Any]) -> list[Decision]:
        out = []
        for rule_id in self._watch.get(event["subject"], ()):
            rule = self._rules[rule_id]
            if rule.event_types is not None and event["type"] in rule.event_types and self._may_decide(rule, event["subject"]):
                out.append(self._decide(rule, event["subject"], event["time"], (), (event["id"],)))
        if out:
            self._rewatch(event["subject"])
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

    def _record(self, rule: str, version: int, listed: str | None, enterprise: str, time: str, action: str,
                deadline: str | None, basis: Mapping[str, str], findings: tuple[str, ...], events: tuple[str, ...],
                supersedes: str | None, status: str) -> Decision:
        key = "|".join((rule, str(version), enterprise, time, action, ",".join(findings), ",".join(events), supersedes or "",
                        "" if status == "effective" else status))
        return Decision(
            id="D-" + hashlib.sha256(key.encode()).hexdigest()[:24], rule=rule, rule_version=version,
            enterprise=enterprise, time=time, list=listed, action=action, deadline=deadline, basis=basis,
            findings=findings, events=events, supersedes=supersedes, ruleset=self._ruleset, status=status,
        )

    def _decide(self, rule: DecisionRule, enterprise: str, time: str, findings: tuple[str, ...], events: tuple[str, ...]) -> Decision:
        deadline = plus_days(time, rule.deadline_days) if rule.deadline_days is not None else None
        decision = self._record(rule.id, rule.version, rule.list, enterprise, time, rule.action, deadline, rule.basis,
                                findings, events, None, "proposed" if rule.approval else "effective")
        key = (rule.id, enterprise)
        if key in self._windows:  # the evidence is used up: counting starts again after this decision
            self.detector.entries_dropped(rule, enterprise, self._windows.pop(key))
        if rule.action == "rectify":
            self._open_key[key] = decision.id
        else:
            self._done.add(key)
        if deadline is not None:
            assert rule.escalation_basis is not None
            self._open_order(Order(decision, epoch_of(deadline), rule.escalation_basis))
        if rule.approval:
            self._proposals[decision.id] = decision
        if rule.action == CLOSE:
            self._closed_by_law.add(enterprise)
            self._watch.pop(enterprise, None)
        return decision

    def _adopt(self, decision: Decision) -> Decision:
        """A decision made elsewhere (the mu-average evaluation): an order when it has a deadline;
        an order it supersedes is replaced (ends without completion or escalation)."""
        replaced = self._open.get(decision.supersedes or "")
        if replaced is not None:
            self._end(replaced)
        if decision.deadline is not None:
            self._open_order(Order(decision, epoch_of(decision.deadline), self._escalation))
        return decision

    def _open_order(self, order: Order) -> None:
        self._open[order.decision.id] = order
        self.detector.order_opened(order)

    def _end(self, order: Order) -> None:
        del self._open[order.decision.id]
        key = (order.decision.rule, order.decision.enterprise)
        if self._open_key.get(key) == order.decision.id:
            del self._open_key[key]
        self.detector.order_ended(order)

    def _complete(self, order: Order, event: Mapping[str, Any]) -> Decision:
        self._end(order)
        self.orders_closed += 1
        made = order.decision
        record = self._record(made.rule, made.rule_version, made.list, made.enterprise, event["time"], made.action, None,
                              made.basis, made.findings, (event["id"],), made.id, "completed")
        self._rewatch(made.enterprise)
        return record

    def _escalate(self, order: Order, time: str, events: tuple[str, ...]) -> Decision:
        self._end(order)
        made = order.decision
        self._closed_by_law.add(made.enterprise)
        self._watch.pop(made.enterprise, None)
        proposal = self._record(made.rule, made.rule_version, made.list, made.enterprise, time, CLOSE, None,
                                order.escalation, made.findings, events, made.id, "proposed")
        self._proposals[proposal.id] = proposal
        return proposal

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Windows, orders, proposals, closures, the clock, the detector's and the evaluation's state."""
        return {
            "windows": [[list(k), [[e.epoch, e.seq, e.finding, list(e.events)] for e in v]] for k, v in self._windows.items()],
            "newest": pairs(self._newest),
            "open": [[oid, _decision_state(o.decision), o.deadline, dict(o.escalation), list(o.evidence)]
                     for oid, o in self._open.items()],
            "open_key": pairs(self._open_key),
            "done": sorted(list(k) for k in self._done),
            "proposals": [[pid, _decision_state(p)] for pid, p in self._proposals.items()],
            "closed_by_law": sorted(self._closed_by_law),
            "watch": [[e, list(r)] for e, r in self._watch.items()],
            "seq": self._seq,
            "clock": None if self.clock == float("-inf") else self.clock,
            "orders_closed": self.orders_closed,
            "unmatched_approvals": self.unmatched_approvals,
            "detector": self.detector.state(),
            "evaluation": self.evaluation.state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._windows = {(k[0], k[1]): [Entry(e[0], e[1], e[2], tuple(e[3])) for e in v] for k, v in state["windows"]}
        self._newest = {(k[0], k[1]): v for k, v in state["newest"]}
        self._open = {oid: Order(_restore_decision(d), deadline, escalation, list(evidence))
                      for oid, d, deadline, escalation, evidence in state["open"]}
        self._open_key = {(k[0], k[1]): v for k, v in state["open_key"]}
        self._done = {(k[0], k[1]) for k in state["done"]}
        self._proposals = {pid: _restore_decision(d) for pid, d in state["proposals"]}
        self._closed_by_law = set(state["closed_by_law"])
        unknown = sorted({r for _, rules in state["watch"] for r in rules} - set(self._rules))
        if unknown:
            raise CheckpointError(f"snapshot names decision rule(s) {', '.join(unknown)}, which this engine does not have")
        self._watch = {e: tuple(r) for e, r in state["watch"]}
        self._seq = state["seq"]
        self.clock = float("-inf") if state["clock"] is None else state["clock"]
        self.orders_closed = state["orders_closed"]
        self.unmatched_approvals = state["unmatched_approvals"]
        self.detector.restore(state["detector"])
        self.evaluation.restore(state["evaluation"])
