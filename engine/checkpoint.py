"""Engine state snapshots: a deterministic JSON serialisation of everything an Engine remembers.

`snapshot(engine)` captures the state that the next input line depends on: the run summary,
the registry, declared equipment, the ids seen (idempotency), the open hourly windows and the
decision layer (count windows, open orders, closed enterprises, the event-time clock). For
the rete backend the durable_rules facts are rebuilt from the layer's Python mirror on
`restore`, so a fresh host gets exactly the facts the old one held.

Never pickle: a store may come from elsewhere, and loading it must not run code. The bytes
are orjson with sorted keys, so two runs in the same state give the same snapshot.

Anything stateful that an Engine or its decision layer gains later must be taught here; an
attribute this module does not know makes `snapshot` fail loudly (CheckpointError), unless
the object offers `checkpoint_state()` / `restore_checkpoint_state(state)` itself.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any

import orjson

from engine.decisions import DecisionLayer, _Entry, _Order
from engine.normalise import Reading
from engine.records import Decision, RunSummary
from engine.windows import HourlyAverager, _Hour

FORMAT = 1

# Engine attributes fixed at construction (configuration, compiled rules): not state.
_ENGINE_STATIC = frozenset({
    "plugins", "options", "parameters", "rules", "inactive_rules", "ruleset", "validator", "strict", "_index",
    "_metrics", "decision_rules", "inactive_decisions", "backend", "method",
    "evaluation",  # the same object as the decision layer's `evaluation`: captured there
    "lane_stats",  # how the batch path took events: diagnostics, never part of a decision
})
_ENGINE_STATE = frozenset({"summary", "_registry", "_equipment", "_seen", "_hours", "_decisions"})
_LAYER_STATIC = frozenset({"rules", "_by_findings", "_by_registration", "_categories", "_ruleset", "_registration",
                           "host", "rete"})
_LAYER_STATE = frozenset({"_windows", "_newest", "_open", "_open_key", "_done", "_closed_by_law", "_seq", "clock",
                          "orders_closed", "_signals", "_entries", "_orders", "_clocks", "_ids", "evaluation"})
_EVALUATION_STATIC = frozenset({"method", "_ruleset", "_registration", "_closed_by_law", "keep"})
_EVALUATION_STATE = frozenset({"_finance", "_closed", "_streak", "rankings", "late_finance"})


class CheckpointError(RuntimeError):
    """The engine holds state this module cannot capture, or a snapshot does not fit the engine."""


def _extras(obj: Any, static: frozenset[str], state: frozenset[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted(vars(obj)):
        if name in static or name in state:
            continue
        value = getattr(obj, name)
        if hasattr(value, "checkpoint_state") and hasattr(value, "restore_checkpoint_state"):
            out[name] = value.checkpoint_state()
        else:
            raise CheckpointError(f"{what} attribute {name!r} is not covered by engine.checkpoint: teach it, "
                                  "or give the object checkpoint_state()/restore_checkpoint_state()")
    return out


def _restore_extras(obj: Any, extras: dict[str, Any]) -> None:
    for name, value in extras.items():
        getattr(obj, name).restore_checkpoint_state(value)


# ---- pieces -------------------------------------------------------------------------------


def _summary(summary: RunSummary) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(summary):
        value = getattr(summary, f.name)
        out[f.name] = {"counter": dict(value)} if isinstance(value, Counter) else value
    return out


def _restore_summary(data: dict[str, Any]) -> RunSummary:
    values = {k: Counter(v["counter"]) if isinstance(v, dict) and "counter" in v else v for k, v in data.items()}
    return RunSummary(**values)


def _reading(reading: Reading) -> dict[str, Any]:
    return {f.name: getattr(reading, f.name) for f in dataclasses.fields(reading)}


def _restore_reading(data: dict[str, Any]) -> Reading:
    return Reading(**{**data, "event_ids": tuple(data["event_ids"])})


def _hours(hours: HourlyAverager) -> dict[str, Any]:
    return {
        "open": [[list(key), {"start": h.start, "offset": h.offset.total_seconds(), "values": h.values, "o2": h.o2,
                              "ids": h.ids, "first": _reading(h.first) if h.first is not None else None}]
                 for key, h in hours._open.items()],
        "closed_until": [[list(key), until] for key, until in hours._closed_until.items()],
    }


def _restore_hours(data: dict[str, Any]) -> HourlyAverager:
    hours = HourlyAverager()
    for key, h in data["open"]:
        hours._open[tuple(key)] = _Hour(start=h["start"], offset=timedelta(seconds=h["offset"]), values=list(h["values"]),
                                        o2=list(h["o2"]), ids=list(h["ids"]),
                                        first=_restore_reading(h["first"]) if h["first"] is not None else None)
    for key, until in data["closed_until"]:
        hours._closed_until[tuple(key)] = until
    return hours


def _decision(decision: Decision) -> dict[str, Any]:
    return {f.name: getattr(decision, f.name) for f in dataclasses.fields(decision)}


def _restore_decision(data: dict[str, Any]) -> Decision:
    return Decision(**{**data, "findings": tuple(data["findings"]), "events": tuple(data["events"])})


def _evaluation(evaluation: Any) -> dict[str, Any] | None:
    """The mu-average evaluation (engine/evaluation.py): open years' finance, closed years, D streaks."""
    if evaluation is None:
        return None
    if hasattr(evaluation, "checkpoint_state"):
        return {"own": evaluation.checkpoint_state()}
    _extras(evaluation, _EVALUATION_STATIC, _EVALUATION_STATE, "mu-average evaluation")
    return {
        "finance": [[year, [[e, list(v)] for e, v in by.items()]] for year, by in evaluation._finance.items()],
        "closed": sorted(evaluation._closed),
        "streak": [[e, list(v)] for e, v in evaluation._streak.items()],
        "rankings": [[year, [dataclasses.asdict(r) for r in rows]] for year, rows in evaluation.rankings.items()],
        "late_finance": evaluation.late_finance,
    }


