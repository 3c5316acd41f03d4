"""`rectify run` (in this process, into a crash-safe store, or on a Dask cluster) and `rectify validate`."""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import orjson
import psutil

from engine.cli.common import (
    EXIT_CONFIG,
    EXIT_INVALID,
    EXIT_USAGE,
    build_engine,
    chunks,
    clock_settings,
    cores,
    engine_options,
    event_sources,
    fork_is_safe,
    lang_option,
    load_parameters,
    load_registry,
    output_files,
    progress_bar,
    report_run,
    time_option,
)
from engine.cli.logs import get_logger
from engine.fast import can_share
from engine.ingest import JsonlFiles, count_lines, opened, read_jsonl
from engine.ingest.archive import Archive
from engine.ingest.hj212 import ingest_numbered
from engine.output import JsonlSink, Store, StoreError, damaged
from engine.pipeline import Engine
from engine.records import InputLine, Quarantined
from engine.run import Outputs, Run, long_run_collector, manifest, manifest_path, run_into_store

# `--jobs` runs sorting processes only on cores nothing else is using: on an idle 2-core machine
# one sorting process made the batch path 1.31-1.48x faster (3 pairs), on the same machine with
# a load average of 3-4 it was 0.35x the speed of none (docs/batch-path.md, "Worker processes").
# `--jobs auto` (the default) asks for one on JSONL files of AUTO_JOBS_BYTES or more: on JSONL one
# was the faster in every benchmark run on the demo log (README, "--jobs"); below that size what it
# saves is about the 0.2 s load sample taken first (docs/batch-path.md), so `--jobs N` starts none
# below it either, and says so. Archives get none: a
# thread reads the next window beside the engine, and a sorting process was not reliably the
# faster on either benchmark archive (docs/archive.md, "One process").
AUTO_JOBS_BYTES = 64 << 20
ARCHIVE_JOBS = ("an archive is replayed in this process, its next window read by a thread beside the engine: "
                "a sorting process was not reliably faster there, and slower in some of the pairs measured "
                "(docs/archive.md)")


