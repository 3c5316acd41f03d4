"""The service's core: one engine and one store, written on the event loop between requests.

In: batches of input lines (from HTTP or HJ 212), submitted in arrival order. Out: for each
batch a receipt, once its lines, their records and the chain are committed: each line's
outcome (accepted, duplicate, or quarantined with the reason) and the records the batch gave;
and read-only views (status, an enterprise's state) that only ever see committed state.

    submit(lines) ──► waiting ──► _drain (a loop callback, after the requests ready now):
                                    events(seq, source, line) + the run driver → records (store, --out)
                                  COMMIT (one transaction for everything waiting: group commit)
                                  then the receipts; a checkpoint when one is due

Everything that touches the engine or writes the store runs on the event loop's thread, one
group at a time: no locks, no second writer, and no thread fighting the loop for the GIL
(measured: a writer thread beside the loop lost most of its time waiting to take the GIL back
after each SQLite call). Readers open their own read-only connections (SQLite WAL): they see
committed data only, from any thread.

Crash safety: a line and its records are committed together before the sender hears back,
so after `kill -9` the store holds exactly what was acknowledged (and perhaps a last group
that was committed but not yet answered; its senders send it again and get "duplicate").
A restart restores the engine from the last checkpoint (a snapshot taken between groups,
every `checkpoint_every` events and at shutdown) and feeds it the events kept after it,
checking that they give exactly the records the store holds: nothing acknowledged is lost,
nothing is decided twice. Determinism: the records equal `rectify run` over the kept events
in arrival order (no end of input: the service never reaches it), which `rectify replay
--verify STORE` checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, count, repeat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import orjson

from engine.normalise import calendar_edge
from engine.output import ListSink, Store, StoreError, dumps, unchained
from engine.output.store import CheckpointFileError, WalCheckpointer, checkpoint_file, write_checkpoint_file
from engine.pipeline import Engine
from engine.records import InputLine, Quarantined
from engine.run import Outputs, Run, manifest

SERVICE_KIND = "rectify serve"
BATCH_PATH_MIN = 32  # fewer lines than this go one by one (the batch path's set-up costs more)
BATCH_PATH_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one input line: `status` is accepted, duplicate or quarantined (`reason`)."""

    seq: int
    id: str | None
    status: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "id": self.id, "status": self.status}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class Receipt:
    """A submission, committed: its lines were given seq `first`, `first + 1`, ... in the order
    sent, with the id hints `ids`; every line was accepted except those in `exceptions` (offset
    in the submission -> (status, reason): duplicate, or quarantined with the reason); `records`:
    the records its lines gave as (seq in the store, record kind, id), in chain order. Nothing
    per accepted line is made until an answer is asked for."""

    first: int
    ids: list[str | None]
    exceptions: dict[int, tuple[str, str | None]]
    records: list[tuple[int, str, str | None]]

    @property
    def outcomes(self) -> list[Outcome]:
        """Each line's outcome, in the order sent."""
        exceptions = self.exceptions
        return [Outcome(seq, hint, *exceptions.get(offset, ("accepted", None)))
                for offset, (seq, hint) in enumerate(zip(count(self.first), self.ids))]

    def answer(self) -> dict[str, Any]:
        """The HTTP answer: counts, each line's outcome (as `Outcome.to_dict`), the records."""
        events = [{"seq": seq, "id": hint, "status": "accepted"} for seq, hint in zip(count(self.first), self.ids)]
        counts = {"accepted": len(events), "duplicate": 0, "quarantined": 0}
        for offset, (status, reason) in self.exceptions.items():
            event = events[offset]
            event["status"] = status
            if reason is not None:
                event["reason"] = reason
            counts[status] += 1
            counts["accepted"] -= 1
        return {**counts, "events": events,
                "records": [{"seq": seq, "record": kind, "id": rid} for seq, kind, rid in self.records]}