def _restore_evaluation(evaluation: Any, data: dict[str, Any] | None) -> None:
    if data is None:
        return
    if "own" in data:
        evaluation.restore_checkpoint_state(data["own"])
        return
    from engine.evaluation import Ranked

    evaluation._finance = {year: {e: tuple(v) for e, v in by} for year, by in data["finance"]}
    evaluation._closed = set(data["closed"])
    evaluation._streak = {e: tuple(v) for e, v in data["streak"]}
    evaluation.rankings = {year: [Ranked(**r) for r in rows] for year, rows in data["rankings"]}
    evaluation.late_finance = data["late_finance"]


def _layer(layer: DecisionLayer) -> dict[str, Any]:
    out: dict[str, Any] = {
        "windows": [[list(k), [[e.epoch, e.seq, e.finding, list(e.events)] for e in v]] for k, v in layer._windows.items()],
        "newest": [[list(k), v] for k, v in layer._newest.items()],
        "open": [[oid, _decision(o.decision), o.rule.id, o.deadline] for oid, o in layer._open.items()],
        "open_key": [[list(k), v] for k, v in layer._open_key.items()],
        "done": sorted(list(k) for k in layer._done),
        "closed_by_law": sorted(layer._closed_by_law),
        "seq": layer._seq,
        "clock": None if layer.clock == float("-inf") else layer.clock,
        "orders_closed": layer.orders_closed,
    }
    if hasattr(layer, "_entries"):  # the rete backend's mirror of its facts
        if any(layer._signals.values()):  # type: ignore[attr-defined]
            raise CheckpointError("rete signals pending between events")
        out["rete"] = {"entries": [[seq, fact] for seq, fact in layer._entries.items()],  # type: ignore[attr-defined]
                       "orders": [[oid, fact] for oid, fact in layer._orders.items()],  # type: ignore[attr-defined]
                       "clocks": [[e, fact] for e, fact in layer._clocks.items()],  # type: ignore[attr-defined]
                       "ids": layer._ids}  # type: ignore[attr-defined]
    out["evaluation"] = _evaluation(getattr(layer, "evaluation", None))
    out["extra"] = _extras(layer, _LAYER_STATIC, _LAYER_STATE, "decision layer")
    return out


