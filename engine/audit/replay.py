"""Replay: re-run an event log and compare with the decision log it produced.

`replay_records` is what `rectify run EVENTS` writes to --out (chained), made in memory by the
one run driver; `replay_kept` is the same for the events a live service kept in its store
(`rectify serve`), in arrival order and without an end of input (the service never reached
one); `first_divergence` names the first line and field where a log and a replay differ.

A replay uses the rule set the log was made with, not whatever is installed today:
`read_manifest` finds what made it (LOG.manifest.json next to a JSONL log, or the store's
meta; engine/run.py `manifest`), and `pinned_engine` rebuilds exactly that engine: the same
plugins at the same versions (any other installed plugin is left out, with a note), options,
parameters, backend and clock guard. A plugin that is missing or at another version is a
`ManifestError` naming it, and so is an engine whose fingerprint differs from the log's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import orjson

from engine.i18n import Message
from engine.ingest.archive import event_sources
from engine.output import Store, is_store
from engine.output.chain import CHAIN_FIELDS
from engine.output.jsonl import ListSink
from engine.output.store import Store
from engine.pipeline import Engine
from engine.plugins import load_plugins
from engine.run import Outputs, Run, manifest_path
from engine.validate import core_validator, describe
from engine.version import __version__


class ManifestError(ValueError):
    """The log's manifest cannot be honoured here: unreadable, or a plugin missing or at another
    version, or the engine it rebuilds does not have the log's fingerprint. `text` is the
    sentence as a Message (str() of the error: English)."""

    def __init__(self, text: Message) -> None:
        super().__init__(str(text))
        self.text = text


def read_manifest(log: str) -> dict[str, Any] | None:
    """The manifest of a decision log (JSONL: LOG.manifest.json; a store: its meta), or None when
    the log has none (made before manifests existed). ManifestError when it is not valid."""
    if is_store(log):
        with Store(log) as db:
            found = db.meta("manifest")
        where: str | Message = Message("{store} (meta 'manifest')", store=log)
    else:
        where = manifest_path(log)
        if not os.path.exists(where):
            return None
        try:
            with open(where, "rb") as handle:
                found = orjson.loads(handle.read(1 << 20))
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ManifestError(Message("{where}: cannot read the manifest: {error}", where=where, error=str(exc))) from None
    if found is None:
        return None
    error = jsonschema.exceptions.best_match(core_validator("manifest.schema.json").iter_errors(found))
    if error is not None:
        raise ManifestError(Message("{where}: not a valid manifest: {error}", where=where, error=describe(error)))
    return dict(found)


def pinned_engine(manifest: Mapping[str, Any]) -> tuple[Engine, list[Message]]:
    """The engine the manifest describes, and notes on what was left out (installed plugins the
    log was made without; str() of a note: English). ManifestError names what cannot be honoured."""
    installed = {info.name: info.version for info in load_plugins().infos}
    wanted: dict[str, str] = dict(manifest["plugins"])
    missing = [f"{name} {version}" for name, version in sorted(wanted.items()) if name not in installed]
    other = [Message("{plugin} {version} (installed: {installed})", plugin=name, version=version, installed=installed[name])
             for name, version in sorted(wanted.items()) if name in installed and installed[name] != version]
    if missing or other:
        parts = ([Message("not installed: {plugins}", plugins=missing)] if missing else []) + \
            ([Message("at another version: {plugins}", plugins=other)] if other else [])
        plugins = parts[0] if len(parts) == 1 else Message("{missing}; {other}", missing=parts[0], other=parts[1])
        raise ManifestError(Message("the log was made with plugin(s) {plugins}: install those versions to replay it",
                                    plugins=plugins))
    if manifest["evaluation_method"] is not None:
        raise ManifestError(Message("the log was made with a custom mu-average method ({method}): replay it with "
                                    "--ignore-manifest and the same options", method=manifest["evaluation_method"]))
    extra = sorted(set(installed) - set(wanted))
    notes = [Message("ignoring installed plugin {plugin} {version}: the log was made without it",
                     plugin=name, version=installed[name]) for name in extra]
    engine = Engine(disable=extra, options=manifest["options"], parameters=manifest["parameters"],
                    strict=manifest["strict"], backend=manifest["backend"],
                    dedupe_horizon_days=manifest["dedupe_horizon_days"],
                    clock_lead_days=manifest["clock"]["lead_days"], clock_quorum=manifest["clock"]["quorum"])
    if engine.ruleset != manifest["ruleset"]:
        raise ManifestError(Message("the rebuilt rule set {ruleset} is not the log's {logged} (rectify {made} made "
                                    "the log, this is rectify {version})", ruleset=engine.ruleset,
                                    logged=manifest["ruleset"], made=manifest["engine"], version=__version__))
    return engine, notes


def replay_records(engine: Engine, events: Iterable[str], as_of: str | None, quarantine: bool = True) -> list[dict[str, Any]]:
    """What `rectify run EVENTS` writes to --out, chained, in memory (without quarantine
    records when the log was written with --quarantine FILE). EVENTS: JSONL files, and archives
    made by `rectify archive` (the same records as the JSONL they were made from)."""
    out = ListSink()
    run = Run(engine, Outputs(out, None if quarantine else ListSink()), as_of=as_of)
    for source in event_sources(list(events)):
        run.feed(source)
    run.finish()
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
