"""One worker of a distributed replay (a Dask actor): reader, id shard and owner at once.

- As a **reader** it reads blocks of input (engine/distributed/blocks.py), runs the engine's
  stateless stages on them, sends each valid line's (id, digest, event time) to the line's id
  shard, summarises its block for the event-time clock, folds the block when the driver asks,
  and, once the clock is known, sends every line to the partition that owns its enterprise with
  the clock's time after it.
- As an **id shard** it holds the de-duplication index for the ids that hash to it: it finds the
  lines that repeat an id (the only ones whose verdict is not "new"), and later replays the index
  in input order, told only where the clock reached a new purge step.
- As an **owner** it holds the `Engine` of its enterprises and applies their lines in input
  order: quiet readings in bulk, everything else through the engine's per-event stages with the
  verdict of the shards; the clock moves by the times the readers sent, and what falls due is
  tagged with the line where the clock passed it (resolved afterwards by the readers).

Nodes send each other data directly (`deliver`, an async method: it runs on the worker's event
loop, so two nodes sending to each other at once never wait on each other's thread). The driver
orders the rounds; a node never waits for data that the previous round did not deliver.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import platform
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson

from engine.distributed.blocks import SHIFT, Block, Columns, numbers_from, read, rows, seen, shards_of
from engine.fast import FastLane
from engine.fast.lane import EXACT, FLAGGED
from engine.ingest.archive import rows_of
from engine.normalise import DedupeIndex, EventClock, IdColumns, Seen, Verdict, epoch_of, stream_of
from engine.pipeline import Engine, Prepared
from engine.records import Decision, Finding, InputLine, Quarantined, Record, RunSummary
from engine.run import long_run_collector

Tagged = tuple[int, int, tuple[Any, ...], Record]  # (line key, phase, order within the phase, record)
_Method = TypeVar("_Method", bound=Callable[..., Any])
SWITCH = 0.02  # seconds a worker's thread keeps the interpreter before another may take it (Python's default: 0.005)


@contextmanager
def long_slices(seconds: float = SWITCH) -> Iterator[None]:
    """The interpreter's thread switch interval for a worker's run, restored afterwards.

    A worker's reader thread and its actor's thread both run Python. At the default 5 ms they
    hand the interpreter back and forth so often that reading a block cost 13.9 µs of the
    reader's CPU per line beside a busy thread, against 8.1 µs alone; at 20 ms, 8.6 µs (six
    32 MiB blocks of the 1,032,591-event demo log, docs/distributed.md). Nothing in a worker
    waits on a short slice: the driver's rounds take seconds."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_DEFAULT_THRESHOLD = 128 << 10  # glibc's default for both (before it adjusts them itself)


def _glibc() -> Any:
    """The C library where it is glibc (whose malloc these settings are for), else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


@contextmanager
def roomy_heap(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> Iterator[None]:
    """glibc's malloc set to keep what a worker frees for its next block, for a run.

    A worker allocates and frees the same large buffers for every block (a block's bytes, its
    lines, lists and arrays of 100,000 entries). Left to its defaults malloc maps most of them
    anew and gives them back, and every page is faulted in again: `blocks.read` of four 32 MiB
    blocks in a spawned worker took 500,000-600,000 minor page faults and 1.2-1.5 s of system
    time; with these thresholds 104,000 and 0.23 s (docs/distributed.md). At the end the heap is
    trimmed and the thresholds set back to glibc's defaults (its own adjustment of them stays
    off: malloc cannot be told to resume it). Elsewhere than glibc: nothing."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
            libc.malloc_trim(0)


def timed(method: _Method) -> _Method:
    """A node's step: its thread's CPU seconds are added up by name (`Node.cpu`), for the run's report."""

    @functools.wraps(method)
    def step(self: Node, *args: Any, **kwargs: Any) -> Any:
        since = time.thread_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            name = method.__name__.lstrip("_")
            self.steps[name] = self.steps.get(name, 0.0) + time.thread_time() - since

    return step  # type: ignore[return-value]


