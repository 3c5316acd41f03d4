"""Replay: re-run an event log and compare with the decision log it produced.

`replay_records` is what `rectify run EVENTS` writes to --out (chained), made in memory by the
one run driver; `replay_kept` is the same for the events a live service kept in its store
(`rectify serve`), in arrival order and without an end of input (the service never reached
one); `first_divergence` names the first line and field where a log and a replay differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from engine.ingest import JsonlFiles
from engine.output.chain import CHAIN_FIELDS
from engine.output.jsonl import ListSink
from engine.output.store import Store
from engine.pipeline import Engine
from engine.run import Outputs, Run


def replay_records(engine: Engine, events: Iterable[str], as_of: str | None, quarantine: bool = True) -> list[dict[str, Any]]:
    """What `rectify run EVENTS` writes to --out, chained, in memory (without quarantine
    records when the log was written with --quarantine FILE)."""
    out = ListSink()
    Run(engine, Outputs(out, None if quarantine else ListSink()), as_of=as_of).feed(JsonlFiles(events)).finish()
    return out.records


def replay_kept(engine: Engine, store: Store) -> list[dict[str, Any]]:
    """What a service that kept these events wrote: `rectify run` over them in arrival order,
    chained, without the end of input (open hourly windows stay open, as in the service)."""
    out = ListSink()
    Run(engine, Outputs(out)).feed(store.inputs())
    return out.records


@dataclass(frozen=True, slots=True)
class Divergence:
    line: int
    id: str | None
    field: str | None
    expected: Any
    replayed: Any

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.id, "field": self.field, "logged": self.expected, "replayed": self.replayed}


def first_divergence(logged: Iterable[bytes], replayed: Iterable[Mapping[str, Any]]) -> Divergence | None:
    """The first line where a replay differs from a log, and the first field that differs.

    Fields are compared in the log's order; `prev`/`hash` last (they differ only when an
    earlier record did, or the log was edited). A missing or extra record is reported at
    the line where one of the two ends.
    """
    replay = iter(replayed)
    number = 0
    for number, raw in enumerate(logged, start=1):
        mine = next(replay, None)
        try:
            theirs = orjson.loads(raw)
        except orjson.JSONDecodeError:
            theirs = None
        if not isinstance(theirs, dict):
            return Divergence(number, None, None, raw.decode("utf-8", "replace"), mine)
        rid = theirs.get("id") if isinstance(theirs.get("id"), str) else None
        if mine is None:
            return Divergence(number, rid, None, theirs, None)
        keys = [k for k in theirs if k not in CHAIN_FIELDS] + [k for k in mine if k not in theirs and k not in CHAIN_FIELDS]
        keys += [k for k in CHAIN_FIELDS if k in theirs or k in mine]
        for key in keys:
            if theirs.get(key, _MISSING) != mine.get(key, _MISSING):
                return Divergence(number, rid, key, theirs.get(key), mine.get(key))
    extra = next(replay, None)
    if extra is not None:
        return Divergence(number + 1, extra.get("id"), None, None, extra)
    return None


_MISSING = object()
