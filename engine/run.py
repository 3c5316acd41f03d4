"""The run driver: input lines through an engine into outputs. One driver for every run that writes.

`rectify run`, `rectify run --store` (crash-safe, resumable), `rectify replay`, `rectify demo`
and the reports all run through `Run`: chunks of input through the batch path (engine/fast/),
each chunk's records written through one output wiring (`Outputs`: sinks, quarantine apart when
asked, the hash chain), a checkpoint after a chunk when one is due, and the end of input
(`flush`, `as_of`). `feed_line` takes one event at a time for a live service, each record
written before it returns. Callers that only look at the records as they come (`explain`,
what-if, `evaluate`, an embedding program) use `Engine.run_batch`, the same batch path without
outputs.

    Run(engine, Outputs(JsonlSink(out))).feed(JsonlFiles(paths)).finish() -> RunSummary

`manifest` says what made a run's rule set and output (plugins and their versions, options,
parameters, backend, the clock guard, as_of, how the output was written): `rectify run` writes
it next to the log (`LOG.manifest.json`, `manifest_path`) or into the store's meta table, and
`rectify replay` rebuilds exactly that engine from it (engine/audit/replay.py). Its schema:
schemas/manifest.schema.json.

`archive_files` is the other way input goes through an engine: validated once and kept as a
Parquet archive (engine/ingest/archive.py) that `Run` replays with the same output.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from engine.decide import load_method
from engine.fast import CHUNK_LINES, FastLane, batches, parse_lines
from engine.fast.lane import EXACT
from engine.fast.workers import freeze_existing, thaw
from engine.ingest import JsonlFiles
from engine.ingest.archive import Archive, ArchiveError, ArchiveWriter, event_sources
from engine.normalise import DIGEST, id_hash
from engine.output import GENESIS, ChainedWriter, Store, StoreError
from engine.output.store import difference
from engine.pipeline import Engine, Line, Prepared
from engine.records import Quarantined, Record, RunSummary
from engine.version import __version__

MANIFEST_FORMAT = 1


def manifest(engine: Engine, *, as_of: str | None = None, quarantine_separate: bool = False,
             chain: bool = True) -> dict[str, Any]:
    """What made `engine`'s rule set and a run's output, as JSON data (schemas/manifest.schema.json).

    `ruleset` is the fingerprint every record names; the rest is what rebuilds an engine with
    that fingerprint: the plugins loaded and their versions (any other installed plugin must
    be disabled), options, the authority's parameters, strictness, backend, whether the
    mu-average method was the built-in one, the de-duplication horizon and the clock guard;
    and how the run wrote its output (`as_of`, quarantine records apart, the hash chain).
    """
    horizon = engine.dedupe.horizon
    builtin = load_method(None, engine.parameters).digest
    return {
        "manifest": MANIFEST_FORMAT,
        "ruleset": engine.ruleset,
        "engine": __version__,
        "plugins": {info.name: info.version for info in engine.plugins.infos},
        "options": list(engine.options),
        "parameters": engine.parameters,
        "strict": engine.strict,
        "backend": engine.backend,
        "evaluation_method": None if engine.method.digest == builtin else engine.method.digest,
        "dedupe_horizon_days": None if horizon is None else horizon / 86400.0,
        "clock": {"lead_days": engine.clock.lead_days, "quorum": engine.clock.quorum},
        "as_of": as_of,
        "quarantine_separate": quarantine_separate,
        "chain": chain,
    }


def manifest_path(log: str) -> str:
    """Where the manifest of a JSONL log lives: next to it."""
    return f"{log}.manifest.json"


@contextmanager
def long_run_collector() -> Iterator[None]:
    """The process's garbage collector set for a long run, and restored afterwards: what exists
    when it starts (plugins, compiled rules and schemas, restored state) is frozen out of
    collections, and young objects are collected less often. Used where rectify owns the process
    (the command line, the service, a distributed run's worker), never inside `Engine` or `Run`.

    With the defaults, full collections traversed the growing state and the blocks held between
    rounds: in a distributed replay of the 1,030,230-event demo log they took 1.0-1.7 s of each
    worker's 8-11 s of CPU (measured with gc.callbacks; docs/distributed.md); serving, they paused the
    loop for tens of milliseconds several times a minute (benchmarks/test_serve_load.py)."""
    thresholds = gc.get_threshold()
    gc.collect()
    frozen = freeze_existing()  # a process that froze objects itself keeps its own freeze
    gc.set_threshold(10_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        thaw(frozen)


class Sink(Protocol):
    def write(self, record: dict[str, Any]) -> Any: ...

    def close(self) -> None: ...


class Progress(Protocol):
    n: int | float

    def update(self, n: int | float) -> Any: ...


class Outputs:
    """The one output wiring: records to `out`, quarantine records to `quarantine` when given
    (else to `out` too); each sink hash-chained (prev, hash) unless `chain` is off. `prev`
    continues an existing chain (a resumed store)."""

    def __init__(self, out: Sink, quarantine: Sink | None = None, *, chain: bool = True, prev: str = GENESIS) -> None:
        self.chain = chain
        self.out: Any = ChainedWriter(out, prev) if chain else out
        self.quarantine: Any = None
        if quarantine is not None:
            self.quarantine = ChainedWriter(quarantine) if chain else quarantine

    def write(self, record: Record) -> None:
        if self.quarantine is not None and isinstance(record, Quarantined):
            self.quarantine.write(record.to_dict())
        else:
            self.out.write(record.to_dict())

    def write_all(self, records: Iterable[Record]) -> None:
        for record in records:
            self.write(record)

    @property
    def head(self) -> str | None:
        """The hash of the last record written to `out` (None without a chain)."""
        return self.out.head if self.chain else None

    @property
    def written(self) -> int:
        return int(self.out.written)

    def chain_info(self) -> dict[str, Any]:
        """{"chain": {records, head}} for a summary, or {} without a chain."""
        return {"chain": {"records": self.written, "head": self.head}} if self.chain else {}

    def close(self) -> None:
        self.out.close()
        if self.quarantine is not None:
            self.quarantine.close()


class Run:
    """Input → engine → outputs. `feed` as often as there is input, then `finish` once.

    `checkpoint(lines_done)` is called after a chunk once `every` more lines are done (the
    store commits the records and a snapshot there); `progress` (a tqdm-like bar) follows the
    lines read.
    """

    def __init__(self, engine: Engine, outputs: Outputs, *, as_of: str | None = None, workers: int = 0,
                 batch_size: int = CHUNK_LINES, progress: Progress | None = None,
                 checkpoint: Callable[[int], None] | None = None, every: int = 5000) -> None:
        self.engine = engine
        self.outputs = outputs
        self.as_of = as_of
        self.workers = workers
        self.batch_size = batch_size
        self.progress = progress
        self.checkpoint = checkpoint
        self.every = every

    def feed(self, lines: Iterable[Line], skip: int = 0, *, workers: int | None = None) -> Run:
        """Run input lines (files, lines or events) through the batch path; `skip` lines already
        done. `workers`: sorting processes for this input (by default the run's)."""
        engine, write = self.engine, self.outputs.write
        last = skip
        workers = self.workers if workers is None else workers
        for done, records in batches(engine, lines, batch_size=self.batch_size, workers=workers, skip=skip):
            for record in records:
                write(record)
            if self.progress is not None and engine.summary.read - self.progress.n >= 4096:
                self.progress.update(engine.summary.read - self.progress.n)
            if self.checkpoint is not None and done > last and done - last >= self.every:  # not inside a window
                self.checkpoint(done)
                last = done
        return self

    def feed_line(self, item: Line) -> list[Record]:
        """One line or event (a live service): its records, written before this returns."""
        records = self.engine.process_line(item, self.engine.summary.read + 1)
        self.outputs.write_all(records)
        return records

    def finish(self) -> RunSummary:
        """The end of input: open windows judged, what is due escalated; the run's summary."""
        self.outputs.write_all(self.engine.flush(self.as_of))
        if self.progress is not None:
            self.progress.update(self.engine.summary.read - self.progress.n)
        return self.engine.summary


def run_into_store(engine: Engine, lines: Any, store: Store, *, config: Mapping[str, Any], every: int = 5000,
                   as_of: str | None = None, progress: Progress | None = None) -> tuple[RunSummary, bool]:
    """A crash-safe run into a SQLite store: records and a checkpoint every `every` lines in one
    transaction; started again on the same store after a kill, it resumes from the checkpoint.

    `lines` must be re-readable (files). `config` (rule set, inputs, as_of…) must equal the one
    the store was started with. Returns (summary, resumed). Raises StoreError if the store
    belongs to another run or is already complete.
    """
    config = dict(config)
    known = store.meta("config")
    if known is not None and known != config:
        raise StoreError(f"{store.path} holds a run with another configuration: {difference(known, config)}")
    if store.meta("complete"):
        raise StoreError(f"{store.path} already holds a complete run ({store.count()} records, head {store.head()})")
    offset = 0
    found = store.checkpoint()
    if found is not None:
        offset, state = found
        engine.restore(state)
    elif store.count():
        raise StoreError(f"{store.path} holds records but no checkpoint")
    outputs = Outputs(store.sink(), prev=store.head())

    def checkpoint(done: int) -> None:
        store.save_checkpoint(done, engine.snapshot())
        store.commit()
        store.begin()

    store.begin()
    try:
        if known is None:
            store.set_meta("config", config)
            store.set_meta("manifest", manifest(engine, as_of=as_of))
        if progress is not None:
            progress.update(offset)
        summary = Run(engine, outputs, as_of=as_of, progress=progress, checkpoint=checkpoint, every=every) \
            .feed(lines, skip=offset).finish()
        store.set_meta("complete", True)
        store.set_meta("summary", {"ruleset": engine.ruleset, **summary.to_dict()})
        store.set_meta("head", outputs.head)
        store.set_meta("registry", dict(engine.registry))  # names for `decisions` and `notice` (the checkpoint goes)
        store.db.execute("DELETE FROM checkpoint")
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return engine.summary, found is not None


@dataclass(slots=True)
class ArchiveSummary:
    """What `archive_files` did: lines read, valid, quarantined; rows typed (the rest kept raw)."""

    read: int = 0
    valid: int = 0
    quarantined: int = 0
    typed: int = 0
    rows: int = 0  # rows in the archive after this write


def archive_files(engine: Engine, paths: Sequence[str | Path], directory: str | Path,
                  quarantine: Sink | None = None, *, buckets: int = 16) -> ArchiveSummary:
    """Validate JSONL files once (`engine.prepare_line`: schemas, units, strict mode) and append
    every line to the Parquet archive in `directory` (created when missing), in input order.

    Invalid lines are kept too (raw), so a replay quarantines them exactly as the JSONL would;
    their quarantine records also go to `quarantine` when given. Whether an id is a duplicate
    is a matter of the replay's state, not of the archive. A path may be an archive too: its
    lines are written again with the file and line they came from (an archive of an older
    format, or validated otherwise, becomes one this engine appends to and trusts). Raises
    ArchiveError (engine/ingest/archive.py) for a directory that is not an archive this engine
    can read or append to, or that is also the archive written.
    """
    sources = event_sources(paths)
    for given in sources:
        if isinstance(given, Archive) and Path(given.directory).resolve() == Path(directory).resolve():
            raise ArchiveError(f"{directory}: is an input too; write the archive to another directory")
    writer = ArchiveWriter(directory, engine.validation, DIGEST, buckets=buckets)
    summary = ArchiveSummary()
    lane = FastLane(engine)  # shape plans validate most readings by column, with their digests
    for files, lines, texts in _numbered_chunks(sources, CHUNK_LINES):
        events = parse_lines(texts)
        sorting = lane.sort(events, texts)  # with the bytes: a line that may repeat a key is checked one by one
        epochs: list[float | None] = list(sorting.epochs)
        digests = list(sorting.digests)
        for offset in [i for i, kind in enumerate(sorting.lane) if kind == EXACT]:  # not valid by column alone
            prepared = engine.prepare_checked(events[offset], texts[offset], files[offset], lines[offset]) \
                if sorting.valid[offset] else engine.prepare_line(texts[offset], files[offset], lines[offset])
            if isinstance(prepared, Prepared):
                events[offset], epochs[offset], digests[offset] = prepared.event, prepared.epoch, prepared.digest
                continue
            events[offset] = epochs[offset] = digests[offset] = None
            summary.quarantined += 1
            if quarantine is not None:
                quarantine.write(prepared.to_dict())
        hashes = [None if event is None else id_hash(event["id"]) for event in events]
        writer.add_rows(files, lines, texts, events, epochs, digests, hashes)
        summary.read += len(texts)
    writer.close()
    summary.valid = summary.read - summary.quarantined
    summary.rows, summary.typed = writer.manifest.rows, writer.typed
    return summary


def _numbered_chunks(sources: Sequence[JsonlFiles | Archive],
                     size: int) -> Iterator[tuple[list[str], list[int], list[bytes]]]:
    """(file and line number of each, lines) in chunks of up to `size` lines, in input order; an
    archive's lines with the file and line they were archived from."""
    for source in sources:
        if isinstance(source, Archive):
            lines = iter(source)  # the lines it was made from (bytes), with their file and line
            while piece := list(islice(lines, size)):
                yield [item.source for item in piece], [item.number for item in piece], \
                    [item.text for item in piece]  # type: ignore[misc]
        else:
            for name, first, texts in source.chunks(size):
                yield [name] * len(texts), list(range(first, first + len(texts))), texts