class _Jobs(click.ParamType):
    """`--jobs`: a number of sorting processes (0 or more), or `auto` (None)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        if value is None or isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if str(value).strip().lower() == "auto":
            return None
        try:
            number = int(str(value))
        except ValueError:
            number = -1
        if number < 0:
            self.fail(f"{value!r} is not a number of processes (0 or more) or 'auto'", param, ctx)
        return number


JOBS = _Jobs()


@click.command()
@click.argument("events", nargs=-1, required=False, type=click.Path(exists=True, allow_dash=True))
@click.option("--out", default="-", show_default=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Findings as JSON lines ('-' = stdout).")
@click.option("--hj212", "hj212", multiple=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="HJ 212 packet file, read after EVENTS (needs --registry). Repeatable.")
@click.option("--registry", "hj212_registry", type=click.Path(exists=True, dir_okay=False),
              help="HJ 212 registry (MN -> enterprise, outlet, process), YAML or CSV; for --hj212.")
@click.option("--quarantine", type=click.Path(dir_okay=False), help="Quarantined lines as JSON lines (default: in --out).")
@click.option("--summary-json", type=click.Path(dir_okay=False), help="Also write the run summary as JSON.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on a terminal.")
@time_option("--as-of", "Reference event time for a replay (RFC 3339): orders due before it escalate.")
@click.option("--store", "store", type=click.Path(dir_okay=False),
              help="Write records to this SQLite store (crash-safe: checkpoints, resumes after a kill).")
@click.option("--checkpoint-every", "checkpoint_every", default=5000, show_default=True, type=click.IntRange(1),
              help="With --store: input lines per checkpoint (records and state in one transaction).")
@click.option("--chain/--no-chain", default=True, show_default=True,
              help="Hash-chain the output records (prev, hash): `rectify verify` checks them.")
@click.option("--cluster", type=click.Choice(["dask"]), default=None,
              help="Distributed replay on Dask, same output as one machine (docs/distributed.md).")
@click.option("--scheduler", metavar="ADDRESS", default=None, help="With --cluster dask: an existing scheduler (tcp://host:8786).")
@click.option("--connect-timeout", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
              help="With --scheduler: seconds to wait for the scheduler before giving up (exit 2).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="With --cluster dask: local worker processes (default 2), or how many of the cluster's to use.")
@click.option("--jobs", "jobs", type=JOBS, default="auto", show_default=True,
              help="Processes that sort chunks of JSONL files for the batch path (parse, validate, gate), on "
                   f"files of {AUTO_JOBS_BYTES >> 20} MiB or more in all and cores nothing else is using; "
                   "elsewhere (smaller files, archives, stdin) the run says so and stays in this process. "
                   "0 = in this process; auto = one where it can help, quietly. Same output.")
@lang_option
@engine_options
def run(events: tuple[str, ...], out: str, quarantine: str | None, summary_json: str | None, progress: bool,
        hj212: tuple[str, ...], hj212_registry: str | None,
        as_of: str | None, disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str,
        store: str | None = None, checkpoint_every: int = 5000, chain: bool = True,
        cluster: str | None = None, scheduler: str | None = None, workers: int | None = None, jobs: int | None = None,
        connect_timeout: float = 10.0, lang: str = "en") -> None:
    """Run EVENTS (JSONL files, '-' for stdin, or archives from `rectify archive`) and --hj212 packets
    through the rules; write findings."""
    if not events and not hj212:
        raise click.UsageError("give EVENTS and/or --hj212 FILE")
    sources = event_sources(events)
    archives = any(isinstance(source, Archive) for source in sources)
    if archives and hj212:
        raise click.UsageError("archives run in this process, into a --store or on a --cluster (no --hj212)")
    if archives and store is not None and len(sources) > 1:
        raise click.UsageError("--store takes one archive, or JSONL files")
    if hj212 and hj212_registry is None:
        raise click.UsageError("--hj212 needs --registry")
    stations = load_registry(hj212_registry) if hj212 and hj212_registry else None
    engine = build_engine(disable, options, params, strict, backend)
    made = orjson.dumps(manifest(engine, as_of=as_of, quarantine_separate=quarantine is not None, chain=chain),
                        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    if cluster is not None:
        if hj212 or store is not None:
            raise click.UsageError("--cluster dask takes EVENTS files and archives only (no --hj212, no --store)")
        return _run_on_cluster(events, scheduler=scheduler, workers=workers, out=out, quarantine=quarantine,
                               connect_timeout=connect_timeout, manifest_bytes=made,
                               summary_json=summary_json, as_of=as_of, chain=chain, lang=lang,
                               engine_kwargs=dict(disable=disable, options=options, strict=strict,
                                                  parameters=load_parameters(params), backend=backend,
                                                  **clock_settings()))
    if out != "-" and store is None:  # what made the rule set, for `rectify replay` (engine/run.py manifest)
        Path(manifest_path(out)).write_bytes(made)
    if store is not None:
        if hj212:
            raise click.UsageError("--store reads EVENTS only (convert packets first: rectify ingest hj212)")
        if quarantine:
            raise click.UsageError("with --store, quarantine records are kept in the store (no --quarantine)")
        if out != "-":
            raise click.UsageError("with --store, export the records afterwards: rectify decisions --store DB --export FILE")
        if "-" in events:
            raise click.UsageError("--store needs files (a resumed run reads its input again), not stdin")
        if jobs:
            get_logger().info("jobs_ignored", jobs=jobs, reason="with --store the batch path sorts in this process")
        return _run_into_store(engine, events, sources, store, checkpoint_every, as_of, summary_json, progress, lang)
    started = time.perf_counter()  # for the throughput line only, never for a decision
    with output_files(out, quarantine) as (out_stream, q_stream):
        outputs = Outputs(JsonlSink(out_stream), JsonlSink(q_stream) if q_stream else None, chain=chain)
        inputs: list[Any] = list(sources)
        if hj212:
            inputs = [_with_hj212(read_jsonl(events), hj212, stations)]
        each = _usable_jobs(jobs, inputs)
        jobs = max(each, default=0)
        bar = progress_bar(None if hj212 else _count(sources), progress)
        try:
            with long_run_collector():  # this process is rectify's (engine/run.py)
                driver = Run(engine, outputs, as_of=as_of, workers=jobs, progress=bar)
                for source, workers_of_source in zip(inputs, each):
                    driver.feed(source, workers=workers_of_source)
                summary = driver.finish()
        finally:
            bar.close()
            outputs.close()
    stats = engine.lane_stats
    get_logger().info("batch_path", quiet=stats["quiet"], exact=stats["exact"], jobs=jobs)
    report_run(engine.ruleset, summary, outputs, time.perf_counter() - started, summary_json, lang)


def _count(sources: Sequence[JsonlFiles | Archive]) -> int | None:
    """Input lines for the progress bar (None when reading stdin)."""
    total = 0
    for source in sources:
        counted = source.rows if isinstance(source, Archive) else count_lines(source.paths)
        if counted is None:
            return None
        total += counted
    return total


def _usable_jobs(jobs: int | None, inputs: Sequence[Any]) -> list[int]:
    """The sorting processes for each input: `--jobs` where they can help, else 0 (in this
    process), saying why. They help only on JSONL files another process can read again, of
    AUTO_JOBS_BYTES or more in all, and on cores nothing else is using; an archive is replayed in
    this process. `auto` (None) asks for one, and says nothing where it does not ask (archives,
    smaller files, standard input, packets)."""
    usable = _sorting_processes(jobs, inputs)
    return [0 if isinstance(source, Archive) else usable for source in inputs]


def _sorting_processes(jobs: int | None, inputs: Sequence[Any]) -> int:
    """`_usable_jobs` for the JSONL inputs among `inputs`."""
    auto = jobs is None
    if auto:
        if not all(isinstance(source, JsonlFiles) and source.rereadable for source in inputs):
            return 0
        jobs = 1
    if not jobs:
        return 0
    log = get_logger()
    if all(isinstance(source, Archive) for source in inputs):
        log.info("jobs_ignored", jobs=jobs, reason=ARCHIVE_JOBS)
        return 0
    if not all(can_share(source) for source in inputs):
        log.info("jobs_ignored", jobs=jobs,
                 reason="sorting processes read the input files or archives again themselves: not standard "
                        "input, not --hj212 packets, and only where processes can be forked")
        return 0
    size = sum(os.path.getsize(path) for source in inputs if isinstance(source, JsonlFiles) for path in source.paths)
    if size < AUTO_JOBS_BYTES:
        if not auto:
            log.info("jobs_ignored", jobs=jobs, mib=round(size / (1 << 20), 1),
                     reason=f"JSONL files under {AUTO_JOBS_BYTES >> 20} MiB in all, where a sorting process saves "
                            "about what sampling the cores (0.2 s) costs, or less (docs/batch-path.md)")
        return 0
    usable = cores()
    busy = psutil.cpu_percent(interval=0.2) / 100 * usable  # cores in use now by other processes (0.2 s sample)
    free = math.floor(usable - 1 - busy + 0.5)  # cores beyond the engine's own that nothing else is using (rounded)
    if free < 1:
        log.info("jobs_ignored", jobs=jobs, cores=usable, busy=round(busy, 2),
                 reason="no core is free beside the engine's own (measured over 0.2 s), "
                        "where a sorting process is slower than none (docs/batch-path.md)")
        return 0
    if jobs > free:
        log.info("jobs_capped", jobs=free, asked=jobs, cores=usable, busy=round(busy, 2),
                 reason="one sorting process for each core free beside the engine's (measured over 0.2 s)")
    if any(isinstance(source, Archive) for source in inputs):
        log.info("jobs_ignored", jobs=jobs, inputs="archives", reason=ARCHIVE_JOBS)
    return min(jobs, free)


def _with_hj212(lines: Iterable[Any], files: Sequence[str], registry: Any) -> Iterator[Any]:
    """EVENTS first (registrations), then each packet file's events; bad packets as quarantine records, in order."""
    from orjson import dumps

    yield from lines
    for path in files:
        with opened(path) as handle:
            for number, item in ingest_numbered(chunks(handle), registry, source=path):
                yield item if isinstance(item, Quarantined) else InputLine(source=path, number=number, text=dumps(item))


