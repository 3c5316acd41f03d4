"""Distributed replay on Dask: the single machine's output, byte for byte (docs/distributed.md).

The log is split by enterprise (crc32 of `subject` modulo the number of partitions, never
Python's `hash()`); each partition is a normal `Engine` living in one Dask actor on one
worker, so its state is carried from chunk to chunk in time order. The driver reads the log
and gives every line its global index. A chunk of lines goes through two rounds:

1. probe (on the workers): each partition runs the Engine's own checks (parse, schema,
   units) up to the de-duplication step and sends back (id, digest, event time) of the
   valid lines. The driver runs ONE global `DedupeIndex` over them in line order, so every
   line gets the verdict it gets on one machine (new, duplicate, conflict, beyond horizon;
   an id reused by another enterprise is a conflict, whichever partition holds it), and
   ONE global `EventClock` (engine/normalise/clock.py, the guard against a far-future event)
   follows: the "ticks" are the lines where it moves forward. The partitions' clocks
   `follow` it: they move by ticks only.
2. run (on the workers): each partition processes its own lines with those verdicts and the
   ticks of the whole log. Before each of its lines it applies the ticks up to that line;
   a tick that passes the deadline of one of its open orders escalates it *at that tick's
   line*, as on one machine (an order falls due when a later event of any enterprise
   arrives).

Every record is tagged (line index, phase, key) and the driver merges the partitions by the
tag: escalations at a line (phase 0) in the single machine's order (deadline, enterprise,
order id), then the line's own records (phase 1) in the order the engine made them. At the
end of input the flush is split the same way (hour findings, their decisions, `as_of`
escalations). Lines that do not parse, have no subject string, or are `evaluation.closed`
stay with the driver (a local partition).

`evaluation.closed` is a barrier: every partition first finishes the lines before it (and
the tick at it), sends the year's finance records, the registrations and the closed-by-law
flags of those enterprises; the driver ranks them with the one `Evaluation` that holds the
consecutive-D history, places the decisions at the barrier's line, and tells the partitions
the year is closed. Each partition then takes over the decisions about its own enterprises
(`DecisionLayer.absorb` / `hand_over`: their orders, which verifications and deadlines then find
where the enterprise's events are; their classes; the land decisions they cause for the parcels
it holds), tagged right after each decision. The hash chain (engine/output/chain.py) is added at the sink, after the
merge (engine/run.py `Outputs`).

Partitions use the Engine's stage API (`prepare`, `process_prepared` with the driver's
verdict, `advance_clock`, `close_windows`) and the evaluation's `gather` / `adopt`; nothing
here reaches into an engine's private state.

Payloads are `Batch` objects (a list subclass) and `array.array`s, never plain lists of
tuples (Dask would walk those element by element; DESIGN.md).
"""

from __future__ import annotations

import os
import time
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from engine.ingest import read_jsonl
from engine.normalise import DedupeIndex, EventClock, Seen, epoch_of, stream_of
from engine.pipeline import Engine, Prepared
from engine.records import Decision, Finding, InputLine, InvalidEvent, Quarantined, Record, RunSummary

DRIVER = -1
BARRIER_TYPES = frozenset({"evaluation.closed"})
CHUNK = 50_000


class SchedulerUnreachable(ConnectionError):
    """The Dask scheduler named by `scheduler=` did not answer within `connect_timeout` seconds."""


class Batch(list):  # type: ignore[type-arg]
    """A list subclass: Dask pickles it as one object instead of walking it element by element."""

    __slots__ = ()


def partition_of(subject: str, partitions: int) -> int:
    """The partition of an enterprise: crc32 of its code, stable across processes and runs."""
    return zlib.crc32(subject.encode("utf-8", "surrogatepass")) % partitions


def _due_key(record: Decision) -> tuple[float, str, str]:
    """The order `DecisionLayer.advance` sorts what falls due in: deadline, enterprise, order id
    (an escalation supersedes its order; a watch's decision is its own id)."""
    return (epoch_of(record.time), record.enterprise, record.supersedes or record.id)


