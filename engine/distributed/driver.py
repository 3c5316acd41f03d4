"""The driver of a distributed replay: it orders the rounds of each chunk of blocks, composes the
clock from the readers' block summaries, and merges the records (engine/distributed/).

Per chunk (one block per worker), the driver sees per block: its size, its `evaluation.closed`
lines, its clock summary, the keys where the de-duplication index reaches a new purge step, the
lines that may repeat an id; and the records. It never reads, parses or routes a line.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from engine.distributed.blocks import SHIFT, Block, partition_of, plan, seen
from engine.distributed.node import Node, Tagged
from engine.normalise import EventClock, Seen
from engine.records import Decision, Record, RunSummary

CHUNK = 50_000  # lines per chunk, when the driver ships lines
BLOCK_BYTES = 32 << 20  # bytes of a JSONL file per block
BLOCK_ROWS = 1 << 17  # rows of an archive per block


class SchedulerUnreachable(ConnectionError):
    """The Dask scheduler named by `scheduler=` did not answer within `connect_timeout` seconds."""


class ClusterMismatch(RuntimeError):
    """A worker's engine differs from the driver's (another rule set or validation), or it does not
    see an input file or archive as the driver does; the message names the worker (and the path
    and what differs)."""


class WorkerLost(RuntimeError):
    """A worker left the cluster during the run; the message names it. No output is complete."""


class DistributedRun:
    """One distributed run: iterate it for the records (single-machine order); then read `summary`.

    `inputs`: JSONL paths and archive directories (read by the workers: every worker must see
    them at the same path), or lines (`str`, `bytes`, `InputLine`, shipped by the driver).
    `scheduler`: the address of an existing Dask scheduler (e.g. "tcp://host:8786"); without it
    a LocalCluster of `workers` processes (default 2) is started and closed. `client`: an
    existing `dask.distributed.Client` to use instead. On an existing cluster `workers` caps how
    many of its workers are used (default all); a scheduler that does not answer within
    `connect_timeout` seconds raises SchedulerUnreachable. Engine keyword arguments are passed to
    every worker's Engine (they must be picklable: no `plugins=` objects). `block_bytes`,
    `block_rows` and `chunk_size` size the blocks of files, archives and lines. `start_method`:
    how a LocalCluster started by the run starts its worker processes: None follows Dask's
    configuration (`spawn`, safe in any process); `"fork"` lets them inherit this process's
    imported modules (1.8-2.0 s against 3.2-3.3 s for `rectify run --cluster dask` of a
    1,000-line log), for a process that owns its threads, as the command line does. The run's own
    workers do not run Dask's sampling profiler (no dashboard reads it).

    After the run: `summary` (the merged RunSummary), `partitions`, `usage` (driver and
    per-worker CPU seconds and rows), `timings` (driver wall seconds per phase).
    """

    def __init__(self, inputs: Any, *, scheduler: str | None = None, workers: int | None = None, as_of: str | None = None,
                 chunk_size: int = CHUNK, block_bytes: int = BLOCK_BYTES, block_rows: int = BLOCK_ROWS,
                 client: Any = None, connect_timeout: float = 10.0, poll: float = 1.0, start_method: str | None = None,
                 **engine_kwargs: Any) -> None:
        if "plugins" in engine_kwargs or "dedupe" in engine_kwargs or "validator" in engine_kwargs:
            raise TypeError("distributed runs build the engines on each worker: pass disable=/options=..., not stages")
        self.inputs = inputs
        self.scheduler, self.workers, self.as_of = scheduler, workers, as_of
        self.chunk_size, self.block_bytes, self.block_rows = chunk_size, block_bytes, block_rows
        self.client = client
        self.connect_timeout = connect_timeout
        self.poll = poll
        if start_method not in (None, "spawn", "fork", "forkserver"):
            raise ValueError(f"start_method {start_method!r}: one of 'spawn', 'fork', 'forkserver' or None")
        self.start_method = start_method
        self.started_with: str | None = None  # how the run's own LocalCluster started its workers (None: not ours)
        self.engine_kwargs = engine_kwargs
        self.summary = RunSummary()
        self.ruleset: str | None = None
        self.partitions = 0
        self.timings: dict[str, float] = {}
        self.phase_cpu: dict[str, float] = {}  # the driver's main-thread CPU seconds per phase (the serial part)
        self._cpu_mark = 0.0
        self.usage: dict[str, Any] = {}
        self.chunks = 0
        self.reclocked = 0  # times a forgotten id, new again and ahead, made the driver compose a chunk's clock again
        self.addresses: list[str] = []
        self.pids: list[int] = []  # the workers' process ids
        self.results: dict[int, Any] = {}  # what each node's read of the current chunk found
        self._client: Any = None

    def __iter__(self) -> Iterator[Record]:
        import dask
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
                settings: dict[str, Any] = {"distributed.worker.profile.enabled": False}
                if self.start_method is not None:
                    settings["distributed.worker.multiprocessing-method"] = self.start_method
                with dask.config.set(settings):
                    self.started_with = dask.config.get("distributed.worker.multiprocessing-method")
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

    def report(self) -> dict[str, Any]:
        """The distributed part of the run summary JSON: partitions and chunks; the driver's CPU
        seconds (its whole process: with a LocalCluster started by the run, the scheduler's too;
        its main thread alone; and of that, the rounds after the engines are built); each worker's
        CPU seconds and rows (lines read, lines applied as their owner, ids de-duplicated) with its
        CPU seconds per step; the driver's wall seconds per phase, and its main thread's CPU seconds
        per phase (each second counted once); how the run's own LocalCluster
        started its workers (null on an existing cluster)."""
        return {"partitions": self.partitions, "chunks": self.chunks, "lines": self.summary.read,
                "reclocked": self.reclocked, "workers_started": self.started_with, **self.usage,
                "phases_s": {k: round(v, 3) for k, v in self.timings.items()},
                "driver_phases_cpu_s": {k: round(v, 4) for k, v in self.phase_cpu.items()}}

    # ---- rounds -------------------------------------------------------------------------------

    def _tick(self, phase: str, since: float) -> float:
        """Add the wall seconds since `since` to `phase`, and the main thread's CPU seconds since
        the last tick (each counted once: "chunks" holds what the phases inside a chunk do not)."""
        now, cpu = time.perf_counter(), time.thread_time()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - since
        self.phase_cpu[phase] = self.phase_cpu.get(phase, 0.0) + cpu - self._cpu_mark
        self._cpu_mark = cpu
        return now

    def _alive(self) -> None:
        """Raise WorkerLost if a worker of this run has left the cluster."""
        try:
            present = set(self._client.scheduler_info(n_workers=-1)["workers"])
        except OSError as exc:
            raise WorkerLost(f"the Dask scheduler stopped answering during the run ({exc}); no output is complete") \
                from None
        for number, address in enumerate(self.addresses):
            if address not in present:
                raise WorkerLost(f"worker {address} (partition {number}) left the cluster during the run; "
                                 "the output is incomplete and was not written as a complete run")

    def _wait(self, calls: dict[int, Any]) -> dict[int, Any]:
        """The results of actor calls by node, checking every `poll` seconds that the workers live."""
        results = {}
        for node, call in calls.items():
            while True:
                try:
                    results[node] = call.result(timeout=self.poll)
                    break
                except TimeoutError:
                    self._alive()
                except (OSError, RuntimeError) as exc:
                    self._alive()
                    if "Actor" in str(exc) or isinstance(exc, OSError):
                        raise WorkerLost(f"worker {self.addresses[node]} (partition {node}) could not be reached "
                                         f"during the run ({exc}); no output is complete") from None
                    raise
        return results

    # ---- the run ------------------------------------------------------------------------------

    def _run(self, client: Any) -> Iterator[Record]:
        self._client = client
        cpu, main = time.process_time(), time.thread_time()
        self._cpu_mark = main
        started = time.perf_counter()
        try:
            client.wait_for_workers(1 if self.workers is None else self.workers, timeout=60)
        except TimeoutError:
            raise SchedulerUnreachable(f"the Dask scheduler has fewer than {self.workers} workers after 60 s") from None
        addresses = sorted(client.scheduler_info(n_workers=-1)["workers"])
        count = len(addresses) if self.workers is None else max(1, min(self.workers, len(addresses)))
        self.addresses = addresses[:count]
        self.partitions = count
        futures = [client.submit(Node, self.engine_kwargs, p, count, workers=[self.addresses[p]],
                                 allow_other_workers=False, actor=True, pure=False) for p in range(count)]
        local = Node(self.engine_kwargs, count, count)  # the driver's own partition (the barriers), built meanwhile
        nodes = [future.result() for future in futures]
        local.connect(nodes)
        self.ruleset = local.engine.ruleset
        infos = self._wait({p: node.info() for p, node in enumerate(nodes)})
        self.pids = [infos[p]["pid"] for p in range(count)]
        for p, info in infos.items():
            if info["ruleset"] != local.engine.ruleset or info["validation"] != local.engine.validation:
                raise ClusterMismatch(
                    f"worker {self.addresses[p]} has rule set {info['ruleset']} (validation {info['validation'][:19]}), "
                    f"this machine {local.engine.ruleset} (validation {local.engine.validation[:19]}): "
                    "install the same rectify and plugins, with the same options, everywhere")
        self._wait({p: node.connect(nodes) for p, node in enumerate(nodes)})
        self._check_files(nodes)
        started = self._tick("engines", started)
        rounds = time.thread_time()  # the driver's own work from here on: the rounds, barriers and merge
        clock = EventClock(**local.engine.clock.parameters)
        blocks = plan(self.inputs, self.block_bytes, max(1, self.chunk_size // count), self.block_rows, count)
        numbers: dict[str, int] = {}  # lines of each file read so far (file line numbers of byte ranges)
        pending: list[list[int]] = [[] for _ in range(count + 1)]  # closed years to tell each partition
        chunk = 0
        last = -1
        batch = self._start_reading(chunk, list(islice(blocks, count)), nodes)
        while batch:
            following = self._start_reading(chunk + 1, list(islice(blocks, count)), nodes, batch)
            records, last = self._chunk(chunk, batch, nodes, local, clock, numbers, pending, last)
            started = self._tick("chunks", started)
            yield from records
            started = self._tick("merge+sink", started)
            chunk += 1
            self.chunks = chunk
            batch = following
        # ---- end of input
        end = (last >> SHIFT) + 1 << SHIFT if last >= 0 else 0
        results = self._wait({p: node.flush(end, self.as_of, pending[p]) for p, node in enumerate(nodes)})
        local_out, local_summary = local.flush(end, self.as_of, ())
        out = list(local_out)
        for records, _ in results.values():
            out.extend(records)
        out.sort(key=lambda r: (r[0], r[1], r[2]))
        self.summary = RunSummary()
        for summary in [local_summary, *(s for _, s in results.values())]:
            self.summary.merge(summary)
        self.summary.clock_held += clock.stranded  # held before the clock started: only the driver knows
        workers = self._wait({p: node.cpu() for p, node in enumerate(nodes)})
        self.usage = {"driver_cpu_s": time.process_time() - cpu, "driver_main_thread_cpu_s": time.thread_time() - main,
                      "driver_rounds_cpu_s": time.thread_time() - rounds,
                      "workers": [{"address": self.addresses[p], **workers[p]} for p in range(count)]}
        self._tick("flush", started)
        del nodes, futures
        for tagged in out:
            yield tagged[3]

    def _start_reading(self, chunk: int, batch: list[Block], nodes: list[Any], before: list[Block] | None = None
                       ) -> list[Block]:
        """Ask each node to read its block of `chunk` in the background (after the blocks of the
        chunk `before`, whose results the driver collects first)."""
        if before is not None:
            self.results = self._wait({i: nodes[i].read_result(chunk - 1) for i in range(len(before))})
        self._wait({i: nodes[i].read(chunk, block) for i, block in enumerate(batch)})
        return batch

    def _check_files(self, nodes: list[Any]) -> None:
        """Before any block is read, every worker must see each input file and archive the driver
        names as the driver does (blocks.py `seen`: a file's size; an archive's rows, writer,
        validation and part files, from its manifest and one `stat` per part file, no row read).
        Raises ClusterMismatch naming the first worker that does not, the path and what differs."""
        if not isinstance(self.inputs, (list, tuple)):
            return
        for item in self.inputs:
            if not isinstance(item, (str, Path)) or str(item) == "-":
                continue
            here = seen(str(item))
            if "bytes" not in here and "archive" not in here:
                continue  # not a path this machine reads either: planning the blocks says why
            for p, there in self._wait({p: node.stat(str(item)) for p, node in enumerate(nodes)}).items():
                if there != here:
                    raise ClusterMismatch(f"worker {self.addresses[p]} cannot read {item} as this machine does "
                                          f"({_difference(here, there)}): the workers read the input files and "
                                          "archives themselves (a shared file system)")

    def _chunk(self, chunk: int, batch: list[Block], nodes: list[Any], local: Node, clock: EventClock,
               numbers: dict[str, int], pending: list[list[int]], last: int) -> tuple[list[Record], int]:
        count = len(nodes)
        reader = {block.number: i for i, block in enumerate(batch)}  # block -> the node that reads it
        started = time.perf_counter()
        # ---- 1. read (started before): each reader parses, validates and sorts its block; ids go to their shards
        read = self.results
        sizes = {batch[i].number: read[i]["lines"] for i in read}
        firsts = {}
        for block in batch:  # file line numbers of byte ranges: the lines of the file before
            if block.kind == "range":
                firsts[block.number] = numbers.get(block.path, 0) + 1
                numbers[block.path] = numbers.get(block.path, 0) + sizes[block.number]
        barriers = dict(b for i in read for b in read[i]["barriers"])
        started = self._tick("read", started)
        # ---- 2. the shards name the lines that may repeat an id
        repeats: dict[int, list[np.ndarray]] = {}
        for found in self._wait({p: node.candidates(chunk, len(batch)) for p, node in enumerate(nodes)}).values():
            for block, lines in found.items():
                repeats.setdefault(block, []).append(lines)
        exclude = {b.number: np.sort(np.concatenate(repeats[b.number])) if b.number in repeats
                   else np.empty(0, dtype=np.int64) for b in batch}
        include = {b.number: np.empty(0, dtype=np.int64) for b in batch}
        start_state = clock.state()
        decided_until = -1  # the shards have replayed their lines up to this key
        started = self._tick("ids", started)
        # ---- 3. the clock, the purge steps, the verdicts (again from a line that turns out to move the clock)
        while True:
            clock.restore(start_state)
            final = self._clock(chunk, batch, nodes, reader, clock, exclude, include, firsts)
            step_keys = np.concatenate([f["steps"][0] for f in final.values()])
            step_times = np.concatenate([f["steps"][1] for f in final.values()])
            steps = (step_keys, step_times)
            first_step = int(step_keys[0]) if len(step_keys) else None
            suspects = sorted(int(k) for f in final.values() for k, e, t in zip(*f["candidates"])
                              if e > t and first_step is not None and first_step < k and k > decided_until)
            anomaly = None
            for suspect in suspects:  # a repeated id that may have been forgotten and moves the clock
                results = self._wait({p: node.decide(chunk, steps, suspect) for p, node in enumerate(nodes)})
                decided_until = suspect
                if any(r["stopped"] == Seen.NEW.value for r in results.values()):
                    anomaly = suspect
                    break
            if anomaly is None:
                break
            include[anomaly >> SHIFT] = np.append(include[anomaly >> SHIFT], anomaly & ((1 << SHIFT) - 1))
            self.reclocked += 1
        driver_verdicts: dict[int, str] = {}
        for result in self._wait({p: node.decide(chunk, steps, None) for p, node in enumerate(nodes)}).values():
            driver_verdicts.update(result["driver"])
        for block in batch:
            local.take(chunk, final[block.number]["driver"], {})
        local.take(chunk, None, driver_verdicts)
        started = self._tick("clock+dedupe", started)
        # ---- 4. apply: segments between barriers (evaluation.closed lines that are new)
        ends = [final[b.number]["last"] for b in batch if final[b.number]["last"] is not None]
        chunk_last = max(ends) if ends else last
        real = sorted(k for k in barriers if driver_verdicts.get(k, Seen.NEW.value) == Seen.NEW.value
                      and self._valid_barrier(final, k))
        out: list[Tagged] = []
        queries: list[tuple[int, int, float]] = []  # (index in out, after key, clock past)
        for stop in [*real, None]:
            until = stop if stop is not None else chunk_last + 1
            at = stop if stop is not None else chunk_last
            when = self._clock_at(final, stop) if stop is not None else clock.time
            year = barriers[stop] if stop is not None else None
            calls = {p: node.apply(chunk, until, at, when, pending[p], year) for p, node in enumerate(nodes)}
            local_out, local_queries, _ = local.apply(chunk, until, at, when, pending[count], None)
            for p in range(count + 1):
                pending[p] = []
            results = self._wait(calls)
            self._collect(out, queries, local_out, local_queries)
            for records, found, _ in results.values():
                self._collect(out, queries, records, found)
            if stop is None:
                break
            already = local.engine.evaluation.is_closed(year)  # type: ignore[arg-type]
            started = self._tick("apply", started)
            decided = local.barrier(chunk, year, [gathered for _, _, gathered in results.values()])  # type: ignore[arg-type]
            out.extend(decided)
            owned: list[list[Any]] = [[] for _ in range(count)]
            for at_key, phase, key, record in decided:
                if phase == 1 and isinstance(record, Decision) and record.evaluation is not None:
                    owned[partition_of(record.enterprise, count)].append((at_key, key, record))
            for made in self._wait({p: nodes[p].absorb(owned[p]) for p in range(count) if owned[p]}).values():
                out.extend(made)
            started = self._tick("barrier", started)  # the year's ranking and decisions, and their owners' part
            if not already:
                for p in range(count):
                    pending[p].append(year)  # type: ignore[arg-type]
        started = self._tick("apply", started)
        # ---- 5. escalations: the line where the clock passed each deadline (the readers know)
        self._place(chunk, batch, nodes, reader, final, out, queries)
        self._wait({p: node.done(chunk) for p, node in enumerate(nodes)})
        local.done(chunk)
        if any(tagged[0] < 0 for tagged in out):
            raise RuntimeError(f"distributed: an escalation of chunk {chunk} was not placed")
        out.sort(key=lambda r: (r[0], r[1], r[2]))
        self._tick("place", started)
        return [tagged[3] for tagged in out], chunk_last

    def _clock(self, chunk: int, batch: list[Block], nodes: list[Any], reader: dict[int, int], clock: EventClock,
               exclude: dict[int, np.ndarray], include: dict[int, np.ndarray], firsts: dict[int, int]
               ) -> dict[int, dict[str, Any]]:
        """Compose the clock over the chunk's blocks from their summaries (folding a block on its
        reader where the clock does not simply run through it); then each reader finalises its
        block with the time the clock entered it. Returns the readers' results by block."""
        summaries = self._wait({reader[b.number]: nodes[reader[b.number]].summarise(chunk, exclude[b.number],
                                                                                     include[b.number]) for b in batch})
        entered = {}
        for block in batch:
            node = reader[block.number]
            entered[block.number] = clock.time
            if clock.runs_through(summaries[node]):
                clock.skip(summaries[node])
            else:
                clock.restore(self._wait({node: nodes[node].fold(chunk, clock.state())})[node])
        final = self._wait({reader[b.number]: nodes[reader[b.number]].finalise(chunk, entered[b.number],
                                                                               firsts.get(b.number, 1)) for b in batch})
        return {b.number: final[reader[b.number]] for b in batch}

    @staticmethod
    def _valid_barrier(final: dict[int, dict[str, Any]], key: int) -> bool:
        share = final[key >> SHIFT]["driver"]
        if share is None:
            return False
        found = np.flatnonzero(share.keys == key)
        return bool(len(found)) and bool(share.valid[found[0]])

    @staticmethod
    def _clock_at(final: dict[int, dict[str, Any]], key: int) -> float:
        share = final[key >> SHIFT]["driver"]
        return float(share.clock[np.flatnonzero(share.keys == key)[0]])

    @staticmethod
    def _collect(out: list[Tagged], queries: list[tuple[int, int, float]], records: list[Tagged],
                 found: list[tuple[int, int, float]]) -> None:
        offset = len(out)
        out.extend(records)
        queries.extend((offset + index, after, when) for index, after, when in found)

    def _place(self, chunk: int, batch: list[Block], nodes: list[Any], reader: dict[int, int],
               final: dict[int, dict[str, Any]], out: list[Tagged], queries: list[tuple[int, int, float]]) -> None:
        """Tag each escalation with the first line after `after` where the clock passed its
        deadline: the block from the readers' exit times, the line from its reader."""
        if not queries:
            return
        asked: dict[int, list[tuple[int, int, float]]] = {}
        for index, after, when in queries:
            for block in batch:
                b = block.number
                if final[b]["last"] is None or final[b]["last"] <= after or final[b]["after"] <= when:
                    continue
                line = after - (b << SHIFT) if after >> SHIFT == b else -1
                asked.setdefault(b, []).append((index, line, when))
                break
            else:
                raise RuntimeError(f"distributed: no line of chunk {chunk} passes {when} after {after}")
        keys = self._wait({reader[b]: nodes[reader[b]].locate(chunk, [(line, when) for _, line, when in items])
                           for b, items in asked.items()})
        for b, items in asked.items():
            for (index, _, _), key in zip(items, keys[reader[b]]):
                _, phase, order, record = out[index]
                out[index] = (key, phase, order, record)