def _run_into_store(engine: Engine, events: tuple[str, ...], sources: Sequence[JsonlFiles | Archive], path: str,
                    every: int, as_of: str | None, summary_json: str | None, progress: bool, lang: str = "en") -> None:
    """`rectify run EVENTS --store DB`: records (chained) and checkpoints in SQLite; resumes after a kill."""
    config = {"ruleset": engine.ruleset, "backend": engine.backend, "as_of": as_of,
              "clock": engine.clock.parameters,
              "inputs": [[str(Path(e).resolve()), Path(e).stat().st_size] for e in events]}
    if isinstance(sources[0], Archive):
        config["inputs"] = [[str(Path(events[0]).resolve()), sources[0].rows]]
    started = time.perf_counter()
    bar = progress_bar(_count(sources), progress)
    try:
        db = Store(path)
    except StoreError as exc:
        bar.close()
        click.echo(f"rectify: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    try:
        summary, resumed = run_into_store(engine, sources[0], db, config=config, every=every, as_of=as_of,
                                          progress=bar)
        head, records = db.head(), db.count()
    except sqlite3.DatabaseError as exc:
        click.echo(f"rectify: {damaged(path, exc)}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    except StoreError as exc:
        click.echo(f"rectify: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    finally:
        bar.close()
        db.close()
    click.echo(f"store {path}: {records} records, chain head {head}" + (" (resumed from a checkpoint)" if resumed else ""),
               err=True)
    report_run(engine.ruleset, summary, None, time.perf_counter() - started, summary_json, lang,
               chain={"records": records, "head": head})


def _run_on_cluster(events: tuple[str, ...], *, scheduler: str | None, workers: int | None, out: str,
                    quarantine: str | None, summary_json: str | None, as_of: str | None, chain: bool,
                    engine_kwargs: dict[str, Any], connect_timeout: float = 10.0, manifest_bytes: bytes = b"",
                    lang: str = "en") -> None:
    """`rectify run --cluster dask`: the same outputs, chain and summary as a local run.

    The outputs are written to temporary files next to them and renamed when the run is
    complete: a run that fails (an unreachable scheduler, a worker with another rule set, a
    worker lost) says why, exits non-zero and leaves no output that looks complete (standard
    output, once written, cannot be taken back)."""
    from engine.distributed import (
        ClusterMismatch,
        DistributedRun,
        SchedulerUnreachable,
        WorkerLost,
    )

    if not events or "-" in events:
        raise click.UsageError("--cluster dask needs EVENTS files or archives (the workers read them), not stdin")
    started = time.perf_counter()  # for the throughput line only
    # A LocalCluster's workers forked from this process start with its modules imported (about
    # 1.3 s less): only where fork is safe (elsewhere they get Dask's default, spawn).
    alone = fork_is_safe()
    job = DistributedRun(list(events), scheduler=scheduler, workers=workers, as_of=as_of,
                         connect_timeout=connect_timeout, start_method="fork" if alone else None, **engine_kwargs)
    partial = {name: f"{name}.partial" for name in (out, quarantine) if name and name != "-"}
    try:
        with output_files(partial.get(out, out), partial.get(quarantine or "", quarantine)) as (out_stream, q_stream):
            outputs = Outputs(JsonlSink(out_stream), JsonlSink(q_stream) if q_stream else None, chain=chain)
            try:
                with long_run_collector():
                    outputs.write_all(job)
            finally:
                outputs.close()
    except (SchedulerUnreachable, ClusterMismatch, WorkerLost) as exc:
        for name in partial.values():
            Path(name).unlink(missing_ok=True)
        click.echo(f"rectify: {exc}", err=True)
        raise SystemExit(EXIT_USAGE if isinstance(exc, SchedulerUnreachable)
                         else EXIT_CONFIG if isinstance(exc, ClusterMismatch) else EXIT_INVALID) from None
    except BaseException:
        for name in partial.values():
            Path(name).unlink(missing_ok=True)
        raise
    for name, temporary in partial.items():
        os.replace(temporary, name)
    if out != "-":
        Path(manifest_path(out)).write_bytes(manifest_bytes)
    click.echo(f"distributed: {job.partitions} partitions", err=True)
    report_run(job.ruleset or "", job.summary, outputs, time.perf_counter() - started, summary_json, lang,
               distributed=job.report())


@click.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@engine_options
def validate(events: tuple[str, ...], disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool,
             backend: str) -> None:
    """Check EVENTS without writing findings; print each bad line's reason. Exit 1 if any."""
    engine = build_engine(disable, options, params, strict, backend)
    for item in read_jsonl(events):
        for record in engine.process_line(item, item.number):
            if isinstance(record, Quarantined):
                click.echo(f"{record.source}:{record.line}: {record.error}")
    summary = engine.summary
    click.echo(f"read {summary.read}  valid {summary.processed}  duplicate {summary.duplicate}  invalid {summary.quarantined}", err=True)
    if summary.quarantined:
        raise SystemExit(EXIT_INVALID)
