"""`rectify archive`: JSONL event logs validated once and kept as a Parquet archive (docs/archive.md)."""

from __future__ import annotations

import time

import click

from engine.cli.common import EXIT_USAGE, build_engine, engine_options
from engine.cli.logs import get_logger
from engine.ingest.archive import ArchiveError
from engine.output import JsonlSink
from engine.run import archive_files, long_run_collector


@click.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="The archive directory (created; an existing archive gets the lines appended).")
@click.option("--quarantine", type=click.Path(dir_okay=False),
              help="Also write the invalid lines' quarantine records here (they stay in the archive).")
@click.option("--buckets", default=16, show_default=True, type=click.IntRange(1, 4096),
              help="Enterprise buckets per month (a new archive only).")
@engine_options
def archive(events: tuple[str, ...], out: str, quarantine: str | None, buckets: int, disable: tuple[str, ...],
            options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Validate EVENTS (JSONL files) once and append them to the Parquet archive --out.

    `rectify run ARCHIVE` then gives the same output, byte for byte, as running EVENTS. An
    archive among EVENTS is written again, each line with the file and line it came from: so an
    archive of an older format becomes one of this rectify's.
    """
    engine = build_engine(disable, options, params, strict, backend)
    started = time.perf_counter()
    with long_run_collector():  # this process is rectify's (engine/run.py)
        try:
            if quarantine:
                with open(quarantine, "wb") as handle, JsonlSink(handle) as sink:
                    summary = archive_files(engine, events, out, sink, buckets=buckets)
            else:
                summary = archive_files(engine, events, out, buckets=buckets)
        except ArchiveError as exc:
            click.echo(f"rectify: {exc}", err=True)
            raise SystemExit(EXIT_USAGE) from None
    seconds = time.perf_counter() - started
    get_logger().info("archived", read=summary.read, valid=summary.valid, quarantined=summary.quarantined,
                      typed=summary.typed, rows=summary.rows, seconds=round(seconds, 3))
    click.echo(f"archive {out}: {summary.read} lines read, {summary.valid} valid, {summary.quarantined} quarantined; "
               f"{summary.rows} rows in the archive", err=True)