def due_key(record: Decision) -> tuple[float, str, str]:
    """The order `DecisionLayer.advance` sorts what falls due in: deadline, enterprise, order id
    (an escalation supersedes its order; a watch's decision is its own id)."""
    return (epoch_of(record.time), record.enterprise, record.supersedes or record.id)


class DecidedElsewhere(DedupeIndex):
    """The de-duplication stage of an owner's engine: the id shards decide every verdict and hand
    it to `Engine.process_prepared`; quiet readings commit without being remembered here."""

    def __init__(self) -> None:
        super().__init__(None)

    def verdict(self, event_id: str, digest: int, epoch: float) -> Verdict:
        raise RuntimeError("distributed: an owner's verdicts come from the id shards")

    def check(self, event_id: str, digest: int, epoch: float) -> Seen:
        raise RuntimeError("distributed: an owner's verdicts come from the id shards")

    def advance(self, epoch: float) -> None:
        return None

    def add_new(self, ids: list[str], digests: list[int], epochs: list[float]) -> int:
        return 0

    def add_columns(self, columns: IdColumns, first: int, last: int, top: float, low: float) -> int:
        return 0


@dataclass
class Share:
    """A reader's lines of one block for one owner, in input order: what applying them needs.

    `kind` is EXACT for every line the owner must take one by one (not quiet, invalid, a
    repeated id, beyond the de-duplication horizon, held by the clock); `clock` the clock's time
    after each line; `codes` index `names` (the subjects of quiet lines; -1 elsewhere). `lines`
    holds the text (or the archive row, as a dict) of each EXACT line and None for the quiet
    ones: an owner that must take a quiet line exactly after all (its enterprise's next event
    decides) asks the reader for it (`line`)."""

    block: int
    keys: np.ndarray
    kind: np.ndarray
    clock: np.ndarray
    valid: np.ndarray
    beyond: np.ndarray
    codes: np.ndarray
    names: list[str]
    sources: list[str]
    source: np.ndarray
    numbers: np.ndarray
    lines: list[Any] = field(default_factory=list)
    reader: int = 0


@dataclass
class Reading:
    """A reader's block in the current chunk."""

    block: Block
    columns: Columns
    inputs: np.ndarray | None = None  # lines the clock observes (valid, not a possible repeat)
    folded: tuple[float, np.ndarray] | None = None  # (time before, times after each input) of an exact fold
    after: np.ndarray | None = None  # the clock after each line
    numbers: np.ndarray | None = None  # file line numbers
    excluded: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


@dataclass
class IdLines:
    """The valid lines of a chunk whose ids hash to this shard, in input order."""

    keys: np.ndarray
    ids: list[str]
    digests: np.ndarray
    epochs: np.ndarray
    owner: np.ndarray
    candidate: np.ndarray  # may repeat an id: remembered already, or earlier in the chunk
    cursor: int = 0  # lines replayed so far
    steps: int = 0  # purge steps applied so far
    verdicts: dict[int, dict[int, str]] = field(default_factory=dict)  # owner -> line key -> verdict (not "new")


@dataclass
class Merged:
    """An owner's lines of a chunk, from every reader, in input order."""

    chunk: int
    shares: list[Share]
    keys: np.ndarray
    kind: np.ndarray
    clock: np.ndarray
    codes: np.ndarray
    share: np.ndarray
    row: np.ndarray
    cursor: int = 0


