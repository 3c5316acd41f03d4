"""Where the time goes: µs per event for each stage of each path, on the demo log and the
finding-heavy log, and what a finding costs.

Run with `pytest benchmarks/test_stages.py --benchmark-only -s`. Uses the first 300,000 lines
of each benchmark log (RECTIFY_BENCH_STAGE_LINES), and the archives of the whole logs.

JSONL batch path, in 256-line chunks as it reads them, each stage timed on its own, best of 3:
- parse: orjson per line;
- sort: shape plans, gates, event times and content digests (engine/fast/lane.py);
- of which digests: the sorted-key XXH3-64 content digest alone;
- apply: id exclusion, bulk commits and the exact path, on a fresh engine.
Archive (columnar lane, engine/fast/columns.py), one pass:
- read: Parquet windows merged into input order (engine/ingest/archive.py);
- sort: gates by column; apply: ids, bulk commits and the exact path.
Records: writing the run's records as chained JSON lines (`Outputs`), per record.
"""

from __future__ import annotations

import io
import os
import time
from itertools import islice

from timing import best

from engine import Engine, JsonlFiles
from engine.fast import FastLane, parse_lines
from engine.fast.columns import ColumnLane
from engine.ingest.archive import Archive
from engine.normalise import content_digests
from engine.output import JsonlSink
from engine.run import Outputs

LINES = int(os.environ.get("RECTIFY_BENCH_STAGE_LINES", "300000"))


def _jsonl_stages(path) -> tuple[int, dict[str, float], list]:
    chunks = list(islice(JsonlFiles([path]).chunks(256), LINES // 256))
    events = sum(len(texts) for _, _, texts in chunks)
    lane = FastLane(Engine())

    def parse() -> None:
        for _, _, texts in chunks:
            parse_lines(texts)

    def sort() -> None:
        for _, _, texts in chunks:
            lane.sort(parse_lines(texts), texts)  # with the lines: the repeated-key screen runs, as in a run

    parsed = [parse_lines(texts) for _, _, texts in chunks]

    def digests() -> None:  # on the parsed events: timed alone, not as a difference of two noisy times
        for chunk_events in parsed:
            content_digests(chunk_events)

    seconds = {"parse": best(parse), "parse+sort": best(sort), "digests": best(digests)}
    sortings = [lane.sort(chunk_events, texts) for chunk_events, (_, _, texts) in zip(parsed, chunks)]
    engine = Engine()
    applier = FastLane(engine)
    records = []
    started = time.perf_counter()
    for (source, first, texts), chunk_events, sorting in zip(chunks, parsed, sortings):
        records.extend(applier.apply(sorting, chunk_events, texts, source, first))
    seconds["apply"] = time.perf_counter() - started
    seconds["exact share"] = engine.lane_stats["exact"] / events
    return events, seconds, records


def _archive_stages(directory) -> tuple[int, dict[str, float]]:
    archive = Archive(directory)
    started = time.perf_counter()
    tables = list(archive.tables())
    seconds = {"read": time.perf_counter() - started}
    engine = Engine()
    lane = ColumnLane(engine)
    started = time.perf_counter()
    for table in tables:
        lane.sort(table)
    seconds["sort"] = time.perf_counter() - started
    lane = ColumnLane(engine)
    started = time.perf_counter()
    for table in tables:
        lane.window(table)
    seconds["apply"] = time.perf_counter() - started - seconds["sort"]
    events = archive.rows
    seconds["exact share"] = engine.lane_stats["exact"] / events
    return events, seconds


def _records_cost(records: list) -> float:
    """µs per record to write records as chained JSON lines (to memory)."""
    def write() -> None:
        outputs = Outputs(JsonlSink(io.BytesIO()))
        outputs.write_all(records)
    return best(write) / max(1, len(records)) * 1e6


def test_stages(benchmark, million_log, heavy_log, million_archive, heavy_archive, capsys):
    def run() -> dict:
        found = {}
        for name, path, directory in (("demo", million_log, million_archive), ("heavy", heavy_log, heavy_archive)):
            events, seconds, records = _jsonl_stages(path)
            found[name] = (events, seconds, len(records), _records_cost(records), _archive_stages(directory))
        return found

    found = benchmark.pedantic(run, rounds=1, iterations=1)
    with capsys.disabled():
        for name, (events, seconds, records, per_record, (rows, archive)) in found.items():
            us = {k: v / events * 1e6 for k, v in seconds.items() if k != "exact share"}
            print(f"\n{name} log, JSONL batch path stages, µs per event over {events:,} events (best of 3):")
            print(f"  parse                          {us['parse']:.2f}")
            print(f"  sort                           {us['parse+sort'] - us['parse']:.2f}")
            print(f"    of which digests             {us['digests']:.2f}")
            print(f"  apply (incl. the exact path)   {us['apply']:.2f}   (exact share {seconds['exact share']:.1%})")
            print(f"  records: {records:,} ({records / events:.1%} of events), {per_record:.1f} µs each as chained "
                  f"JSON ({per_record * records / events:.2f} µs per event)")
            ua = {k: v / rows * 1e6 for k, v in archive.items() if k != "exact share"}
            print(f"{name} archive, columnar lane stages, µs per event over {rows:,} rows (one pass):")
            print(f"  read and merge                 {ua['read']:.2f}")
            print(f"  sort (gates by column)         {ua['sort']:.2f}")
            print(f"  apply (incl. the exact path)   {ua['apply']:.2f}   (exact share {archive['exact share']:.1%})")
