"""The "rete" backend of the decision layer: correlations detected by durable_rules.

`DecisionLayer` (engine/decide/layer.py) keeps the records and the bookkeeping; this detector
answers its questions with joins in durable_rules and mirrors the state they need as
facts (through engine/decide/rete.py, which honours every measured quirk of durable_rules):

- count windows: one fact per counted finding `{kind: f, r, enterprise, p, e, s}`; a probe fact
  `{kind: probe, r, enterprise, p, e, lo, s}` is asserted and retracted at once; the rule
  joins the probe with `count - 1` earlier findings of the same enterprise, parcel (`p`, "p:"
  for none) and rule inside [lo, e], ordered by arrival (`s`) so each combination is counted once;
- deadlines vs the event-time clock: order facts `{kind: order, oid, enterprise, p, r, d}` and a
  per-enterprise clock fact `{kind: clock, enterprise, t}`; the rule fires when t > d
  (no timers: durable_rules' own timers use the wall clock); watches are order facts too;
- watches answered: a progress fact `{kind: progress, enterprise, p, r, e}` joined to the open
  watches of the same enterprise, parcel and rule with e <= d;
- sequences: a passing verification fact joined to its open order of the same enterprise with
  e <= d completes it; a failing one with e >= d escalates it; a failing-inspection (or early
  failing verification) fact joined to the enterprise's orders with e <= d finds the running
  orders it is evidence on.

Posting is one message at a time on one SafeHost with no background threads, so the action
order is replayable. tests/test_backends.py proves this backend and the reference give
byte-identical output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.decide.layer import Entry, Order
from engine.decide.rete import Outcome, ReteFault, SafeHost, ShardedRuleset, SidMap
from engine.decide.rules import DecisionRule
from engine.state import CheckpointError

_NUMERIC = ("e", "lo", "s", "d", "t")
_LOWEST = -1.0e15  # "no window": finite, as durable_rules refuses infinities


def _same(alias: str) -> dict[str, Any]:
    return {"enterprise": {alias: "enterprise"}}


def _parcel(parcel: str | None) -> str:
    """A parcel id as a fact value: prefixed, so that durable_rules never compares it as a number."""
    return "p:" + (parcel or "")


def decision_ruleset(rules: Iterable[DecisionRule], sink: Callable[[str, Any], None]) -> dict[str, Any]:
    """The durable_rules definition of the correlation rules, one count rule per decision rule."""
    definition: dict[str, Any] = {}
    for index, rule in enumerate(rules):
        conditions: list[dict[str, Any]] = [{"p": {"$and": [{"kind": "probe"}, {"r": rule.id}]}}]
        previous = None
        for n in range(1, rule.count):
            parts: list[dict[str, Any]] = [
                {"kind": "f"}, {"r": rule.id}, _same("p"), {"p": {"p": "p"}},
                {"$lt": {"s": {"p": "s"}}}, {"$gte": {"e": {"p": "lo"}}}, {"$lte": {"e": {"p": "e"}}},
            ]
            if previous is not None:
                parts.append({"$gt": {"s": {previous: "s"}}})
            previous = f"f{n}"
            conditions.append({previous: {"$and": parts}})
        definition[f"count_{index:03d}"] = {"all": conditions, "run": lambda c: sink("count", c.p.s)}
    order = {"o": {"kind": "order"}}
    definition["deadline_passed"] = {
        "all": [order, {"k": {"$and": [{"kind": "clock"}, _same("o"), {"$gt": {"t": {"o": "d"}}}]}}],
        "run": lambda c: sink("due", c.o.oid),
    }
    definition["verified_in_time"] = {
        "all": [order, {"v": {"$and": [{"kind": "verified"}, _same("o"), {"decision": {"o": "oid"}}, {"$lte": {"e": {"o": "d"}}}]}}],
        "run": lambda c: sink("verified", c.o.oid),
    }
    definition["failed_at_or_after_deadline"] = {
        "all": [order, {"u": {"$and": [{"kind": "unverified"}, _same("o"), {"decision": {"o": "oid"}}, {"$gte": {"e": {"o": "d"}}}]}}],
        "run": lambda c: sink("late", c.o.oid),
    }
    definition["watch_answered"] = {
        "all": [order, {"w": {"$and": [{"kind": "progress"}, _same("o"), {"p": {"o": "p"}}, {"r": {"o": "r"}},
                                       {"$lte": {"e": {"o": "d"}}}]}}],
        "run": lambda c: sink("prevented", c.o.oid),
    }
    definition["order_running"] = {
        "all": [order, {"i": {"$and": [{"kind": "inspection"}, _same("o"), {"$lte": {"e": {"o": "d"}}}]}}],
        "run": lambda c: sink("inspected", c.o.oid),
    }
    return definition


class ReteDetector:
    """The decision layer's correlations on durable_rules (sharded, collision-free sids)."""

    name = "rete"

    def __init__(self, rules: Iterable[DecisionRule], shards: int = 2400) -> None:
        self._signals: dict[str, list[Any]] = {"count": [], "due": [], "verified": [], "late": [], "inspected": [],
                                               "prevented": []}
        self.host = SafeHost()
        self.rete = ShardedRuleset(self.host, "decisions", decision_ruleset(rules, self._signal),
                                   SidMap(shards=shards), numeric_fields=_NUMERIC)
        self._entries: dict[int, dict[str, Any]] = {}
        self._orders: dict[str, dict[str, Any]] = {}
        self._clocks: dict[str, dict[str, Any]] = {}
        self._held: dict[str, int] = {}  # enterprise -> its order facts in `_orders` (its clock goes with the last)
        self._ids = 0

    def _signal(self, kind: str, value: Any) -> None:
        self._signals[kind].append(value)

    def _take(self, kind: str) -> list[Any]:
        values, self._signals[kind] = self._signals[kind], []
        return values

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    def _assert(self, enterprise: str, fact: dict[str, Any]) -> None:
        outcome = self.rete.assert_fact(enterprise, fact)
        if outcome is Outcome.OBSERVED:
            raise ReteFault("decisions", None, None, f"fact {fact['id']} observed twice")

    def _probe(self, enterprise: str, fact: dict[str, Any], kind: str) -> list[Any]:
        """Assert a short-lived fact, collect what the rules said, retract it."""
        self._assert(enterprise, fact)
        self.rete.retract_fact(enterprise, fact)
        return self._take(kind)

    # ---- mirrored state --------------------------------------------------------------------

    def entry_added(self, rule: DecisionRule, enterprise: str, entry: Entry) -> None:
        fact = {"id": self._id("f"), "kind": "f", "r": rule.id, "enterprise": enterprise, "p": _parcel(entry.parcel),
                "e": float(entry.epoch), "s": entry.seq}
        self._entries[entry.seq] = fact
        self._assert(enterprise, fact)

    def entries_dropped(self, rule: DecisionRule, enterprise: str, entries: list[Entry]) -> None:
        for entry in entries:
            self.rete.retract_fact(enterprise, self._entries.pop(entry.seq))

    def order_opened(self, order: Order) -> None:
        enterprise = order.enterprise
        fact = {"id": self._id("o"), "kind": "order", "oid": order.id, "enterprise": enterprise,
                "p": _parcel(order.parcel), "r": order.watch or "", "d": float(order.deadline)}
        if order.id not in self._orders:
            self._held[enterprise] = self._held.get(enterprise, 0) + 1
        self._orders[order.id] = fact
        self._assert(enterprise, fact)
        self._take("due")  # a stale clock cannot be past a new deadline; keep the signal list clean

    def order_ended(self, order: Order) -> None:
        enterprise = order.enterprise
        self.rete.retract_fact(enterprise, self._orders.pop(order.id))
        held = self._held[enterprise] - 1
        if held:
            self._held[enterprise] = held
        else:
            del self._held[enterprise]
            if enterprise in self._clocks:
                self.rete.retract_fact(enterprise, self._clocks.pop(enterprise))

    # ---- detection on durable_rules ------------------------------------------------------------

    def count_reached(self, rule: DecisionRule, enterprise: str, window: list[Entry], entry: Entry) -> bool:
        low = entry.epoch - rule.within if rule.within is not None else _LOWEST
        probe = {"id": self._id("p"), "kind": "probe", "r": rule.id, "enterprise": enterprise, "p": _parcel(entry.parcel),
                 "e": float(entry.epoch), "lo": float(low), "s": entry.seq}
        return bool(self._probe(enterprise, probe, "count"))

    def due(self, orders: Mapping[str, Order], epoch: float) -> list[str]:
        # only the clocks of enterprises with a deadline before `epoch` move (the others cannot fire):
        # spares thousands of clock updates when parcels are watched for years ahead
        for enterprise in sorted({o.enterprise for o in orders.values() if o.deadline < epoch}):
            old = self._clocks.get(enterprise)
            if old is not None:
                self.rete.retract_fact(enterprise, old)
            clock = {"id": self._id("c"), "kind": "clock", "enterprise": enterprise, "t": float(epoch)}
            self._clocks[enterprise] = clock
            self._assert(enterprise, clock)
        return sorted(set(self._take("due")))

    def verified(self, orders: Mapping[str, Order], enterprise: str, decision: str, epoch: float) -> str | None:
        fact = {"id": self._id("v"), "kind": "verified", "enterprise": enterprise, "decision": decision, "e": float(epoch)}
        found = self._probe(enterprise, fact, "verified")
        return found[0] if found else None

    def failed_late(self, orders: Mapping[str, Order], enterprise: str, decision: str, epoch: float) -> str | None:
        fact = {"id": self._id("u"), "kind": "unverified", "enterprise": enterprise, "decision": decision, "e": float(epoch)}
        found = self._probe(enterprise, fact, "late")
        return found[0] if found else None

    def running(self, orders: Mapping[str, Order], enterprise: str, epoch: float) -> list[str]:
        fact = {"id": self._id("i"), "kind": "inspection", "enterprise": enterprise, "e": float(epoch)}
        return sorted(set(self._probe(enterprise, fact, "inspected")))

    def prevented(self, orders: Mapping[str, Order], enterprise: str, parcel: str, rule: str, epoch: float) -> list[str]:
        fact = {"id": self._id("w"), "kind": "progress", "enterprise": enterprise, "p": _parcel(parcel), "r": rule,
                "e": float(epoch)}
        return sorted(set(self._probe(enterprise, fact, "prevented")))

    # ---- checkpoints ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The Python mirror of the facts held in durable_rules (rebuilt on `restore`)."""
        if any(self._signals.values()):
            raise CheckpointError("rete signals pending between events")
        return {"entries": [[seq, fact] for seq, fact in self._entries.items()],
                "orders": [[oid, fact] for oid, fact in self._orders.items()],
                "clocks": [[e, fact] for e, fact in self._clocks.items()],
                "ids": self._ids}

    def restore(self, state: Any) -> None:
        """A fresh host gets exactly the facts the old one held: entries by arrival, then orders, then clocks."""
        if state is None:
            raise CheckpointError("snapshot of the compiled backend restored into the rete backend")
        self._entries = {seq: fact for seq, fact in state["entries"]}
        self._orders = {oid: fact for oid, fact in state["orders"]}
        self._clocks = {e: fact for e, fact in state["clocks"]}
        self._held = {}
        for fact in self._orders.values():
            self._held[fact["enterprise"]] = self._held.get(fact["enterprise"], 0) + 1
        self._ids = state["ids"]
        for facts in (self._entries, self._orders, self._clocks):
            for _, fact in sorted(facts.items()):
                self._assert(fact["enterprise"], fact)
        for kind in list(self._signals):
            self._take(kind)
