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

Land (docs/land.md): a missed deadline escalates to the rule's `escalation.action` (a closure,
or a land remedy such as the contract's remedies for missed standard-land commitments); every
escalation is a proposal, and only a closure closes the enterprise. A **watch** (a deadline
taken from an event's data, e.g. a parcel's agreed start date plus one year) is an order
without a record: when the clock passes its deadline the rule decides (time = the deadline) if
`when_due` holds, unless an `unless` event of the parcel came at or before it (a deadline already
past when the triggering event arrives is that event's time: never backdated). A **decisions**
trigger decides once per parcel an enterprise holds when the layer lists it or the mu-average
puts it in a class; the listing stands (until the order that listed it is completed or its
proposal withdrawn; a mu-average class until the next year's), and a parcel the enterprise
registers while it stands is decided the same way at its registration (`_consequences` and
`_on_registered_parcel` share `_decide_parcels`). Decisions about a parcel carry `parcel` and
are keyed by (enterprise, parcel); closing an enterprise does not stop decisions about its
land. A transfer or recovery of a parcel ends its holder's open orders and watches of it. A
rule with an `amount` (e.g. the idle-land fee: a share of the land price) writes it on its
decisions about a parcel, from the parcel's record when the decision (or watch) is made; the
approval and completion of such a decision carry it on.

Event time only. The clock is the latest event time seen; an order falls due when the clock
passes its deadline (a later event of any enterprise, or the end of input / `as_of`), so what
is decided never depends on when it was noticed.

Where correlations are detected is a `Detector`, handed in: `PlainDetector` here (plain
Python, the reference) or `ReteDetector` (durable_rules, engine/decide/rete_detector.py). The
layer keeps the state and makes every record, so the two can only differ in detection.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import heapq
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

from engine.decide.evaluation import Evaluation
from engine.decide.rules import CLOSE, DecisionRule, amount_of
from engine.normalise.parcels import Parcels
from engine.normalise.readings import calendar_edge, epoch_of, plus_days
from engine.records import Decision, Finding
from engine.state import CheckpointError, pairs

REMEDY = "contract_remedy"  # escalation of a missed standard-land commitment: remembered per parcel
TRANSFER_TYPES = ("land.parcel.recovered", "land.parcel.transferred")
_OFFSET = re.compile(r"([+-]\d\d:\d\d|Z)$")
ESCALATION = {"standard": "Environmental Protection Law of the PRC (2014)",
              "clause": "Art. 60: in serious cases, ordered to close with the approval of the people's government with approval authority",
              "note": "a closure proposal: the order's deadline passed without a passing verification, or a verification failed at or after it"}


class Order:
    """An open order: the decision, its deadline (epoch seconds), the basis an escalation cites,
    and the failing inspections and verifications seen while it ran; `remedy`: the action its
    escalation proposes. A watch (`watch`: the rule id) is an order without a record: `decision`
    is the decision the rule makes when the deadline passes (time = the deadline).

    `id`, `enterprise` and `parcel` are the decision's, kept beside it for the layer's indexes
    and the detectors. A watch opened by `Order.watching` makes its `Decision` only when
    `decision` is first read (when it decides, completes, or is written to a snapshot): most
    watches end or outlive the input without deciding. A plain slotted class, compared by
    identity (the layer never compares orders)."""

    __slots__ = ("_decision", "_pending", "deadline", "enterprise", "escalation", "evidence", "id", "parcel", "remedy",
                 "watch")

    def __init__(self, decision: Decision, deadline: float, escalation: Mapping[str, str],
                 evidence: list[str] | None = None, remedy: str = CLOSE, watch: str | None = None) -> None:
        self.id = decision.id
        self.enterprise = decision.enterprise
        self.parcel = decision.parcel
        self.deadline = deadline
        self.escalation = escalation
        self.evidence = [] if evidence is None else evidence
        self.remedy = remedy
        self.watch = watch
        self._decision: Decision | None = decision
        self._pending: Callable[[], Decision] | None = None

    @classmethod
    def watching(cls, rule: str, decision_id: str, enterprise: str, parcel: str | None, deadline: float,
                 make: Callable[[], Decision]) -> Order:
        """A watch of `rule` whose decision (id `decision_id`) `make` gives when first read."""
        order = cls.__new__(cls)
        order.id = decision_id
        order.enterprise = enterprise
        order.parcel = parcel
        order.deadline = deadline
        order.escalation = {}
        order.evidence = []
        order.remedy = CLOSE
        order.watch = rule
        order._decision = None
        order._pending = make
        return order

    @property
    def decision(self) -> Decision:
        made = self._decision
        if made is None:
            assert self._pending is not None
            made = self._decision = self._pending()
            self._pending = None
        return made

    def __repr__(self) -> str:
        return f"Order(id={self.id!r}, enterprise={self.enterprise!r}, parcel={self.parcel!r}, deadline={self.deadline!r}, watch={self.watch!r})"


@dataclass(frozen=True, slots=True)
class Entry:
    """A counted finding in a window: event time, arrival order, ids, and its parcel ("" for none)."""

    epoch: float
    seq: int
    finding: str
    events: tuple[str, ...]
    parcel: str = ""


def unit_of(enterprise: str, parcel: str | None) -> str:
    """The key decisions are made once per (rule, unit) with: the enterprise, or enterprise|parcel."""
    return enterprise if parcel is None else f"{enterprise}|{parcel}"


def watch_deadline(day: str, years: int, days: float, time: str) -> str | None:
    """The end (23:59:59, in the offset of `time`) of the local day `years` and `days` after the
    date `day` (YYYY-MM-DD); 29 February plus whole years falls on 28 February. None when `day`
    is not a date."""
    found = watch_deadline_epoch(day, years, days, time)
    return None if found is None else found[0]


def watch_deadline_epoch(day: str, years: int, days: float, time: str) -> tuple[str, float] | None:
    """`watch_deadline` and its epoch seconds."""
    if not isinstance(day, str):
        return None
    return _deadline(day[:10], years, days, time[max(len(time) - 7, 0):])


@functools.lru_cache(maxsize=4096)
def _deadline(day: str, years: int, days: float, tail: str) -> tuple[str, float] | None:
    """`watch_deadline_epoch` of the date `day` and a time ending in `tail` (its last seven
    characters, where its offset is). Cached, one cache for every watch rule: a parcel's watches
    share their deadlines (the lease's review and refusal both count from its expiry)."""
    moved = _day_after(day, years, days)
    if moved is None:
        return None
    found = _OFFSET.search(tail)  # the offset ends the time (a newline may follow `$`)
    offset = "+00:00" if found is None or found.group(0) == "Z" else found.group(0)
    deadline = f"{moved.isoformat()}T23:59:59{offset}"
    return deadline, epoch_of(deadline)


def _day_after(day: str, years: int, days: float) -> date | None:
    """`watch_deadline`'s date, or None when `day` is not a date; one past the calendar the
    records can hold (years 1 to 9999) is its first or last day."""
    try:
        start = date.fromisoformat(day)
    except ValueError:
        return None
    try:
        try:
            moved = start.replace(year=start.year + years)
        except ValueError:  # 29 February in a common year, or a year out of range (raised again)
            moved = start.replace(year=start.year + years, day=28)
        return moved + timedelta(days=days)
    except (ValueError, OverflowError):
        return calendar_edge(years * 366 + days > 0).date()


def record_id(rule: str, version: int, enterprise: str, time: str, action: str, findings: tuple[str, ...],
              events: tuple[str, ...], supersedes: str | None, status: str, parcel: str | None) -> str:
    """A decision's id: the digest of what it decides (the same inputs give the same id on
    every replay); a watch's is known when it opens, before its decision is made."""
    key = "|".join((rule, str(version), enterprise, time, action, ",".join(findings), ",".join(events), supersedes or "",
                    "" if status == "effective" else status) + (() if parcel is None else (parcel,)))
    return "D-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class Detector(Protocol):
    """Where the layer's correlations are detected. Told of every change to the state it may
    mirror (`entry_added`... `order_ended`), asked six questions (`count_reached`... `prevented`)."""

    name: str

    def count_reached(self, rule: DecisionRule, enterprise: str, window: list[Entry], entry: Entry) -> bool: ...

    def due(self, orders: Mapping[str, Order], epoch: float) -> list[str]:
        """The orders due at `epoch` (deadline before it). The layer passes the open orders whose
        deadline is before `epoch` (found through its heap of deadlines), not all open orders."""
        ...

    def verified(self, orders: Mapping[str, Order], enterprise: str, decision: str, epoch: float) -> str | None: ...

    def failed_late(self, orders: Mapping[str, Order], enterprise: str, decision: str, epoch: float) -> str | None: ...

    def running(self, orders: Mapping[str, Order], enterprise: str, epoch: float) -> list[str]:
        """The enterprise's open orders and watches whose deadline is at or after `epoch`. The layer
        passes the enterprise's open orders and watches (its index), not all open orders."""
        ...

    def prevented(self, orders: Mapping[str, Order], enterprise: str, parcel: str, rule: str, epoch: float) -> list[str]:
        """Open watches of `rule` on (enterprise, parcel) whose deadline is at or after `epoch`. The
        layer passes the open watches of `rule` on (enterprise, parcel) (its index), not all open orders."""
        ...

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
        if order is not None and order.enterprise == enterprise and epoch <= order.deadline:
            return decision
        return None

    def failed_late(self, orders: Mapping[str, Order], enterprise: str, decision: str, epoch: float) -> str | None:
        order = orders.get(decision)
        if order is not None and order.enterprise == enterprise and epoch >= order.deadline:
            return decision
        return None

    def running(self, orders: Mapping[str, Order], enterprise: str, epoch: float) -> list[str]:
        return [i for i, o in orders.items() if o.enterprise == enterprise and epoch <= o.deadline]

    def prevented(self, orders: Mapping[str, Order], enterprise: str, parcel: str, rule: str, epoch: float) -> list[str]:
        return [i for i, o in orders.items() if o.watch == rule and o.enterprise == enterprise
                and (o.parcel or "") == parcel and epoch <= o.deadline]

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
    """A decision as JSON data; its basis as pairs, so that its key order (written as is) survives
    a snapshot's sorted keys."""
    return {f.name: list(map(list, decision.basis.items())) if f.name == "basis" else getattr(decision, f.name)
            for f in dataclasses.fields(decision)}


def _restore_decision(data: Mapping[str, Any]) -> Decision:
    return Decision(**{**data, "basis": dict(data["basis"]), "findings": tuple(data["findings"]),
                       "events": tuple(data["events"])})


class DecisionLayer:
    """Per-enterprise decision state; fed by the Engine after each event's findings.

    A count window for (decision rule, enterprise or enterprise|parcel) holds the counted
    findings since the last reset; a finding with event time e fires the rule when at least
    `count` of them (itself included) lie in [e - within, e]. Entries older than the newest time
    seen minus `within` are dropped (without `within`, only the last `count`), so memory is
    bounded per enterprise.

    `escalation` is the basis an order without its own (a mu-average route with a deadline)
    cites when it escalates. `parcels` (the engine's `Parcels` stage) answers what watches,
    decisions triggers and `when_due` read of a parcel.
    """

    def __init__(self, rules: Iterable[DecisionRule], categories: Mapping[str, str], ruleset: str,
                 registration: Callable[[str], Mapping[str, Any] | None], evaluation: Evaluation,
                 detector: Detector | None = None, escalation: Mapping[str, str] | None = None,
                 parcels: Parcels | None = None) -> None:
        self.rules = tuple(rules)
        self.by_findings = tuple(r for r in self.rules if r.kind == "findings")
        self._by_registration = tuple(r for r in self.rules if r.kind == "registration")
        self._by_events = tuple(r for r in self.rules if r.kind == "events")
        self._watches = tuple(r for r in self.rules if r.kind == "watch")
        self._by_decisions = tuple(r for r in self.rules if r.kind == "decisions")
        self._land_types = frozenset(t for r in self._watches for t in (*(r.event_types or ()), *(r.unless_types or ())))
        # the watch rules an event type ends (`unless`) and opens, in rule order; built once
        self._ending = {t: tuple(r for r in self._watches if r.unless_types is not None and t in r.unless_types)
                        for t in self._land_types}
        self._opening = {t: tuple(r for r in self._watches if r.event_types is not None and t in r.event_types)
                         for t in self._land_types}
        self._rules = {r.id: r for r in self.rules}
        self._categories = categories
        self._counting: dict[tuple[str, str], tuple[DecisionRule, ...]] = {}  # (finding rule, plugin) -> rules it counts for
        self._ruleset = ruleset
        self._registration = registration
        self._parcels = parcels if parcels is not None else Parcels()
        self.detector: Detector = detector if detector is not None else PlainDetector()
        # the yearly mu-average evaluation: a barrier over all enterprises at `evaluation.closed`
        self.evaluation = evaluation
        self._escalation = escalation or ESCALATION
        self._windows: dict[tuple[str, str], list[Entry]] = {}
        self._newest: dict[tuple[str, str], float] = {}
        self._open: dict[str, Order] = {}
        self._heap: list[tuple[float, str]] = []  # (deadline, order id) of open orders; ended ones popped lazily
        # (watch rule, enterprise, parcel or "") -> its open watches by id (what `prevented` is asked about)
        self._watching: dict[tuple[str, str, str], dict[str, Order]] = {}
        self._of: dict[str, dict[str, Order]] = {}  # enterprise -> its open orders and watches by id
        self._open_key: dict[tuple[str, str], str] = {}  # (rule, unit) -> open order or watch
        self._done: set[tuple[str, str]] = set()
        self._proposals: dict[str, Decision] = {}
        self._closed_by_law: set[str] = set()
        self._watch: dict[str, tuple[str, ...]] = {}  # enterprise -> event-triggered rules that may fire on it
        self._classes: dict[str, list[Any]] = {}  # enterprise -> [year, class] of its latest mu-average class
        self._remedies: dict[str, list[str]] = {}  # enterprise|parcel -> contract-remedy proposals not withdrawn
        # enterprise -> decisions-trigger rule -> the decisions that triggered it and still stand, oldest
        # first, each [decision id, time, findings, events]; a parcel registered later is decided on the latest
        self._listed: dict[str, dict[str, list[list[Any]]]] = {}
        self._seq = 0
        self.clock = float("-inf")
        self.orders_closed = 0
        self.unmatched_approvals = 0

    @property
    def open_orders(self) -> int:
        """Open orders (watches, which have no record yet, are not counted)."""
        return sum(1 for o in self._open.values() if o.watch is None)

    @property
    def watched(self) -> Collection[str]:
        """Enterprises whose next event of a watched type decides (the batch path takes those exactly)."""
        return self._watch.keys()

    def next_deadline(self) -> float | None:
        """The earliest deadline of an open order or watch (epoch seconds), or None."""
        earliest = self._earliest()
        return None if earliest == math.inf else earliest

    def _earliest(self) -> float:
        heap = self._heap
        while heap:
            deadline, order_id = heap[0]
            order = self._open.get(order_id)
            if order is not None and order.deadline == deadline:
                return deadline
            heapq.heappop(heap)
        return math.inf

    def orders_of(self, enterprise: str) -> list[Decision]:
        """The open `rectify` orders of one enterprise (their decisions, deadline included), by deadline."""
        orders = sorted(self._of.get(enterprise, {}).values(), key=lambda o: (o.deadline, o.id))
        return [o.decision for o in orders]

    def is_closed(self, enterprise: str) -> bool:
        """Whether a closure of the enterprise is proposed or in effect."""
        return enterprise in self._closed_by_law

    # ---- the clock ----------------------------------------------------------------------

    def advance(self, epoch: float) -> list[Decision]:
        """Move the event-time clock; orders whose deadline it passed escalate, and watches
        decide, in deadline order."""
        if epoch <= self.clock:
            return []
        self.clock = epoch
        if not self._open or self._earliest() >= epoch:
            return []
        due = sorted((self._open[i] for i in self.detector.due(self._before(epoch), epoch)),
                     key=lambda o: (o.deadline, o.enterprise, o.id))
        out = []
        for order in due:
            made = self._fire(order) if order.watch is not None else \
                self._escalate(order, order.decision.deadline or "", tuple(order.evidence))
            if made is not None:
                out.append(made)
        return out

    def _before(self, epoch: float) -> dict[str, Order]:
        """The open orders whose deadline is before `epoch`, by id: the heap's entries below
        `epoch` (a subtree at its root), those of ended orders left out."""
        heap, found, size = self._heap, {}, len(self._heap)
        stack = [0] if size and heap[0][0] < epoch else []
        while stack:
            at = stack.pop()
            deadline, order_id = heap[at]
            order = self._open.get(order_id)
            if order is not None and order.deadline == deadline:
                found[order_id] = order
            for child in (2 * at + 1, 2 * at + 2):
                if child < size and heap[child][0] < epoch:
                    stack.append(child)
        return found

    def quiet_until(self) -> float:
        """The latest event time the clock can move to without an order falling due (the batch path)."""
        if not self._open:
            return math.inf
        return max(self.clock, self._earliest())

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
                for order_id in sorted(self.detector.running(self._of.get(subject, {}), subject, epoch)):
                    if self._open[order_id].watch is None:
                        self._open[order_id].evidence.append(event["id"])
        elif event_type == "approval.recorded":
            out.extend(self._on_approval(event))
        elif event_type == "enterprise.registered":
            out.extend(self._on_registration(event))
        elif event_type in ("finance.reported", "evaluation.closed"):
            for decision in self.evaluation.on_event(event, epoch, self._closed_by_law):
                out.append(self._adopt(decision))
        if event_type in self._land_types or event_type in TRANSFER_TYPES:
            self._on_land(event, epoch)
        if event_type == "land.parcel.registered" and self._listed:
            out.extend(self._on_registered_parcel(event))
        if self._watch and subject in self._watch:
            out.extend(self._on_watched(event))
        out.extend(self._findings(findings))
        return self._cascade(out)

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
        if data["decision"] in self.detector.running(self._of.get(subject, {}), subject, epoch):
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
        if not data["approved"]:
            if self._listed:
                self._delist(proposal.enterprise, proposal.id)
            unit = unit_of(proposal.enterprise, proposal.parcel)
            if proposal.id in self._remedies.get(unit, ()):
                self._remedies[unit].remove(proposal.id)
                if not self._remedies[unit]:
                    del self._remedies[unit]
            if proposal.action == CLOSE and not any(p.enterprise == proposal.enterprise and p.action == CLOSE
                                                    for p in self._proposals.values()):
                self._closed_by_law.discard(proposal.enterprise)
                self._rewatch(proposal.enterprise)
        return [self._record(proposal.rule, proposal.rule_version, proposal.list, proposal.enterprise, event["time"],
                             proposal.action, None, basis, proposal.findings, (event["id"],), proposal.id, status,
                             proposal.parcel, proposal.amount)]

    def on_findings(self, findings: Iterable[Finding]) -> list[Decision]:
        """Decisions caused by findings alone (the windows closed at the end of input)."""
        return self._cascade(self._findings(findings))

    def _findings(self, findings: Iterable[Finding]) -> list[Decision]:
        out: list[Decision] = []
        for finding in findings:
            counting = self._counting.get((finding.rule, finding.plugin))
            if counting is None:  # `counts` reads only the finding's rule and plugin: asked once per pair
                category = self._categories.get(finding.rule, "")
                counting = tuple(rule for rule in self.by_findings if rule.counts(finding, category))
                self._counting[(finding.rule, finding.plugin)] = counting
            epoch = epoch_of(finding.time)
            for rule in counting:
                if not self._may_decide(rule, finding.enterprise, finding.parcel):
                    continue
                if rule.where is not None and rule.where({"enterprise": self._registration(finding.enterprise), "params": rule.params}) is not True:
                    continue
                key = (rule.id, unit_of(finding.enterprise, finding.parcel))
                self._seq += 1
                entry = Entry(epoch, self._seq, finding.id, finding.event, finding.parcel or "")
                window = self._windows.setdefault(key, [])
                window.append(entry)
                self.detector.entry_added(rule, finding.enterprise, entry)
                self._prune(rule, key, finding.enterprise, window, epoch)
                if window and window[-1] is not entry:
                    continue  # arrived too late for any window: pruned at once, it can decide nothing
                if self.detector.count_reached(rule, finding.enterprise, window, entry):
                    low = epoch - rule.within if rule.within is not None else float("-inf")
                    counted = [e for e in window if low <= e.epoch <= epoch]
                    ids = tuple(e.finding for e in counted)
                    events = tuple(sorted({i for e in counted for i in e.events}))
                    out.append(self._decide(rule, finding.enterprise, finding.time, ids, events, finding.parcel))
        return out

    def _prune(self, rule: DecisionRule, key: tuple[str, str], enterprise: str, window: list[Entry], epoch: float) -> None:
        newest = max(self._newest.get(key, epoch), epoch)
        self._newest[key] = newest
        if rule.within is not None:
            dropped = [e for e in window if e.epoch < newest - rule.within]
        else:
            dropped = window[: max(0, len(window) - rule.count)]
        if dropped:
            gone = {e.seq for e in dropped}
            window[:] = [e for e in window if e.seq not in gone]
            self.detector.entries_dropped(rule, enterprise, dropped)

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

    # ---- land: watches, transfers, decisions about the parcels an enterprise holds -------------

    def _on_land(self, event: Mapping[str, Any], epoch: float) -> None:
        """A parcel's event: a transfer or recovery ends its holder's orders and watches of it; an
        `unless` event ends the watches it answers; a triggering event opens (or replaces) a watch.
        Watches decide later, when the clock passes their deadline (`advance`)."""
        event_type, holder, data = event["type"], event["subject"], event["data"]
        parcel = data.get("parcel") if isinstance(data.get("parcel"), str) else None
        if event_type in TRANSFER_TYPES:
            for order in sorted((o for o in self._of.get(holder, {}).values() if o.parcel == parcel), key=lambda o: o.id):
                self._end(order)
            return
        ending, opening = self._ending.get(event_type, ()), self._opening.get(event_type, ())
        if not ending and not opening:
            return
        record = self._parcels.get(holder, parcel) if parcel is not None else None
        # what `where` and `unless` read; "params" is each rule's own, set before each is asked
        scope = {"enterprise": self._registration(holder), "data": data, "parcel": record, "params": None}
        unit = unit_of(holder, parcel)
        for rule in ending:
            if (rule.id, unit) not in self._open_key:
                continue
            if rule.unless is not None:
                scope["params"] = rule.params
                if rule.unless(scope) is not True:
                    continue
            watches = self._watching.get((rule.id, holder, parcel or ""), {})
            for order_id in sorted(self.detector.prevented(watches, holder, parcel or "", rule.id, epoch)):
                self._end(self._open[order_id])
        for rule in opening:
            if rule.where is not None:
                scope["params"] = rule.params
                if rule.where(scope) is not True:
                    continue
            value: Any = {"data": data}
            for part in rule.deadline_from or ():  # a dict is a Mapping: spares the ABC's isinstance
                value = value.get(part) if type(value) is dict or isinstance(value, Mapping) else None
            found = watch_deadline_epoch(value, rule.deadline_years, rule.deadline_offset_days, event["time"]) \
                if isinstance(value, str) else None
            if found is None:
                continue
            deadline, due = found
            if due < epoch:  # already past when the engine learns of it: decided at once, never backdated
                deadline = event["time"]
                due = epoch_of(deadline)
            key = (rule.id, unit)
            replaced = self._open.get(self._open_key.get(key, ""))
            if replaced is not None:
                self._end(replaced)
            status, events = "proposed" if rule.approval else "effective", (event["id"],)
            decision_id = record_id(rule.id, rule.version, holder, deadline, rule.action, (), events, None, status, parcel)
            self._open_key[key] = decision_id
            make = functools.partial(self._record, rule.id, rule.version, rule.list, holder, deadline, rule.action, None,
                                     rule.basis, (), events, None, status, parcel, amount_of(rule, record))
            self._open_order(Order.watching(rule.id, decision_id, holder, parcel, due, make))

    def _fire(self, order: Order) -> Decision | None:
        """A watch whose deadline passed: its decision, if `when_due` holds then."""
        self._end(order)
        rule = self._rules[order.watch or ""]
        made = order.decision
        if rule.when_due is not None and rule.when_due(self._due_scope(rule, made.enterprise, made.parcel)) is not True:
            return None
        if rule.approval:
            self._proposals[made.id] = made
        if rule.action == CLOSE:
            self._closed_by_law.add(made.enterprise)
            self._watch.pop(made.enterprise, None)
        return made

    def _due_scope(self, rule: DecisionRule, holder: str, parcel: str | None) -> dict[str, Any]:
        """What `when_due` reads: the holder's registration, the parcel's record (with
        `commitments_missed`: a contract remedy was proposed for it and not withdrawn), the
        holder's latest mu-average class ({year, class} or null), the pack's parameters."""
        record = self._parcels.get(holder, parcel) if parcel is not None else None
        view = None if record is None else {**record, "commitments_missed": unit_of(holder, parcel) in self._remedies}
        latest = self._classes.get(holder)
        return {"enterprise": self._registration(holder), "parcel": view, "params": rule.params,
                "evaluation": None if latest is None else {"year": latest[0], "class": latest[1]}}

    def _consequences(self, decision: Decision) -> list[Decision]:
        """What a decision the layer made (or adopted) decides in turn: a mu-average class is
        remembered (`when_due` reads it); a `decisions` trigger decides once per parcel the
        enterprise holds, and remembers the decision as standing (parcels registered later,
        `_on_registered_parcel`); a mu-average decision that does not trigger it ends the last
        year's standing."""
        klass = (decision.evaluation or {}).get("class")
        source = "rules" if decision.evaluation is None else "evaluation"
        if klass is not None:
            self._classes[decision.enterprise] = [decision.evaluation["year"], klass]  # type: ignore[index]
        if not self._by_decisions or decision.status not in ("effective", "proposed"):
            return []
        out: list[Decision] = []
        for rule in self._by_decisions:
            if rule.decision_source != source:
                continue
            if decision.list not in rule.decision_lists and (klass is None or klass not in rule.decision_classes):
                if source == "evaluation":  # a new year's class that does not trigger: the last one no longer stands
                    self._unlist(decision.enterprise, rule.id)
                continue
            standing = [decision.id, decision.time, list(decision.findings), list(decision.events)]
            rules = self._listed.setdefault(decision.enterprise, {})
            if source == "evaluation":  # one class a year: the latest replaces the last
                rules[rule.id] = [standing]
            else:
                rules.setdefault(rule.id, []).append(standing)
            out.extend(self._decide_parcels(rule, decision.enterprise, decision.time, decision.findings, decision.events,
                                            self._parcels.held_by(decision.enterprise)))
        return out

    def _decide_parcels(self, rule: DecisionRule, enterprise: str, time: str, findings: tuple[str, ...],
                        events: tuple[str, ...], records: Iterable[Mapping[str, Any]]) -> list[Decision]:
        """A `decisions` trigger's decisions for parcels (`records`, by parcel id) of `enterprise`:
        one per parcel not decided by the rule before, where the rule's `where` holds."""
        out: list[Decision] = []
        for record in records:
            parcel = record["parcel"]
            if not self._may_decide(rule, enterprise, parcel):
                continue
            if rule.where is not None and rule.where({"enterprise": self._registration(enterprise),
                                                      "parcel": record, "data": None, "params": rule.params}) is not True:
                continue
            out.append(self._decide(rule, enterprise, time, findings, events, parcel))
        return out

    def _on_registered_parcel(self, event: Mapping[str, Any]) -> list[Decision]:
        """A parcel registered (bought, or received by transfer: the transferee registers it) by an
        enterprise whose listing stands: each `decisions` trigger decides for it as it decided for
        the parcels held at listing time (`_decide_parcels`: once per parcel), citing the latest
        standing decision's findings and events and the registration. Its time is the
        registration's, or the listing's when the registration is dated before it (a parcel held
        then is treated as one held then)."""
        holder = event["subject"]
        listed = self._listed.get(holder)
        record = self._parcels.get(holder, event["data"]["parcel"]) if listed else None
        if record is None or record["status"] != "held":
            return []
        out: list[Decision] = []
        for rule in self._by_decisions:
            standing = listed.get(rule.id) if listed else None
            if not standing:
                continue
            _, listed_at, findings, events = standing[-1]
            time = event["time"] if epoch_of(event["time"]) >= epoch_of(listed_at) else listed_at
            cited = tuple(events) if event["id"] in events else (*events, event["id"])
            out.extend(self._decide_parcels(rule, holder, time, tuple(findings), cited, [record]))
        return out

    def _delist(self, enterprise: str, decision: str) -> None:
        """The decision `decision` (an order completed, a proposal withdrawn) no longer stands for a
        `decisions` trigger: parcels `enterprise` registers later are not decided on it."""
        for rule in sorted(self._listed.get(enterprise, ())):
            self._unlist(enterprise, rule, decision)

    def _unlist(self, enterprise: str, rule: str, decision: str | None = None) -> None:
        """`decision` no longer stands for `rule` and `enterprise` (None: no decision does)."""
        rules = self._listed.get(enterprise)
        if rules is None or rule not in rules:
            return
        rules[rule] = [standing for standing in rules[rule] if decision is not None and standing[0] != decision]
        if not rules[rule]:
            del rules[rule]
        if not rules:
            del self._listed[enterprise]

    def _cascade(self, decisions: list[Decision]) -> list[Decision]:
        if not decisions:
            return decisions
        return [made for decision in decisions for made in (decision, *self._consequences(decision))]

    def absorb(self, decisions: Iterable[Decision]) -> list[list[Decision]]:
        """Distributed replay: the mu-average decisions of a barrier made by another engine (the
        driver's), for this engine's enterprises, taken over as this engine had made them: their
        orders opened here (and the orders they supersede ended), so verifications and deadlines
        find them; the class remembered; the land decisions they cause for the parcels held here
        (`_consequences`), one list per decision (the decisions themselves were written by the
        driver)."""
        out = []
        for decision in decisions:
            self._adopt(decision)
            out.append(self._consequences(decision))
        return out

    def hand_over(self, decisions: Iterable[Decision]) -> None:
        """Distributed replay, the driver's side of `absorb`: the orders these decisions opened are
        kept by the partitions that own their enterprises from now on (ended here, no record)."""
        for decision in decisions:
            order = self._open.get(decision.id)
            if order is not None:
                self._end(order)

    def finish(self, as_of: float | None = None) -> list[Decision]:
        """End of input: escalate what is due at `as_of` (default: the latest event time seen)."""
        if as_of is None:
            return []
        return self.advance(as_of)

    # ---- making decisions ---------------------------------------------------------------

    def _may_decide(self, rule: DecisionRule, enterprise: str, parcel: str | None = None) -> bool:
        if parcel is None and enterprise in self._closed_by_law:  # a closure does not settle the land
            return False
        key = (rule.id, unit_of(enterprise, parcel))
        if rule.action == "rectify":
            return key not in self._open_key
        return key not in self._done

    def _record(self, rule: str, version: int, listed: str | None, enterprise: str, time: str, action: str,
                deadline: str | None, basis: Mapping[str, str], findings: tuple[str, ...], events: tuple[str, ...],
                supersedes: str | None, status: str, parcel: str | None = None,
                amount: Mapping[str, Any] | None = None) -> Decision:
        return Decision(
            id=record_id(rule, version, enterprise, time, action, findings, events, supersedes, status, parcel),
            rule=rule, rule_version=version,
            enterprise=enterprise, time=time, list=listed, action=action, deadline=deadline, basis=basis,
            findings=findings, events=events, supersedes=supersedes, ruleset=self._ruleset, status=status,
            parcel=parcel, amount=amount,
        )

    def _decide(self, rule: DecisionRule, enterprise: str, time: str, findings: tuple[str, ...], events: tuple[str, ...],
                parcel: str | None = None) -> Decision:
        deadline = plus_days(time, rule.deadline_days) if rule.deadline_days is not None else None
        amount = amount_of(rule, self._parcels.get(enterprise, parcel)) if parcel is not None else None
        decision = self._record(rule.id, rule.version, rule.list, enterprise, time, rule.action, deadline, rule.basis,
                                findings, events, None, "proposed" if rule.approval else "effective", parcel, amount)
        key = (rule.id, unit_of(enterprise, parcel))
        if key in self._windows:  # the evidence is used up: counting starts again after this decision
            self.detector.entries_dropped(rule, enterprise, self._windows.pop(key))
        if rule.action == "rectify":
            self._open_key[key] = decision.id
        else:
            self._done.add(key)
        if deadline is not None:
            assert rule.escalation_basis is not None
            self._open_order(Order(decision, epoch_of(deadline), rule.escalation_basis, remedy=rule.escalation_action))
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
        self._open[order.id] = order
        self._index(order)
        if len(self._heap) > 2 * len(self._open) + 64:  # mostly ended orders: rebuild
            self._heap = [(o.deadline, i) for i, o in self._open.items() if i != order.id]
            heapq.heapify(self._heap)
        heapq.heappush(self._heap, (order.deadline, order.id))
        self.detector.order_opened(order)

    def _index(self, order: Order) -> None:
        """Note an open order or watch in `_of` (its enterprise's: what `running`, `orders_of` and a
        transfer look at), and a watch in `_watching` too (what `prevented` is asked about)."""
        self._of.setdefault(order.enterprise, {})[order.id] = order
        if order.watch is not None:
            self._watching.setdefault((order.watch, order.enterprise, order.parcel or ""), {})[order.id] = order

    def _end(self, order: Order) -> None:
        del self._open[order.id]
        mine = self._of[order.enterprise]
        del mine[order.id]
        if not mine:
            del self._of[order.enterprise]
        if order.watch is not None:
            where = (order.watch, order.enterprise, order.parcel or "")
            watches = self._watching[where]
            del watches[order.id]
            if not watches:
                del self._watching[where]
        key = (order.watch or order.decision.rule, unit_of(order.enterprise, order.parcel))
        if self._open_key.get(key) == order.id:
            del self._open_key[key]
        self.detector.order_ended(order)

    def _complete(self, order: Order, event: Mapping[str, Any]) -> Decision:
        self._end(order)
        self.orders_closed += 1
        made = order.decision
        record = self._record(made.rule, made.rule_version, made.list, made.enterprise, event["time"], made.action, None,
                              made.basis, made.findings, (event["id"],), made.id, "completed", made.parcel, made.amount)
        if self._listed:
            self._delist(made.enterprise, made.id)
        self._rewatch(made.enterprise)
        return record

    def _escalate(self, order: Order, time: str, events: tuple[str, ...]) -> Decision:
        """A missed deadline: a proposal of the order's remedy (a closure unless the rule says
        otherwise), superseding the order. Only a closure closes the enterprise."""
        self._end(order)
        made = order.decision
        if order.remedy == CLOSE:
            self._closed_by_law.add(made.enterprise)
            self._watch.pop(made.enterprise, None)
        proposal = self._record(made.rule, made.rule_version, made.list, made.enterprise, time, order.remedy, None,
                                order.escalation, made.findings, events, made.id, "proposed", made.parcel)
        self._proposals[proposal.id] = proposal
        if order.remedy == REMEDY:
            self._remedies.setdefault(unit_of(made.enterprise, made.parcel), []).append(proposal.id)
        return proposal

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Windows, orders and watches, proposals, closures, classes, remedies, standing listings,
        the clock, the detector's and the evaluation's state."""
        return {
            "windows": [[list(k), [[e.epoch, e.seq, e.finding, list(e.events), e.parcel] for e in v]]
                        for k, v in self._windows.items()],
            "newest": pairs(self._newest),
            "open": [[oid, _decision_state(o.decision), o.deadline, list(map(list, o.escalation.items())), list(o.evidence),
                      o.remedy, o.watch]
                     for oid, o in self._open.items()],
            "open_key": pairs(self._open_key),
            "done": sorted(list(k) for k in self._done),
            "proposals": [[pid, _decision_state(p)] for pid, p in self._proposals.items()],
            "closed_by_law": sorted(self._closed_by_law),
            "watch": [[e, list(r)] for e, r in self._watch.items()],
            "classes": [[e, c] for e, c in self._classes.items()],
            "remedies": [[u, list(p)] for u, p in self._remedies.items()],
            "listed": [[enterprise, rule, [list(s) for s in standing]]
                       for enterprise, rules in sorted(self._listed.items()) for rule, standing in sorted(rules.items())],
            "seq": self._seq,
            "clock": None if self.clock == float("-inf") else self.clock,
            "orders_closed": self.orders_closed,
            "unmatched_approvals": self.unmatched_approvals,
            "detector": self.detector.state(),
            "evaluation": self.evaluation.state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._windows = {(k[0], k[1]): [Entry(e[0], e[1], e[2], tuple(e[3]), e[4]) for e in v] for k, v in state["windows"]}
        self._newest = {(k[0], k[1]): v for k, v in state["newest"]}
        self._open = {oid: Order(_restore_decision(d), deadline, dict(escalation), list(evidence), remedy, watch)
                      for oid, d, deadline, escalation, evidence, remedy, watch in state["open"]}
        self._heap = [(o.deadline, i) for i, o in self._open.items()]
        heapq.heapify(self._heap)
        self._watching, self._of = {}, {}
        for order in self._open.values():
            self._index(order)
        self._open_key = {(k[0], k[1]): v for k, v in state["open_key"]}
        self._done = {(k[0], k[1]) for k in state["done"]}
        self._proposals = {pid: _restore_decision(d) for pid, d in state["proposals"]}
        self._closed_by_law = set(state["closed_by_law"])
        named = {r for _, rules in state["watch"] for r in rules} | {o.watch for o in self._open.values() if o.watch}
        unknown = sorted(named - set(self._rules))
        if unknown:
            raise CheckpointError(f"snapshot names decision rule(s) {', '.join(unknown)}, which this engine does not have")
        self._watch = {e: tuple(r) for e, r in state["watch"]}
        self._classes = {e: list(c) for e, c in state["classes"]}
        self._remedies = {u: list(p) for u, p in state["remedies"]}
        # a snapshot of an engine without decisions triggers may predate the key
        self._listed = {}
        for enterprise, rule, standing in state.get("listed", ()):
            self._listed.setdefault(enterprise, {})[rule] = [list(s) for s in standing]
        self._seq = state["seq"]
        self.clock = float("-inf") if state["clock"] is None else state["clock"]
        self.orders_closed = state["orders_closed"]
        self.unmatched_approvals = state["unmatched_approvals"]
        self.detector.restore(state["detector"])
        self.evaluation.restore(state["evaluation"])