class Partition:
    """One partition's engine (a Dask actor on a worker; the driver keeps one for its own lines)."""

    def __init__(self, engine_kwargs: Mapping[str, Any], number: int) -> None:
        self.number = number
        self.engine = Engine(**engine_kwargs)
        self.engine.clock.follow()  # the driver's clock decides; ticks move this one
        self._prepared: dict[int, Prepared] = {}  # line index -> the event the probe found valid

    def info(self) -> dict[str, Any]:
        return {"ruleset": self.engine.ruleset, "partition": self.number, "pid": os.getpid()}

    def probe(self, lines: Batch) -> Batch:
        """(index, id, digest, epoch, subject) of each valid line of `lines` [(index, text)]: the
        engine's `prepare` (parse, schema, units), nothing remembered but the prepared events."""
        out = Batch()
        for index, text in lines:
            try:
                event = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            try:
                prepared = self.engine.prepare(event, True, text)
            except InvalidEvent:
                continue
            out.append((index, prepared.id, prepared.digest, prepared.epoch, prepared.event["subject"]))
            self._prepared[index] = prepared
        return out

    def run(self, lines: Batch, tick_index: array, tick_epoch: array, upto: int,
            closed_years: Iterable[int] = (), barrier_year: int | None = None) -> tuple[Batch, Any]:
        """Process own lines [(index, source, number, text, verdict)] and the ticks before `upto`.

        Returns the tagged records and, for a barrier, what the year's ranking needs.
        """
        for year in closed_years:
            self.engine.evaluation.forget_year(year)
        engine = self.engine
        out = Batch()
        pos = 0
        for index, source, number, text, verdict in lines:
            pos = self._ticks(tick_index, tick_epoch, pos, bisect_right(tick_index, index), out)
            prepared = self._prepared.pop(index, None)
            if (verdict is None) != (prepared is None):
                raise RuntimeError(f"distributed: line {index} was valid in the probe but has no verdict")
            if prepared is None:  # invalid: the engine quarantines it with its reason
                records = engine.process_line(InputLine(source, number, text))
                if not (len(records) == 1 and isinstance(records[0], Quarantined)):
                    raise RuntimeError(f"distributed: line {index} was invalid in the probe but not in the engine")
            else:  # valid: the probe's parse and schema check stand (same bytes, same engine configuration)
                where = replace(prepared, raw=text, source=source, line=number)
                records = engine.process_prepared(where, (verdict[0], Seen(verdict[1])))
            out.extend((index, 1, (seq,), record) for seq, record in enumerate(records))
        self._ticks(tick_index, tick_epoch, pos, bisect_left(tick_index, upto), out)
        if barrier_year is None:
            return out, None
        return out, engine.evaluation.gather(barrier_year, engine.decisions.is_closed)

    def _ticks(self, index: array, epochs: array, pos: int, limit: int, out: Batch) -> int:
        """Apply the global clock's ticks [pos, limit): escalate at the first tick past each deadline."""
        if pos >= limit:
            return pos
        engine = self.engine
        while pos < limit:
            due = engine.decisions.next_deadline()
            if due is None:
                break
            t = bisect_right(epochs, due, pos, limit)
            if t >= limit:
                break
            out.extend((index[t], 0, _due_key(r), r) for r in engine.advance_clock(epochs[t]))
            pos = t + 1
        if pos < limit:  # no deadline lies before it: only moves the clock
            out.extend((index[limit - 1], 0, _due_key(r), r) for r in engine.advance_clock(epochs[limit - 1]))
        return limit

    def absorb(self, items: Batch) -> Batch:
        """The mu-average decisions of a barrier made by the driver, for this partition's
        enterprises [(line, tag key, decision)], taken over with their orders: what each decides
        here (land decisions for the parcels held), tagged right after the decision itself."""
        out = Batch()
        decisions = [decision for _, _, decision in items]
        for (index, key, _), made in zip(items, self.engine.decisions.absorb(decisions)):
            self.engine.summary.count(made)
            out.extend((index, 1, key + (j,), record) for j, record in enumerate(made, start=1))
        return out

    def barrier(self, line: tuple[Any, ...], year: int, states: Iterable[Mapping[str, Any]]) -> Batch:
        """The driver's side of a barrier: rank with every partition's state, then process the close."""
        merged: dict[str, Any] = {}
        for state in states:
            merged.update(state)
        self.engine.evaluation.adopt(year, merged)
        out, _ = self.run(Batch([line]), array("q"), array("d"), 0)
        # the partitions that own the enterprises take these decisions over (`absorb`), orders included
        self.engine.decisions.hand_over([r for _, _, _, r in out if isinstance(r, Decision) and r.evaluation is not None])
        return out

    def flush(self, end: int, as_of: str | None, closed_years: Iterable[int] = ()) -> tuple[Batch, RunSummary]:
        """`Engine.flush`, tagged so the driver can interleave the partitions' parts."""
        engine = self.engine
        for year in closed_years:
            engine.evaluation.forget_year(year)
        findings = []
        for reading, found in engine.close_windows():
            base = (reading.epoch, stream_of(reading))
            findings.extend((base + (k,), f) for k, f in enumerate(found))
        out = Batch((end, 1, key, f) for key, f in findings)
        for key, finding in findings:
            if type(finding) is Finding:
                out.extend((end, 2, key + (j,), d) for j, d in enumerate(engine.decisions.on_findings([finding])))
        out.extend((end, 3, _due_key(d), d) for d in engine.decisions.finish(epoch_of(as_of) if as_of else None))
        engine.summary.count([r[3] for r in out])
        engine.settle()
        return out, engine.summary