def _restore_layer(layer: DecisionLayer, data: dict[str, Any]) -> None:
    rules = {r.id: r for r in layer.rules}
    layer._windows = {tuple(k): [_Entry(e[0], e[1], e[2], tuple(e[3])) for e in v] for k, v in data["windows"]}  # type: ignore[misc]
    layer._newest = {tuple(k): v for k, v in data["newest"]}  # type: ignore[misc]
    layer._open = {}
    for oid, decision, rule_id, deadline in data["open"]:
        if rule_id not in rules:
            raise CheckpointError(f"snapshot names decision rule {rule_id!r}, which this engine does not have")
        layer._open[oid] = _Order(_restore_decision(decision), rules[rule_id], deadline)
    layer._open_key = {tuple(k): v for k, v in data["open_key"]}  # type: ignore[misc]
    layer._done = {tuple(k) for k in data["done"]}  # type: ignore[misc]
    layer._closed_by_law = set(data["closed_by_law"])
    layer._seq = data["seq"]
    layer.clock = float("-inf") if data["clock"] is None else data["clock"]
    layer.orders_closed = data["orders_closed"]
    rete = data.get("rete")
    if rete is not None:
        if not hasattr(layer, "_entries"):
            raise CheckpointError("snapshot of the rete backend restored into the compiled backend")
        layer._entries = {seq: fact for seq, fact in rete["entries"]}  # type: ignore[attr-defined]
        layer._orders = {oid: fact for oid, fact in rete["orders"]}  # type: ignore[attr-defined]
        layer._clocks = {e: fact for e, fact in rete["clocks"]}  # type: ignore[attr-defined]
        layer._ids = rete["ids"]  # type: ignore[attr-defined]
        # a fresh host: assert the mirrored facts again (entries by arrival, then orders, then clocks)
        for _, fact in sorted(layer._entries.items()):  # type: ignore[attr-defined]
            layer._assert(fact["enterprise"], fact)  # type: ignore[attr-defined]
        for _, fact in sorted(layer._orders.items()):  # type: ignore[attr-defined]
            layer._assert(fact["enterprise"], fact)  # type: ignore[attr-defined]
        for _, fact in sorted(layer._clocks.items()):  # type: ignore[attr-defined]
            layer._assert(fact["enterprise"], fact)  # type: ignore[attr-defined]
        for kind in list(layer._signals):  # type: ignore[attr-defined]
            layer._take(kind)  # type: ignore[attr-defined]
    elif hasattr(layer, "_entries"):
        raise CheckpointError("snapshot of the compiled backend restored into the rete backend")
    _restore_evaluation(getattr(layer, "evaluation", None), data.get("evaluation"))
    _restore_extras(layer, data.get("extra", {}))


def _finite(value: float) -> float | None:
    return None if value in (float("-inf"), float("inf")) else value


def _infinite(value: float | None) -> float:
    return float("-inf") if value is None else value


def _dedupe(seen: Any) -> dict[str, Any]:
    """The ids seen (idempotency): a plain dict id -> digest, or engine.dedupe.DedupeIndex."""
    if isinstance(seen, dict):
        return {"plain": {k: v.hex() for k, v in seen.items()}}
    if hasattr(seen, "checkpoint_state"):
        return {"own": seen.checkpoint_state()}
    _extras(seen, frozenset({"horizon"}), frozenset({"_ids", "_newest", "_purged_at"}), "dedupe index")
    return {"ids": [[k, d.hex(), e] for k, (d, e) in seen._ids.items()], "newest": _finite(seen._newest),
            "purged_at": _finite(seen._purged_at)}


def _restore_dedupe(engine: Any, data: dict[str, Any]) -> None:
    if "plain" in data:
        engine._seen = {k: bytes.fromhex(v) for k, v in data["plain"].items()}
    elif "own" in data:
        engine._seen.restore_checkpoint_state(data["own"])
    else:
        seen = engine._seen
        seen._ids = {k: (bytes.fromhex(d), e) for k, d, e in data["ids"]}
        seen._newest = _infinite(data["newest"])
        seen._purged_at = _infinite(data["purged_at"])


# ---- the engine ---------------------------------------------------------------------------


def snapshot(engine: Any) -> bytes:
    """The engine's state as deterministic JSON bytes (sorted keys)."""
    state = {
        "format": FORMAT,
        "ruleset": engine.ruleset,
        "backend": engine.backend,
        "summary": _summary(engine.summary),
        "registry": engine._registry,
        "equipment": engine._equipment,
        "seen": _dedupe(engine._seen),
        "hours": _hours(engine._hours),
        "decisions": _layer(engine._decisions),
        "extra": _extras(engine, _ENGINE_STATIC, _ENGINE_STATE, "Engine"),
    }
    return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)


def restore(engine: Any, data: bytes) -> None:
    """Put a freshly built engine (same rule set, same backend) into the state of a snapshot."""
    state = orjson.loads(data)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"snapshot format {state.get('format')!r}, this engine reads {FORMAT}")
    if state["ruleset"] != engine.ruleset:
        raise CheckpointError(f"snapshot was taken with rule set {state['ruleset']}, this engine has {engine.ruleset}")
    if state["backend"] != engine.backend:
        raise CheckpointError(f"snapshot was taken on the {state['backend']} backend, this engine is {engine.backend}")
    engine.summary = _restore_summary(state["summary"])
    # the decision layer holds a bound `registry.get`: refill the same dict, never replace it
    engine._registry.clear()
    engine._registry.update(state["registry"])
    engine._equipment.clear()
    engine._equipment.update(state["equipment"])
    _restore_dedupe(engine, state["seen"])
    engine._hours = _restore_hours(state["hours"])
    _restore_layer(engine._decisions, state["decisions"])
    _restore_extras(engine, state.get("extra", {}))