@dataclass(slots=True)
class _Batch:
    """Lines from one source to process, in the order sent: each an event line, or (HJ 212) a
    source's quarantine record of a bad packet (then `plain` is false); their id hints."""

    source: str
    lines: list[bytes | Quarantined]
    ids: list[str | None]
    plain: bool
    future: asyncio.Future[Receipt]


class _Lines:
    """A submission's lines as the batch path reads a file: chunks of (source, first seq, lines),
    no object per line (engine/fast/batch.py `chunks_of`); iterated, InputLine by InputLine."""

    def __init__(self, source: str, first: int, lines: list[bytes]) -> None:
        self.source, self.first, self.lines = source, first, lines

    def __iter__(self) -> Iterator[InputLine]:
        for seq, line in enumerate(self.lines, start=self.first):
            yield InputLine(self.source, seq, line)

    def chunks(self, size: int, skip: int = 0) -> Iterator[tuple[str, int, list[bytes]]]:
        for start in range(skip, len(self.lines), size):
            yield self.source, self.first + start, self.lines[start:start + size]


class Busy(RuntimeError):
    """Too many events wait for the writer (HTTP 503; the sender retries)."""


class Stopped(RuntimeError):
    """The service is stopping or has failed: nothing more is accepted."""


class _ServiceSink:
    """The chained records into the store; their JSON lines kept for --out until the commit;
    (seq, kind, id) of each noted for the receipt of the submission being written."""

    def __init__(self, store: Store, out: bool, seq: int) -> None:
        self.store = store
        self.pending: list[bytes] | None = [] if out else None
        self.seq = seq
        self.noted: list[tuple[int, str, str | None]] = []
        self.rejected: list[tuple[int, str, str]] = []  # (line, source, error) of quarantine records

    def write(self, record: dict[str, Any]) -> None:
        self.store.write(record)
        self.seq += 1
        if record["record"] == "quarantine":
            self.rejected.append((record["line"], record["source"], record["error"]))
        else:
            self.noted.append((self.seq, record["record"], record.get("id")))
        if self.pending is not None:
            self.pending.append(dumps(record))

    def close(self) -> None:
        pass


def _write_snapshot(engine: Engine, target: Path) -> None:
    """In the forked checkpoint child: the engine's snapshot to the checkpoint file `target`
    (synced, atomically), nothing else, at the lowest CPU priority: on a small machine the
    child's second or two of serialising must not take the core the service answers on."""
    # let go of the parent's sockets and files at once: a listening socket held here would keep
    # a restarted service from binding its port
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # the parent's handlers talk to its loop
    signal.alarm(3600)  # never outlive a stuck parent by much
    os.nice(19)
    write_checkpoint_file(target, engine.snapshot())


def iso(epoch: float | None) -> str | None:
    """An event-time clock (epoch seconds) as RFC 3339 in UTC, or None before the first event."""
    if epoch is None or epoch == float("-inf"):
        return None
    try:
        return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()
    except (ValueError, OverflowError):  # in year 0 or 10000 in UTC (valid local times at the calendar's ends)
        return calendar_edge(epoch > 0, timezone.utc).isoformat()