def _difference(here: dict[str, Any], there: dict[str, Any]) -> str:
    """What a worker sees of an input (`there`, blocks.py `seen`) that this machine does not (`here`)."""
    if "missing" in there:
        return f"no such {'archive' if 'archive' in here else 'file'}"
    if "error" in there:
        return f"cannot read it: {there['error']}"
    if "bytes" in here:
        return f"{there['bytes']} bytes, here {here['bytes']}" if "bytes" in there else "an archive, here a file"
    if "archive" not in there:
        return "a file, here an archive"
    theirs, ours = there["archive"], here["archive"]
    if theirs["rows"] != ours["rows"]:
        return f"{theirs['rows']} rows, here {ours['rows']}"
    if theirs["writer"] != ours["writer"]:
        return f"written by {theirs['writer']}, here by {ours['writer']}"
    if theirs["fingerprint"] != ours["fingerprint"]:
        return f"validated as {theirs['fingerprint'][:19]}, here as {ours['fingerprint'][:19]}"
    if theirs["digest"] != ours["digest"]:
        return f"content digest {theirs['digest']}, here {ours['digest']}"
    listed = {path: (rows, size) for path, rows, size in theirs["files"]}
    for path, rows, size in ours["files"]:
        if path not in listed:
            return f"its manifest does not list the part file {path}"
        if listed[path] != (rows, size):
            return f"part file {path}: {listed[path][0]} rows, {listed[path][1]} bytes, here {rows} rows, {size} bytes"
    return f"{len(theirs['files'])} part files, here {len(ours['files'])}"


def run_distributed(paths_or_lines: Any, *, scheduler: str | None = None, workers: int | None = 2,
                    as_of: str | None = None, **engine_kwargs: Any) -> Iterator[dict[str, Any]]:
    """The records of a distributed run as dicts (what `Engine.run` gives, as `to_dict()`), in the same order.

    `paths_or_lines`: JSONL paths or archive directories, or lines (str, bytes, `InputLine`).
    `scheduler`: an existing cluster's address; without it a LocalCluster of `workers` processes
    runs for this call.
    """
    for record in DistributedRun(paths_or_lines, scheduler=scheduler, workers=workers, as_of=as_of, **engine_kwargs):
        yield record.to_dict()


__all__ = ["BLOCK_BYTES", "CHUNK", "ClusterMismatch", "DistributedRun", "SchedulerUnreachable", "WorkerLost",
           "run_distributed"]