def _lines(inputs: Any) -> Iterator[InputLine | str | bytes]:
    """Paths (read as JSONL) or lines; a path is a `Path` or a string naming an existing file."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    iterator = iter(inputs)
    first = next(iterator, None)
    if first is None:
        return
    if isinstance(first, Path) or (isinstance(first, str) and (first == "-" or os.path.isfile(first))):
        yield from read_jsonl([first, *iterator])
        return
    yield first
    yield from iterator


class DistributedRun:
    """One distributed run: iterate it for the records (single-machine order); then read `summary`.

    `scheduler`: the address of an existing Dask scheduler (e.g. "tcp://host:8786"); without
    it a LocalCluster of `workers` processes (default 2) is started and closed. `client`: an
    existing `dask.distributed.Client` to use instead. On an existing cluster `workers` caps
    how many of its workers are used (default all); a scheduler that does not answer within
    `connect_timeout` seconds raises SchedulerUnreachable. Engine keyword arguments are passed to
    every partition's Engine (they must be picklable: no `plugins=` objects).
    """

    def __init__(self, inputs: Any, *, scheduler: str | None = None, workers: int | None = None, as_of: str | None = None,
                 chunk_size: int = CHUNK, client: Any = None, connect_timeout: float = 10.0, **engine_kwargs: Any) -> None:
        if "plugins" in engine_kwargs:
            raise TypeError("distributed runs load the plugins on each worker: pass disable=/extra options, not plugins=")
        self.inputs = inputs
        self.scheduler, self.workers, self.as_of, self.chunk_size = scheduler, workers, as_of, chunk_size
        self.client = client
        self.connect_timeout = connect_timeout
        self.engine_kwargs = engine_kwargs
        self.summary = RunSummary()
        self.ruleset: str | None = None
        self.partitions = 0
        self.timings: dict[str, float] = {}  # seconds per phase (wall clock, for reports only)

    def __iter__(self) -> Iterator[Record]:
        from dask.distributed import Client, LocalCluster

        cluster = None
        client = self.client
        if client is None:
            if self.scheduler is not None:
                try:
                    client = Client(self.scheduler, timeout=self.connect_timeout)
                except OSError as exc:  # dask: "Timed out trying to connect to ..."
                    raise SchedulerUnreachable(f"cannot reach the Dask scheduler at {self.scheduler} within "
                                               f"{self.connect_timeout:g} s ({exc})") from None
            else:
                self.workers = self.workers or 2
                cluster = LocalCluster(n_workers=self.workers, processes=True, threads_per_worker=1,
                                       dashboard_address=":0")
                client = Client(cluster)
        try:
            yield from self._run(client)
        finally:
            if self.client is None:
                client.close()
            if cluster is not None:
                cluster.close()

    def _tick(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - since
        return now

    def _route(self, iterator: Iterator[Any], index: int, count: int) -> tuple[Any, ...] | None:
        """The next chunk: every line gets its global index and a partition (None at the end of input)."""
        chunk = list(islice(iterator, self.chunk_size))
        if not chunk:
            return None
        entries: list[tuple[int, str, int, bytes, int]] = []
        barriers: dict[int, int] = {}  # line index -> year (a barrier if the line turns out valid and new)
        probes = [Batch() for _ in range(count + 1)]
        for item in chunk:
            index += 1
            if isinstance(item, InputLine):
                source, number, text = item.source, item.number, item.text
            elif isinstance(item, (str, bytes)):
                source, number, text = "<input>", index, item
            else:
                raise TypeError("distributed runs take JSON lines (str, bytes, InputLine) or paths, not mappings")
            if isinstance(text, str):
                text = text.encode("utf-8")
            part = DRIVER
            try:
                event = orjson.loads(text)
            except orjson.JSONDecodeError:
                event = None
            if type(event) is dict:
                subject = event.get("subject")
                if event.get("type") in BARRIER_TYPES:
                    data = event.get("data")
                    if isinstance(data, dict) and isinstance(data.get("year"), int):
                        barriers[index] = data["year"]
                elif isinstance(subject, str):
                    part = partition_of(subject, count)
            entries.append((index, source, number, text, part))
            probes[part].append((index, text))
        return entries, barriers, probes, index

    def _run(self, client: Any) -> Iterator[Record]:
        client.wait_for_workers(1 if self.workers is None else self.workers, timeout=60)
        addresses = sorted(client.scheduler_info()["workers"])
        count = len(addresses) if self.workers is None else max(1, min(self.workers, len(addresses)))
        self.partitions = count
        clock_started = time.perf_counter()
        futures = [client.submit(Partition, self.engine_kwargs, p, workers=[addresses[p]], allow_other_workers=False,
                                 actor=True, pure=False) for p in range(count)]
        actors = [f.result() for f in futures]
        local = Partition(self.engine_kwargs, DRIVER)
        self.ruleset = local.engine.ruleset
        for info in [a.info().result() for a in actors]:
            if info["ruleset"] != self.ruleset:
                raise RuntimeError(f"distributed: worker partition {info['partition']} has rule set {info['ruleset']}, "
                                   f"the driver {self.ruleset}: install the same plugins everywhere")
        clock_started = self._tick("engines", clock_started)
        dedupe = DedupeIndex(self.engine_kwargs.get("dedupe_horizon_days", 7.0))
        clock = EventClock(**local.engine.clock.parameters)
        pending: list[list[int]] = [[] for _ in range(count + 1)]  # closed years to tell each partition (last: local)
        iterator = _lines(self.inputs)
        routed = self._route(iterator, 0, count)
        calls = [actors[p].probe(routed[2][p]) for p in range(count)] if routed is not None else []
        index = 0
        while routed is not None:
            entries, barriers, probes, index = routed
            # ---- round 1: probes (sent before the previous chunk was merged), one global dedupe here
            found: dict[int, tuple[str, bytes, float, str]] = {}
            for result in [c.result() for c in calls] + [local.probe(probes[DRIVER])]:
                for i, event_id, digest, epoch, subject in result:
                    found[i] = (event_id, digest, epoch, subject)
            clock_started = self._tick("probe", clock_started)
            verdicts: dict[int, tuple[bool, str]] = {}
            tick_index, tick_epoch = array("q"), array("d")
            for entry in entries:
                key = found.get(entry[0])
                if key is None:
                    continue
                event_id, digest, epoch, subject = key
                beyond = dedupe.beyond_horizon(epoch)
                seen = dedupe.check(event_id, digest, epoch)
                verdicts[entry[0]] = (beyond, seen.value)
                moved = clock.observe(epoch, subject) if seen is Seen.NEW else None
                if moved is not None:
                    dedupe.advance(moved)
                    tick_index.append(entry[0])
                    tick_epoch.append(moved)
            real_barriers = sorted(i for i in barriers if verdicts.get(i, (False, ""))[1] == Seen.NEW.value)
            clock_started = self._tick("dedupe", clock_started)
            # ---- round 2: segments between barriers; the next chunk is read and routed meanwhile
            out: list[tuple[int, int, tuple[Any, ...], Record]] = []
            start = entries[0][0]
            by_index = {e[0]: e for e in entries}
            following = None
            for stop in [*real_barriers, None]:
                end = stop if stop is not None else index + 1
                upto = end + 1 if stop is not None else end
                lines = [Batch() for _ in range(count + 1)]
                for i in range(start, end):
                    e = by_index[i]
                    lines[e[4]].append((i, e[1], e[2], e[3], verdicts.get(i)))
                lo, hi = bisect_left(tick_index, start), bisect_left(tick_index, upto)
                ticks = (tick_index[lo:hi], tick_epoch[lo:hi])
                year = barriers[stop] if stop is not None else None
                calls = [actors[p].run(lines[p], *ticks, upto, pending[p], year) for p in range(count)]
                local_out, _ = local.run(lines[DRIVER], *ticks, upto, pending[DRIVER], None)
                for p in range(count + 1):
                    pending[p] = []
                if stop is None:
                    following = self._route(iterator, index, count)
                results = [c.result() for c in calls]
                out.extend(local_out)
                for records, _ in results:
                    out.extend(records)
                if stop is not None:
                    e = by_index[stop]
                    already = local.engine.evaluation.is_closed(year)
                    decided = local.barrier((stop, e[1], e[2], e[3], verdicts.get(stop)), year,
                                            [state for _, state in results])
                    out.extend(decided)
                    # the partitions learn the classes of their enterprises (and what they decide there)
                    owned = [Batch() for _ in range(count)]
                    for at, phase, key, record in decided:
                        if phase == 1 and isinstance(record, Decision) and record.evaluation is not None:
                            owned[partition_of(record.enterprise, count)].append((at, key, record))
                    for call in [actors[p].absorb(owned[p]) for p in range(count) if owned[p]]:
                        out.extend(call.result())
                    if not already:
                        for p in range(count):
                            pending[p].append(year)
                    start = stop + 1
            routed = following
            calls = [actors[p].probe(routed[2][p]) for p in range(count)] if routed is not None else []
            clock_started = self._tick("run", clock_started)
            out.sort(key=lambda r: (r[0], r[1], r[2]))
            for tagged in out:
                yield tagged[3]
            clock_started = self._tick("merge+sink", clock_started)
        # ---- end of input
        end = index + 1
        calls = [actors[p].flush(end, self.as_of, pending[p]) for p in range(count)]
        local_out, local_summary = local.flush(end, self.as_of, ())
        results = [c.result() for c in calls]
        out = list(local_out)
        for records, _ in results:
            out.extend(records)
        out.sort(key=lambda r: (r[0], r[1], r[2]))
        self.summary = RunSummary()
        for summary in [local_summary, *(s for _, s in results)]:
            self.summary.merge(summary)
        self.summary.clock_held += clock.stranded  # held before the clock started: only the driver knows
        del actors, futures
        for tagged in out:
            yield tagged[3]


def run_distributed(paths_or_lines: Any, *, scheduler: str | None = None, workers: int | None = 2,
                    as_of: str | None = None, **engine_kwargs: Any) -> Iterator[dict[str, Any]]:
    """The records of a distributed run as dicts (what `Engine.run` gives, as `to_dict()`), in the same order.

    `paths_or_lines`: JSONL paths, or lines (str, bytes, `InputLine`). `scheduler`: an existing
    cluster's address; without it a LocalCluster of `workers` processes runs for this call.
    """
    for record in DistributedRun(paths_or_lines, scheduler=scheduler, workers=workers, as_of=as_of, **engine_kwargs):
        yield record.to_dict()