class Service:
    """One engine and one store, written on the event loop. Start, attach, submit, read, stop.

    `make_engine` builds a fresh engine of the service's configuration (the writer's own, and
    one for each explanation). `out`: also write the chained records as JSON lines to this
    file ('-' = stdout); the file is rewritten from the store at start, so it always equals it.
    `checkpoint_every`: events between engine snapshots (a restart replays at most about that
    many). `max_pending`: events allowed to wait to be written before submit raises Busy.
    `group`: most events per transaction. `fsync`: SQLite synchronous=FULL (an acknowledged
    event survives a power cut, not only a process kill).
    """

    def __init__(self, store_path: str | Path, make_engine: Callable[[], Engine], *, out: str | None = None,
                 checkpoint_every: int = 1_000_000, max_pending: int = 200_000, group: int = 5_000,
                 fsync: bool = False, on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.store_path = str(store_path)
        self.make_engine = make_engine
        self.out_path = out
        self.checkpoint_every = checkpoint_every
        self.max_pending = max_pending
        self.group = group
        self.fsync = fsync
        self.on_failure = on_failure
        self.ruleset = ""
        self.recovered: dict[str, Any] = {}
        self.failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: deque[_Batch] = deque()
        self._scheduled = False
        self._pending = 0
        self._stopping = False
        self._status: dict[str, Any] = {}
        self._readers: list[Store] = []
        self._local = threading.local()
        self._readers_lock = threading.Lock()
        self._hj212: list[dict[str, Any] | Quarantined] = []
        self._hj212_next: asyncio.Future[Receipt] | None = None  # the batch the packets waiting now go in
        self._hj212_last: asyncio.Future[Receipt] | None = None
        self._engine: Engine | None = None
        self._store: Store | None = None
        self._run: Run | None = None
        self._sink: _ServiceSink | None = None
        self._out: IO[bytes] | None = None
        self._seq = 0
        self._records = 0
        self._checkpointed = 0  # the seq the last checkpoint (written or being written) covers
        self._stored = 0  # the seq of the checkpoint in the store
        self._checkpoint_seconds: float | None = None
        self._child: tuple[Any, int, int, Path, float] | None = None  # process, seq, records, file, started
        self._wal: WalCheckpointer | None = None

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the store and restore the engine (checkpoint + the events kept after it). Raises
        StoreError if the store belongs to something else or does not replay to its records."""
        try:
            self._open()
        except BaseException:
            if self._wal is not None:
                self._wal.stop()
                self._wal = None
            if self._store is not None:
                self._store.close()
                self._store = None
            raise

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop submissions come from and groups are written on."""
        self._loop = loop

    def stop(self) -> None:
        """Stop accepting, write what waits, take a checkpoint, close (on the loop's thread)."""
        self._stopping = True
        if self._hj212 or self._hj212_next is not None:
            self._flush_hj212()
        if self._store is not None:
            self._abandon_child()
            if self._wal is not None:
                self._wal.stop()
                self._wal = None
                self._store.manual_checkpoints(False)
            if self.failure is None:
                try:
                    while self._waiting:
                        self._write_group()
                    if self._seq > self._stored:
                        self._checkpoint()
                except BaseException as exc:  # noqa: BLE001 - reported as the service's failure
                    self._fail(exc)
            if self._out is not None:
                self._out.flush()
                if self.out_path != "-":
                    self._out.close()
            self._store.close()
            self._store = None
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()

    @property
    def stopping(self) -> bool:
        return self._stopping or self.failure is not None

    # ---- input ----------------------------------------------------------------------------------

    def submit(self, items: list[tuple[bytes, str | None]], source: str = "http") -> asyncio.Future[Receipt]:
        """Queue lines (line, id hint) from one sender; the future gives their receipt once committed."""
        return self.submit_lines([line for line, _ in items], [hint for _, hint in items], source)

    def submit_lines(self, lines: list[bytes], ids: list[str | None], source: str = "http") -> asyncio.Future[Receipt]:
        """Queue one sender's lines and their id hints (as `binding.lines_from_http` gives them);
        the future gives their receipt once committed. Raises Busy or Stopped."""
        if self.stopping:
            raise Stopped("the service is stopping" if self.failure is None else f"the service failed: {self.failure}")
        if self._pending + len(lines) > self.max_pending and self._pending:
            raise Busy(f"{self._pending} events are waiting to be written; retry shortly")
        assert self._loop is not None, "attach() the event loop first"
        return self._queue(_Batch(source, lines, ids, True, self._loop.create_future()))  # type: ignore[arg-type]

    def _queue(self, batch: _Batch) -> asyncio.Future[Receipt]:
        assert self._loop is not None, "attach() the event loop first"
        self._waiting.append(batch)
        self._pending += len(batch.lines)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._drain)
        return batch.future

    def hj212_sink(self, record: dict[str, Any] | Quarantined) -> None:
        """The HJ 212 listener's sink: events and rejected packets wait for `durable`."""
        self._hj212.append(record)

    async def durable(self) -> None:
        """The HJ 212 listener awaits this before it replies: everything its sink was given is committed.

        The packets of every connection read in one turn of the loop go into one batch (queued
        after the callbacks ready now, or by the next `_drain` if that comes first, so they never
        wait for a group after the one being written), so a thousand loggers a second cost tens
        of batches, not a thousand."""
        if self._hj212 and self._hj212_next is None:
            if self.failure is not None:
                raise Stopped(f"the service failed: {self.failure}")
            assert self._loop is not None, "attach() the event loop first"
            self._hj212_next = self._loop.create_future()
            self._loop.call_soon(self._flush_hj212)
        waiting = self._hj212_next if self._hj212_next is not None else self._hj212_last
        if waiting is not None:
            await asyncio.shield(waiting)

    def _flush_hj212(self) -> None:
        """Queue what the HJ 212 listener's sink was given as one batch (the one `durable` awaits)."""
        assert self._loop is not None
        if not self._hj212 and self._hj212_next is None:  # already flushed (by stop)
            return
        future = self._hj212_next if self._hj212_next is not None else self._loop.create_future()
        items, self._hj212, self._hj212_next = self._hj212, [], None
        self._hj212_last = future
        if self.failure is not None:
            future.set_exception(Stopped(f"the service failed: {self.failure}"))
            future.exception()  # retrieved: a listener that went away must not leave it unread
            return
        lines: list[bytes | Quarantined] = [item if isinstance(item, Quarantined) else orjson.dumps(item) for item in items]
        ids = [None if isinstance(item, Quarantined) else item.get("id") for item in items]
        plain = not any(isinstance(line, Quarantined) for line in lines)
        self._queue(_Batch("hj212", lines, ids, plain, future))

    # ---- reading --------------------------------------------------------------------------------

    def view(self, function: Callable[[Engine], Any]) -> Any:
        """`function(engine)` on the loop's thread, between groups: the committed state."""
        if self.failure is not None or self._engine is None:
            raise Stopped(f"the service failed: {self.failure}" if self.failure is not None else "the service is closed")
        return function(self._engine)

    def status(self) -> dict[str, Any]:
        """Counts, clock and store as of the last commit."""
        status = dict(self._status)
        status["pending_events"] = self._pending
        status["state"] = "failed" if self.failure is not None else "stopping" if self._stopping else "running"
        return status

    @contextlib.contextmanager
    def reader(self) -> Iterator[Store]:
        """This thread's read-only connection to the store (opened on first use)."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = Store(self.store_path, readonly=True)
            self._local.store = store
            with self._readers_lock:
                self._readers.append(store)
        yield store

    # ---- writing ----------------------------------------------------------------------------------

    def _open(self) -> None:
        engine = self.make_engine()
        self.ruleset = engine.ruleset
        store = self._store = Store(self.store_path)
        if self.fsync:
            store.db.execute("PRAGMA synchronous=FULL")
        config = {"kind": SERVICE_KIND, "ruleset": engine.ruleset, "backend": engine.backend,
                  "clock": engine.clock.parameters}
        known = store.meta("config")
        if known is None and store.count():
            raise StoreError(f"{self.store_path} holds records of a `rectify run`, not of a service")
        if known is not None and known != config:
            if known.get("kind") != SERVICE_KIND:
                raise StoreError(f"{self.store_path} holds a `rectify run --store` run, not a service's records")
            differs = "; ".join(f"{k}: stored {known.get(k)!r}, now {config.get(k)!r}" for k in sorted(config)
                                if known.get(k) != config.get(k))
            raise StoreError(f"{self.store_path} was written with another configuration ({differs}); "
                             "start with the options, --params, clock guard and plugins it was made with")
        started = time.perf_counter()
        offset, skip = 0, 0
        lost: str | None = None
        try:
            found = store.checkpoint()
        except CheckpointFileError as exc:  # every event is kept: replay them all instead
            found, lost = None, str(exc)
        if found is not None:
            offset, state = found
            engine.restore(state)
            skip = store.checkpoint_records()
        # the events after the checkpoint, again: the engine's state, and a check of the records kept
        replay = ListSink()
        again = Run(engine, Outputs(replay, chain=False))
        replayed = 0
        for item in store.inputs(after=offset):
            again.feed_line(item)
            replayed += 1
        kept = [unchained(orjson.loads(line)) for _, line in store.page(after=skip, limit=-1)]
        if kept != replay.records:
            where = next((i for i, (a, b) in enumerate(zip(kept, replay.records)) if a != b), min(len(kept), len(replay.records)))
            raise StoreError(f"{self.store_path}: the events kept after the checkpoint do not give the records kept "
                             f"(first difference at record {skip + where + 1}: {len(kept)} kept, {len(replay.records)} "
                             "replayed); the store was changed, or the engine is not the one that wrote it")
        self._engine = engine
        self._seq = store.last_event()
        self._records = store.count()
        self._checkpointed = self._stored = offset
        current = store.checkpoint_file() if found is not None else None
        for stale in Path(self.store_path).parent.glob(Path(self.store_path).name + ".checkpoint-*"):
            if stale != current:  # a snapshot a killed process was still writing, or one replaced
                stale.unlink(missing_ok=True)
        self._open_out(store)
        self._sink = _ServiceSink(store, self._out is not None, self._records)
        self._run = Run(engine, Outputs(self._sink, prev=store.head()), batch_size=BATCH_PATH_CHUNK)
        if known is None:
            store.begin()
            store.set_meta("config", config)
            store.set_meta("manifest", manifest(engine))  # what `rectify replay --verify STORE` rebuilds
            store.commit()
        self.recovered = {"events": self._seq, "records": self._records, "checkpoint": offset, "replayed": replayed,
                          "seconds": round(time.perf_counter() - started, 3)}
        if lost is not None:
            self.recovered["checkpoint_lost"] = lost
        self._publish(store)
        store.manual_checkpoints()  # the log is copied into the database by a thread, not by commits
        self._wal = WalCheckpointer(self.store_path).start()

    def _open_out(self, store: Store) -> None:
        if self.out_path is None:
            return
        if self.out_path == "-":
            import sys

            self._out = sys.stdout.buffer
            return
        target = Path(self.out_path)
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as handle:
            store.export(handle)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(target)
        self._out = target.open("ab")

    def _drain(self) -> None:
        """A loop callback: write one group; come back (after the I/O now ready) while more wait."""
        self._scheduled = False
        if self.failure is not None or self._store is None:
            return
        try:
            if self._hj212 or self._hj212_next is not None:  # packets read meanwhile go in this group
                self._flush_hj212()
            self._write_group()
            self._collect_child()
            if self._wal is not None and not self._wal.alive:  # it failed: commits checkpoint again
                self._store.manual_checkpoints(False)
                self._wal = None
            if self._seq - self._checkpointed >= self.checkpoint_every:
                # between groups, whether or not more wait: under a sustained load the queue never
                # empties, and a checkpoint that waited for it never came (a restart replayed all)
                self._checkpoint_in_background()
            if self._waiting:
                self._scheduled = True
                assert self._loop is not None
                self._loop.call_soon(self._drain)
        except BaseException as exc:  # noqa: BLE001 - a fault in the engine or the store: stop, loudly
            self._fail(exc)

    # ---- checkpoints ----------------------------------------------------------------------------

    def _checkpoint_in_background(self) -> None:
        """Snapshot the engine in a forked child, so the loop does not stop for it (a snapshot
        takes seconds when millions of ids are remembered); store it when the child is done.

        The child gets a copy of the state as it is now, between groups: exactly the events up
        to `seq`, all committed. It only serialises it to a file (no SQLite, no loop) and exits;
        the loop stores the file as the checkpoint in a short transaction of its own."""
        if self._child is not None:
            return
        assert self._engine is not None and self._loop is not None
        target = checkpoint_file(self.store_path, self._seq)
        started = time.perf_counter()  # for /health only, never for a decision
        child = multiprocessing.get_context("fork").Process(target=_write_snapshot, args=(self._engine, target),
                                                            name="rectify-checkpoint", daemon=True)
        try:
            child.start()
        except OSError:  # no memory or processes for a child now: the next group tries again
            return
        self._child = (child, self._seq, self._records, target, started)
        self._checkpointed = self._seq
        self._loop.call_later(0.2, self._poll_child)

    def _poll_child(self) -> None:
        if self._child is None or self._store is None:
            return
        try:
            self._collect_child()
        except BaseException as exc:  # noqa: BLE001 - the store failed
            self._fail(exc)
            return
        if self._child is not None and self._loop is not None:
            self._loop.call_later(0.2, self._poll_child)

    def _collect_child(self) -> None:
        """Store the child's snapshot once it is done (between groups, on the loop)."""
        if self._child is None:
            return
        child, seq, records, target, started = self._child
        if child.is_alive():
            return
        self._child = None
        child.join()
        if child.exitcode != 0 or not target.exists():
            self._checkpointed = self._stored  # try again when the next one is due
            return
        self._save_checkpoint(seq, records, target, started)

    def _abandon_child(self) -> None:
        """Shutdown: a snapshot still being written is not needed (a newer one follows)."""
        if self._child is None:
            return
        child, _, _, target, _ = self._child
        self._child = None
        child.kill()
        child.join()
        for leftover in (target, target.with_name(target.name + ".partial")):
            leftover.unlink(missing_ok=True)

    def _write_group(self) -> None:
        batches: list[_Batch] = []
        events = 0
        while self._waiting and (not batches or events + len(self._waiting[0].lines) <= self.group):
            batch = self._waiting.popleft()
            batches.append(batch)
            events += len(batch.lines)
        self._write(batches)

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc
        while self._waiting:
            batch = self._waiting.popleft()
            if not batch.future.done():
                batch.future.set_exception(Stopped(f"the service failed: {exc!r}"))
        if self.on_failure is not None:
            self.on_failure(exc)

    def _write(self, batches: list[_Batch]) -> None:
        store, run, sink = self._store, self._run, self._sink
        assert store is not None and run is not None and sink is not None
        rows: list[Iterable[tuple[int, str, bool, bytes]]] = []
        receipts: list[Receipt] = []
        written = run.outputs.written
        lines = 0
        store.begin()
        try:
            for batch in batches:
                first = self._seq + 1
                self._seq += len(batch.lines)
                lines += len(batch.lines)
                receipts.append(self._feed(batch, first))
                seqs = range(first, self._seq + 1)
                if batch.plain:  # kept as they came, no tuple made here
                    rows.append(zip(seqs, repeat(batch.source), repeat(False), batch.lines))  # type: ignore[arg-type]
                else:
                    rows.append([(seq, batch.source, True, orjson.dumps(line.to_dict())) if isinstance(line, Quarantined)
                                 else (seq, batch.source, False, line) for seq, line in zip(seqs, batch.lines)])
            store.add_events(chain.from_iterable(rows))
            store.commit()
        except BaseException as exc:
            store.rollback()
            for batch in batches:
                if not batch.future.done():
                    batch.future.set_exception(Stopped(f"the service failed: {exc!r}"))
            raise
        self._records += run.outputs.written - written
        if self._out is not None and sink.pending is not None:
            self._out.write(b"".join(sink.pending))
            self._out.flush()
            sink.pending.clear()
        self._pending -= lines
        self._publish(store)
        for batch, receipt in zip(batches, receipts):
            if not batch.future.done():  # a sender that went away cancelled it
                batch.future.set_result(receipt)

    def _feed(self, batch: _Batch, first: int) -> Receipt:
        """One submission through the run driver: its lines' outcomes and its records.

        When none of its ids can be a duplicate (none remembered, none twice in it: live
        traffic), the batch path takes it (engine/fast/: quiet readings in bulk; the same
        records) and every line is accepted unless quarantined; otherwise each line goes on
        its own and the counts say which were duplicates. Either way the output is the one
        `rectify run` gives."""
        run, sink, engine = self._run, self._sink, self._engine
        assert run is not None and sink is not None and engine is not None
        sink.noted, sink.rejected = [], []
        lines, source, count_ = batch.lines, batch.source, len(batch.lines)
        ids = [hint for hint in batch.ids if hint is not None]
        exceptions: dict[int, tuple[str, str | None]] = {}
        if batch.plain and count_ >= BATCH_PATH_MIN and len(set(ids)) == len(ids) and not engine.dedupe.remembers(ids):
            run.feed(_Lines(source, first, lines))  # type: ignore[arg-type]  # plain: bytes only
            for line, rejected_source, error in sink.rejected:  # quarantined by the engine
                if rejected_source == source and first <= line < first + count_:
                    exceptions[line - first] = ("quarantined", error)
        else:
            summary = engine.summary
            for offset, line in enumerate(lines):
                duplicates = summary.duplicate
                records = run.feed_line(line if isinstance(line, Quarantined) else InputLine(source, first + offset, line))
                if len(records) == 1 and isinstance(records[0], Quarantined):
                    exceptions[offset] = ("quarantined", records[0].error)
                elif summary.duplicate > duplicates:
                    exceptions[offset] = ("duplicate", None)
        return Receipt(first, batch.ids, exceptions, sink.noted)

    def _checkpoint(self) -> None:
        """A checkpoint now, in this process (at shutdown)."""
        engine = self._engine
        assert engine is not None
        started = time.perf_counter()  # for /health only, never for a decision
        target = checkpoint_file(self.store_path, self._seq)
        write_checkpoint_file(target, engine.snapshot())
        self._save_checkpoint(self._seq, self._records, target, started)
        self._checkpointed = self._seq

    def _save_checkpoint(self, seq: int, records: int, target: Path, started: float) -> None:
        """Name the checkpoint file `target` (synced) in the store, in a short transaction of its
        own; then the file it replaces goes."""
        store = self._store
        assert store is not None
        previous = store.checkpoint_file()
        store.begin()
        try:
            store.keep_checkpoint_file(seq, target, records)
            store.commit()
        except BaseException:
            store.rollback()
            raise
        if previous is not None and previous != target:
            previous.unlink(missing_ok=True)
        self._stored = seq
        self._checkpoint_seconds = round(time.perf_counter() - started, 3)
        if "store" in self._status:
            self._status["store"] = {**self._status["store"], "checkpoint": seq,
                                     "checkpoint_seconds": self._checkpoint_seconds}

    def _publish(self, store: Store) -> None:
        engine, run = self._engine, self._run
        assert engine is not None and run is not None
        summary = engine.summary
        self._status = {
            "clock": iso(engine.decisions.clock),
            "counts": {"read": summary.read, "processed": summary.processed, "duplicate": summary.duplicate,
                       "quarantined": summary.quarantined, "findings": sum(summary.findings.values()),
                       "decisions": sum(summary.decisions.values()), "open_orders": engine.decisions.open_orders},
            "store": {"path": self.store_path, "events": self._seq, "records": self._records,
                      "head": run.outputs.head, "checkpoint": self._stored,
                      "checkpoint_seconds": self._checkpoint_seconds},
            "ruleset": engine.ruleset,
        }