class Node:
    """A worker's part of a distributed run (see the module docstring). `number` is its
    partition, `count` the number of partitions; the driver's own node has number `count`."""

    def __init__(self, engine_kwargs: Mapping[str, Any], number: int, count: int) -> None:
        self.started = time.process_time()
        self.number, self.count = number, count
        kwargs = dict(engine_kwargs)
        horizon = kwargs.get("dedupe_horizon_days", 7.0)
        self.engine = Engine(**kwargs, dedupe=DecidedElsewhere())
        self.engine.clock.follow()  # moved only by the times the readers send
        self.lane = FastLane(self.engine)
        self.index = DedupeIndex(horizon)
        self.horizon = self.index.horizon
        self.peers: list[Any] = []
        self.reading: dict[int, Reading] = {}
        self.ids: dict[int, dict[int, IdLines]] = {}  # chunk -> block -> lines from that block
        self.arrived = threading.Condition()  # data from other nodes arrives on the event loop
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="rectify-reader")
        self.pending: dict[int, Future[tuple[dict[str, Any], dict[int, IdLines]]]] = {}
        self.shard: dict[int, IdLines] = {}
        self.shares: dict[int, dict[int, Share]] = {}
        self.verdicts: dict[int, dict[int, str]] = {}  # chunk -> key -> verdict
        self.merged: dict[int, Merged] = {}
        self.names: list[str] = []
        self.codes: dict[str, int] = {}
        self.known = np.zeros(0, dtype=bool)
        self.registered = -1
        self.position = -1  # the key up to which the clock has been applied here
        self.usage = {"read": 0, "owned": 0, "ids": 0, "exact": 0, "watched": 0}
        self.steps: dict[str, float] = {}  # CPU seconds per step (this process)
        self.collector = ExitStack()  # a worker's process is the run's until `flush` (the driver's is the caller's)
        if number < count:
            self.collector.enter_context(long_run_collector())
            self.collector.enter_context(long_slices())
            self.collector.enter_context(roomy_heap())
        self.built = time.process_time()  # start-up (the engine built) ends here: the rounds begin

    def info(self) -> dict[str, Any]:
        return {"ruleset": self.engine.ruleset, "validation": self.engine.validation, "partition": self.number,
                "pid": os.getpid()}

    def connect(self, peers: list[Any]) -> None:
        self.peers = peers

    def stat(self, path: str) -> dict[str, Any]:
        """An input file or archive as this worker sees it (blocks.py `seen`: a file's size, an
        archive's manifest and part file sizes; no line or row is read)."""
        return seen(path)

    def cpu(self) -> dict[str, Any]:
        """CPU seconds of this worker's process since the node started, and since its engine was
        built (the rounds), by step, and its rows: lines read, lines applied as their owner, ids
        de-duplicated."""
        now = time.process_time()
        return {"partition": self.number, "pid": os.getpid(), "cpu_s": now - self.started, "rounds_cpu_s": now - self.built,
                **self.usage, "steps": {k: round(v, 3) for k, v in self.steps.items()}}

    # ---- data between nodes ---------------------------------------------------------------

    async def deliver(self, kind: str, chunk: int, key: int, payload: Any) -> None:
        self._store(kind, chunk, key, payload)

    def _store(self, kind: str, chunk: int, key: int, payload: Any) -> None:
        with self.arrived:
            if kind == "ids":
                self.ids.setdefault(chunk, {})[key] = payload
            elif kind == "share":
                self.shares.setdefault(chunk, {})[key] = payload
            else:
                self.verdicts.setdefault(chunk, {}).update(payload)
            self.arrived.notify_all()

    def _send(self, kind: str, chunk: int, key: int, payloads: Mapping[int, Any]) -> None:
        """Deliver each payload to its node (this one directly) and wait until all have arrived."""
        waiting = []
        for node, payload in payloads.items():
            if node == self.number:
                self._store(kind, chunk, key, payload)
            else:
                waiting.append(self.peers[node].deliver(kind, chunk, key, payload))
        for future in waiting:
            future.result()

    # ---- reader -----------------------------------------------------------------------------

    def read(self, chunk: int, block: Block) -> None:
        """Start reading a block in the background (`read_result` waits for it): the driver asks
        for the next chunk's blocks while this chunk's other steps run, so no worker waits idle."""
        self.pending[chunk] = self.reader.submit(self._read, chunk, block)

    @timed
    def read_result(self, chunk: int) -> dict[str, Any]:
        """Wait for the block of `chunk` to be read, send each valid line's id to its shard;
        the block's size and its `evaluation.closed` lines (key, year)."""
        found, payloads = self.pending.pop(chunk).result()
        self._send("ids", chunk, found["block"], payloads)  # from this (the actor's) thread: Dask's actor calls
        return found  # type: ignore[no-any-return]

    @timed
    def _read(self, chunk: int, block: Block) -> tuple[dict[str, Any], dict[int, IdLines]]:
        """Read and sort a block (on the reader thread); what goes to each shard."""
        columns = read(block, self.engine, self.lane, self.number, self.count)
        self.reading[chunk] = Reading(block, columns)
        self.usage["read"] += len(columns)
        base = block.number << SHIFT
        valid = np.flatnonzero(columns.valid)
        ids = columns.ids
        valid_ids = [ids[i] for i in valid.tolist()]
        shard = shards_of(valid_ids, self.count)
        payloads = {}
        for node in range(self.count):
            mine = np.flatnonzero(shard == node)
            lines = valid[mine]
            payloads[node] = IdLines(base | lines.astype(np.int64),
                                     valid_ids if self.count == 1 else [valid_ids[i] for i in mine.tolist()],
                                     columns.digest[lines], columns.epoch[lines], columns.owner[lines],
                                     np.zeros(len(lines), dtype=bool))
        return {"block": block.number, "lines": len(columns),
                "barriers": [(base | i, year) for i, year in columns.barriers]}, payloads

    @timed
    def summarise(self, chunk: int, exclude: np.ndarray, include: np.ndarray) -> Any:
        """The clock's summary of the block's lines that it observes: valid ones, except those
        that may repeat an id (`exclude`), unless they turned out new and ahead (`include`)."""
        reading = self.reading[chunk]
        inputs = reading.columns.valid.copy()
        inputs[exclude] = False
        inputs[include] = True
        reading.inputs, reading.folded, reading.excluded = inputs, None, exclude
        return self.engine.clock.summary(reading.columns.epoch[inputs])

    @timed
    def fold(self, chunk: int, state: dict[str, Any]) -> dict[str, Any]:
        """Fold the block into the clock in `state` exactly; the clock's state after it."""
        reading = self.reading[chunk]
        clock = EventClock(**self.engine.clock.parameters)
        clock.restore(state)
        before = clock.time
        assert reading.inputs is not None
        where = np.flatnonzero(reading.inputs)
        subjects = reading.columns.subjects
        reading.folded = (before, clock.run(reading.columns.epoch[where], [subjects[i] for i in where.tolist()]))
        return clock.state()

    @timed
    def finalise(self, chunk: int, before: float, first: int) -> dict[str, Any]:
        """The clock entered the block at `before`: the time after each line, where the
        de-duplication index reaches a new purge step, which lines lie beyond its horizon; each
        owner's share of the block sent to it (the driver's returned). `first` is the file line
        number of the block's first line (byte ranges)."""
        reading = self.reading[chunk]
        columns = reading.columns
        n = len(columns)
        assert reading.inputs is not None
        times = np.full(n, -math.inf)
        if reading.folded is not None and reading.folded[0] == before:
            times[reading.inputs] = reading.folded[1]
        else:  # the clock runs through the block: a running maximum
            times[reading.inputs] = columns.epoch[reading.inputs]
        after = np.maximum.accumulate(np.maximum(times, before)) if n else times
        reading.after = after
        ahead = np.empty(n)
        if n:
            ahead[0] = before
            ahead[1:] = after[:-1]
        with np.errstate(invalid="ignore"):
            beyond = columns.valid & (columns.epoch < ahead - self.horizon) if self.horizon is not None \
                else np.zeros(n, dtype=bool)
            held = reading.inputs & (columns.epoch > after)
        base = reading.block.number << SHIFT
        steps = self.index.steps(before, after)
        excluded = reading.excluded
        kind = columns.kind.copy()
        kind[~columns.valid | held | beyond | (columns.owner == self.count)] = EXACT
        kind[excluded] = EXACT
        numbers = columns.numbers if columns.numbers is not None else numbers_from(columns, first)
        shares = {}
        for node in range(self.count + 1):
            mine = np.flatnonzero(columns.owner == node)
            if not len(mine) and node < self.count:
                shares[node] = None
                continue
            names: dict[str, int] = {}
            subjects = columns.subjects
            kinds = kind[mine]
            codes = np.array([-1 if k == EXACT else names.setdefault(subjects[i], len(names))
                              for i, k in zip(mine.tolist(), kinds.tolist())], dtype=np.int32)
            exact = mine[kinds == EXACT].tolist()
            lines: list[Any] = [None] * len(mine)
            for at, line in zip(np.flatnonzero(kinds == EXACT).tolist(), self._lines(columns, exact)):
                lines[at] = line
            shares[node] = Share(
                reading.block.number, base | mine.astype(np.int64), kinds, after[mine], columns.valid[mine],
                beyond[mine], codes, list(names), columns.sources,
                columns.source[mine] if columns.source is not None else np.zeros(len(mine), dtype=np.int32),
                numbers[mine] if numbers is not None else np.zeros(len(mine), dtype=np.int64), lines, self.number)
        reading.numbers = numbers
        driver = shares.pop(self.count)
        self._send("share", chunk, reading.block.number, shares)
        return {"steps": (base | steps.astype(np.int64), after[steps]),
                "candidates": (base | excluded.astype(np.int64), columns.epoch[excluded], ahead[excluded]),
                "driver": driver if driver is not None and len(driver.keys) else None,
                "last": (base | (n - 1)) if n else None, "after": float(after[-1]) if n else before}

    @staticmethod
    def _lines(columns: Columns, where: list[int]) -> list[Any]:
        """The texts of these lines, or their archive rows (as dicts)."""
        if columns.texts is not None:
            return [columns.texts[i] for i in where]
        assert columns.table is not None
        return [dict(row) for row in rows_of(rows(columns.table, where))] if where else []

    async def line(self, chunk: int, key: int) -> Any:
        """The text (or archive row) of a line of this reader's block (an owner takes a quiet line
        exactly after all)."""
        return self._lines(self.reading[chunk].columns, [key & ((1 << SHIFT) - 1)])[0]

    def locate(self, chunk: int, queries: list[tuple[int, float]]) -> list[int]:
        """For each (line, time): the key of the first line of the block after `line` (-1: from
        the start) where the clock is past `time` (it never decreases)."""
        reading = self.reading[chunk]
        assert reading.after is not None
        base = reading.block.number << SHIFT
        out = []
        for line, when in queries:
            found = max(int(np.searchsorted(reading.after, when, side="right")), line + 1)
            if found >= len(reading.after):
                raise RuntimeError(f"distributed: the clock does not pass {when} in block {reading.block.number}")
            out.append(base | found)
        return out

    # ---- id shard -----------------------------------------------------------------------------

    @timed
    def candidates(self, chunk: int, blocks: int) -> dict[int, np.ndarray]:
        """The lines of the chunk (of `blocks` blocks) whose id may repeat one already seen
        (remembered by the index, or earlier in the chunk), per block (line numbers in the
        block): every other line is new whatever the clock does, since the index only forgets."""
        with self.arrived:  # every reader's ids of the chunk (they may still be on their way)
            self.arrived.wait_for(lambda: len(self.ids.get(chunk, {})) == blocks)
            parts = self.ids.pop(chunk, {})
        blocks = sorted(parts)
        lines = IdLines(np.concatenate([parts[b].keys for b in blocks]) if blocks else np.empty(0, dtype=np.int64),
                        [i for b in blocks for i in parts[b].ids],
                        np.concatenate([parts[b].digests for b in blocks]) if blocks else np.empty(0, dtype=np.uint64),
                        np.concatenate([parts[b].epochs for b in blocks]) if blocks else np.empty(0),
                        np.concatenate([parts[b].owner for b in blocks]) if blocks else np.empty(0, dtype=np.int32),
                        np.zeros(sum(len(parts[b].keys) for b in blocks), dtype=bool))
        self.usage["ids"] += len(lines.ids)
        remembered = self.index.remembers(lines.ids)
        if remembered or len(set(lines.ids)) != len(lines.ids):
            seen: set[str] = set()
            for i, event_id in enumerate(lines.ids):
                if event_id in remembered or event_id in seen:
                    lines.candidate[i] = True
                else:
                    seen.add(event_id)
        self.shard[chunk] = lines
        found = lines.keys[lines.candidate]
        return {int(b): found[(found >> SHIFT) == b] & ((1 << SHIFT) - 1) for b in np.unique(found >> SHIFT).tolist()}

    @timed
    def decide(self, chunk: int, steps: tuple[np.ndarray, np.ndarray], stop: int | None) -> dict[str, Any]:
        """Replay the index over the chunk's lines in input order, up to the line `stop` (all
        when None), with the clock's purge `steps` (key, time): the verdict of every line that
        is not new. At the end of the chunk each owner gets its verdicts; the driver's come back."""
        lines = self.shard[chunk]
        step_keys, step_times = steps
        index, keys = self.index, lines.keys
        n = len(keys)
        end = n if stop is None else int(np.searchsorted(keys, stop, side="right"))
        i, j = lines.cursor, lines.steps
        candidates = np.flatnonzero(lines.candidate)
        stopped = None
        while i < end:
            while j < len(step_keys) and step_keys[j] < keys[i]:  # the clock reached a new step before this line
                index.advance(float(step_times[j]))
                j += 1
            if not lines.candidate[i]:  # new whatever happens: remembered in bulk up to the next step or candidate
                limit = end if j >= len(step_keys) else min(end, int(np.searchsorted(keys, step_keys[j], side="right")))
                following = np.searchsorted(candidates, i)
                run = min(limit, int(candidates[following])) if following < len(candidates) else limit
                index.remember(lines.ids[i:run], lines.digests[i:run].tolist(), lines.epochs[i:run].tolist())
                i = run
                continue
            seen = index.check(lines.ids[i], int(lines.digests[i]), float(lines.epochs[i]))
            if seen is not Seen.NEW:
                lines.verdicts.setdefault(int(lines.owner[i]), {})[int(keys[i])] = seen.value
            if stop is not None and int(keys[i]) == stop:
                stopped = seen.value
            i += 1
        lines.cursor, lines.steps = i, j
        if stop is not None:
            return {"stopped": stopped}
        while j < len(step_keys):
            index.advance(float(step_times[j]))
            j += 1
        del self.shard[chunk]
        driver = lines.verdicts.pop(self.count, {})
        self._send("verdicts", chunk, self.number, {node: lines.verdicts.get(node, {}) for node in range(self.count)})
        return {"driver": driver}

    # ---- owner --------------------------------------------------------------------------------

    def take(self, chunk: int, share: Share | None, verdicts: Mapping[int, str]) -> None:
        """The driver's node: its share of a block and its verdicts, handed over by the driver."""
        if share is not None:
            self._store("share", chunk, share.block, share)
        self._store("verdicts", chunk, 0, verdicts)

    @timed
    def apply(self, chunk: int, until: int, at: int, clock: float, closed_years: Iterable[int] = (),
              year: int | None = None) -> tuple[list[Tagged], list[tuple[int, int, float]], Any]:
        """Apply this owner's lines of the chunk before the key `until`, then move the clock to
        `clock` at the line `at` (a barrier, or the chunk's last line).

        Returns the tagged records, the lines where escalations must be placed ((record, after
        line, clock past)), and, for a barrier of `year`, what its ranking needs from here."""
        for closed in closed_years:
            self.engine.evaluation.forget_year(closed)
        merged = self.merged.get(chunk)
        if merged is None:
            merged = self.merged[chunk] = self._merge(chunk)
        out: list[Tagged] = []
        queries: list[tuple[int, int, float]] = []
        stop = int(np.searchsorted(merged.keys, until, side="left"))
        self._apply(merged, stop, out, queries)
        self._advance(at, clock, out, queries)
        gathered = None if year is None else self.engine.evaluation.gather(year, self.engine.decisions.is_closed)
        return out, queries, gathered

    def done(self, chunk: int) -> None:
        """The chunk is written: forget its lines."""
        self.merged.pop(chunk, None)
        self.verdicts.pop(chunk, None)
        self.reading.pop(chunk, None)

    def barrier(self, chunk: int, year: int, states: Iterable[Mapping[str, Any]]) -> list[Tagged]:
        """The driver's node at a barrier: rank with every partition's rows, then process the
        close itself (its next line); the partitions that own the enterprises then take the
        decisions over (`absorb`), so they are handed over here."""
        merged_rows: dict[str, Any] = {}
        for state in states:
            merged_rows.update(state)
        self.engine.evaluation.adopt(year, merged_rows)
        merged = self.merged[chunk]
        out: list[Tagged] = []
        self._exact(merged, merged.cursor, out, [])
        merged.cursor += 1
        self.engine.decisions.hand_over([r for _, _, _, r in out if isinstance(r, Decision) and r.evaluation is not None])
        return out

    @timed
    def absorb(self, items: list[tuple[int, tuple[Any, ...], Decision]]) -> list[Tagged]:
        """The mu-average decisions of a barrier made by the driver, for this partition's
        enterprises [(line, tag key, decision)], taken over with their orders: what each decides
        here (land decisions for the parcels held), tagged right after the decision itself."""
        out: list[Tagged] = []
        decisions = [decision for _, _, decision in items]
        for (key, order, _), made in zip(items, self.engine.decisions.absorb(decisions)):
            self.engine.summary.count(made)
            out.extend((key, 1, order + (j,), record) for j, record in enumerate(made, start=1))
        return out

    @timed
    def flush(self, end: int, as_of: str | None, closed_years: Iterable[int] = ()) -> tuple[list[Tagged], RunSummary]:
        """`Engine.flush`, tagged so the driver can interleave the partitions' parts."""
        engine = self.engine
        for year in closed_years:
            engine.evaluation.forget_year(year)
        findings = []
        for reading, found in engine.close_windows():
            base = (reading.epoch, stream_of(reading))
            findings.extend((base + (k,), f) for k, f in enumerate(found))
        out: list[Tagged] = [(end, 1, key, f) for key, f in findings]
        for key, finding in findings:
            if type(finding) is Finding:
                out.extend((end, 2, key + (j,), d) for j, d in enumerate(engine.decisions.on_findings([finding])))
        out.extend((end, 3, due_key(d), d) for d in engine.decisions.finish(epoch_of(as_of) if as_of else None))
        engine.summary.count([r[3] for r in out])  # type: ignore[misc]
        engine.settle()
        self.collector.close()
        return out, engine.summary

    def _merge(self, chunk: int) -> Merged:
        shares = [share for _, share in sorted(self.shares.pop(chunk, {}).items()) if share is not None]
        codes = []
        for share in shares:
            mapping = np.array([self._code(name) for name in share.names] + [-1], dtype=np.int64)
            codes.append(mapping[share.codes])  # -1 indexes the last entry: no subject
        count = sum(len(s.keys) for s in shares)
        self.usage["owned"] += count
        if not shares:
            empty = np.empty(0, dtype=np.int64)
            return Merged(chunk, [], empty, np.empty(0, dtype=np.int8), np.empty(0), empty, empty, empty)
        return Merged(chunk, shares, np.concatenate([s.keys for s in shares]), np.concatenate([s.kind for s in shares]),
                      np.concatenate([s.clock for s in shares]), np.concatenate(codes),
                      np.concatenate([np.full(len(s.keys), n, dtype=np.int64) for n, s in enumerate(shares)]),
                      np.concatenate([np.arange(len(s.keys), dtype=np.int64) for s in shares]))

    def _code(self, name: str) -> int:
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code

    def _known(self) -> np.ndarray:
        """Which subjects (by code) are registered enterprises now (registrations only add)."""
        registry = self.engine.registry
        if len(self.known) < len(self.names):
            self.known = np.concatenate([self.known, np.array([n in registry for n in self.names[len(self.known):]],
                                                              dtype=bool)])
        if len(registry) != self.registered:
            self.registered = len(registry)
            for code in np.flatnonzero(~self.known).tolist():
                self.known[code] = self.names[code] in registry
        return self.known

    def _apply(self, merged: Merged, stop: int, out: list[Tagged], queries: list[tuple[int, int, float]]) -> None:
        """Lines [cursor, stop) of the chunk: runs of quiet lines in bulk, the others one by one."""
        i = merged.cursor
        kind, codes = merged.kind, merged.codes
        exact = np.flatnonzero(kind[i:stop] == EXACT) + i
        for index in [*exact.tolist(), stop]:
            while i < index:  # quiet lines: in bulk, except a line of an enterprise whose next event decides
                watched = self.engine.decisions.watched
                end = index
                if watched:
                    names = self.names
                    for j in range(i, index):
                        if names[codes[j]] in watched:
                            end = j
                            break
                if end > i:
                    self._quiet(merged, i, end, out, queries)
                if end < index:
                    self.usage["watched"] += 1
                    self._exact(merged, end, out, queries)
                    end += 1
                i = end
            if index < stop:
                self._exact(merged, index, out, queries)
                i = index + 1
        merged.cursor = stop

    def _advance(self, key: int, clock: float, out: list[Tagged], queries: list[tuple[int, int, float]]) -> None:
        """The clock reached `clock` by the line `key`: what falls due escalates, each tagged
        later with the first line after the last one applied here where the clock passed its
        deadline (the driver asks the readers)."""
        before = self.engine.clock.time
        for record in self.engine.advance_clock(clock):
            queries.append((len(out), self.position, max(epoch_of(record.time), before)))
            out.append((-1, 0, due_key(record), record))
        self.position = max(self.position, key)

    def _quiet(self, merged: Merged, start: int, stop: int, out: list[Tagged], queries: list[tuple[int, int, float]]) -> None:
        top = float(merged.clock[stop - 1])
        self._advance(int(merged.keys[stop - 1]), top, out, queries)
        codes = merged.codes[start:stop]
        strangers = int((~self._known()[codes]).sum())
        unavailable = int((merged.kind[start:stop] == FLAGGED).sum())
        count = stop - start
        self.engine.commit_quiet_counted(top, [""] * count, [], [], strangers, unavailable)

    def _exact(self, merged: Merged, i: int, out: list[Tagged], queries: list[tuple[int, int, float]]) -> None:
        """One line through the engine's per-event stages, with the shards' verdict."""
        key = int(merged.keys[i])
        self.usage["exact"] += 1
        self._advance(key, float(merged.clock[i]), out, queries)
        share = merged.shares[int(merged.share[i])]
        row = int(merged.row[i])
        engine = self.engine
        line = share.lines[row]
        if line is None:  # quiet when it was sorted: the reader still has it
            line = share.lines[row] = self._fetch(share, merged.chunk, key)
        prepared: Prepared | Quarantined
        if isinstance(line, dict):  # an archive's row, as the columnar lane takes it exactly
            source, number = line["file"], line["line"]
            prepared = engine.prepare_archived(line)
        else:  # a line, as the fast lane takes it exactly (valid when read: not validated again)
            source, number = share.sources[int(share.source[row])], int(share.numbers[row])
            if share.valid[row]:
                prepared = engine.prepare_checked(orjson.loads(line), line, source, number)
            else:
                prepared = engine.prepare_line(line, source, number)
        if isinstance(prepared, Quarantined) == bool(share.valid[row]):
            raise RuntimeError(f"distributed: line {number} of {source} was {'valid' if share.valid[row] else 'invalid'} "
                               "when it was read but not when it was applied")
        verdict = (bool(share.beyond[row]), Seen(self.verdicts.get(merged.chunk, {}).get(key, Seen.NEW.value)))
        records = engine.process_prepared(prepared, verdict if isinstance(prepared, Prepared) else None)
        out.extend((key, 1, (seq,), record) for seq, record in enumerate(records))

    def _fetch(self, share: Share, chunk: int, key: int) -> Any:
        if share.reader == self.number:
            return self._lines(self.reading[chunk].columns, [key & ((1 << SHIFT) - 1)])[0]
        return self.peers[share.reader].line(chunk, key).result()
