"""Throughput of the same logs through every path, measured in one run, and the ratios.

Two logs: the demo mix (at least RECTIFY_BENCH_EVENTS events, default 1,000,000) and the
same log finding-heavy (every fourth reading above its limits, benchmarks/conftest.py).

(a) durable_rules alone: the rule set's reading rules compiled to one durable_rules
    ruleset, each event posted one at a time (demo log only);
(b) Engine.process, per event (orjson per line, then process);
(c) the batch path end to end as `rectify run` does it (`Run`: records written as JSON lines,
    hash-chained, to /dev/null) from the JSONL file: in one process, and with chunks sorted in
    1 and 2 forked processes (`Engine.run_batch(workers=N)`; `rectify run --jobs` uses them only
    on cores nothing else is using; its default, `--jobs auto`, asks for one on JSONL files of
    64 MiB or more, so `rectify run` on these logs is the one-process case only with `--jobs 0`);
(e) the same from the Parquet archive of the log (`rectify run ARCHIVE`: the columnar lane), in
    one process and with its windows read and sorted by 1 forked process (`workers=1`);
    writing the archive is timed apart (once);
(e') the archive of a log of the same city over four times the days (`long`, benchmarks/
    conftest.py: LONG), against the floor of its own log: how much what does not grow with the
    log (the registrations, reports and declarations taken exactly, the year's evaluation, the
    ends of the replay) weighs as the log grows;
(d) the floor: reading the file and orjson.loads per line, no validation, no rules;
(d2) the floor with each line's content digest as well (what de-duplication needs of every
    JSONL event): the most one process reading JSONL can do.

Paths (c) and (e) of a log must end on the same chain head (the same bytes). Each of them is
also set against the floor of its log timed just before it (d'), which the machine's drift
during the run cannot move apart from it as it can the floor timed once, later (d).

(j) `--jobs` in pairs: each log and its archive replayed with no sorting process and with one
    (`workers=0/1`), alternately (one pair in each order), so that every pair ran side by side
    in time; the ratio of each pair says whether one sorting process was the slower. `rectify
    run --jobs` starts one on JSONL only: on archives it was not reliably the faster
    (docs/archive.md), and these pairs are what would show a change.

Tests are named so that pytest runs them in this order; the last prints the table.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from replay import feed as _feed

from engine import Engine
from engine.decide.rete import SafeHost
from engine.ingest import JsonlFiles
from engine.ingest.archive import Archive
from engine.judge import READING_TYPES, Rule
from engine.normalise import content_digest

LOGS = ["demo", "heavy"]


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _record(results, name: str, events: int, seconds: float) -> None:
    results[name] = {"events": events, "seconds": seconds, "events_per_s": events / seconds}


def _durable_condition(rule: Rule) -> dict | None:
    """A reading rule as a durable_rules condition on the posted data (no corrections)."""
    if rule.type not in READING_TYPES:
        return None
    parts: list[dict] = [{"type": rule.type}]
    for field, values in (("pollutant", rule.pollutants), ("process", rule.processes),
                          ("point", rule.points), ("destination", rule.destinations)):
        if values:
            options = [{field: v} for v in sorted(values)]
            parts.append(options[0] if len(options) == 1 else {"$or": options})
    text = rule.condition_text.replace(" ", "")
    if text == "judged>limit" and rule.limit and "value" in rule.limit:
        parts.append({"$gt": {"value": float(rule.limit["value"])}})
    elif text in ("judged<loworjudged>high",) and rule.limit:
        parts.append({"$or": [{"$lt": {"value": float(rule.limit["min"])}}, {"$gt": {"value": float(rule.limit["max"])}}]})
    else:
        return None
    return {"$and": parts}


def test_a_durable_rules_alone(benchmark, million_log, results):
    engine = Engine()
    hits: list[int] = []
    definition = {}
    for index, rule in enumerate(engine.rules):
        condition = _durable_condition(rule)
        if condition is not None:
            definition[f"r{index:03d}"] = {"all": [{"m": condition}], "run": lambda c: hits.append(1)}
    host = SafeHost(drain_every_post=False)
    host.register("alone", definition, numeric_fields=("value",))

    def run() -> int:
        count = 0
        with million_log.open("rb") as handle:
            for line in handle:
                event = orjson.loads(line)
                message = {"id": event["id"], "sid": "0", "type": event["type"], **event["data"]}
                message.pop("attributes", None), message.pop("production", None), message.pop("output", None)
                message.pop("permits", None), message.pop("violations", None)
                host.post("alone", message)
                count += 1
        return count

    started = time.perf_counter()
    count = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(results, "a_durable_rules_alone", count, time.perf_counter() - started)
    results["a_durable_rules_alone"]["rules"] = len(definition)
    assert hits, "durable_rules alone found no exceedance at all: the translation is broken"


def _log(request, log: str) -> Path:
    return request.getfixturevalue("million_log" if log == "demo" else "heavy_log")


@pytest.mark.parametrize("log", LOGS)
def test_b_engine_process_per_event(benchmark, request, results, log):
    path = _log(request, log)
    engine = Engine()

    def run() -> int:
        count = 0
        with path.open("rb") as handle:
            for line in handle:
                engine.process(orjson.loads(line))
                count += 1
        engine.flush()
        return count

    started = time.perf_counter()
    count = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(results, f"{log}/b_engine_process", count, time.perf_counter() - started)


def _floor(path: Path) -> int:
    """(d): read the file and `orjson.loads` each line; the number of lines."""
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            orjson.loads(line)
            count += 1
    return count


def _floor_rate(path: Path) -> float:
    started = time.perf_counter()
    count = _floor(path)
    return count / (time.perf_counter() - started)


def _replay(source, workers: int) -> tuple[str, float]:
    """`_feed` on a new engine: the chain head and the seconds it took. The engine is dropped
    before it returns, so that the next replay does not run beside it (a heap the collector goes
    through)."""
    engine = Engine()
    started = time.perf_counter()
    outputs = _feed(engine, source, workers)
    seconds = time.perf_counter() - started
    assert engine.summary.balanced()
    return outputs.head, seconds


def _run(benchmark, results, name: str, source, log: Path, workers: int = 0) -> Engine:
    """`_feed` timed, with the floor of `log` (the log itself, or the one the archive was made
    from) timed just before it."""
    engine = Engine()
    outputs = None
    adjacent = _floor_rate(log)

    def run() -> int:
        nonlocal outputs
        outputs = _feed(engine, source, workers)
        return engine.summary.read

    started = time.perf_counter()
    count = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(results, name, count, time.perf_counter() - started)
    results[name]["floor_adjacent"] = adjacent
    assert outputs is not None and engine.summary.balanced()
    results[name].update(quiet_share=engine.lane_stats["quiet"] / max(1, count), records=outputs.written,
                         findings=sum(engine.summary.findings.values()))
    results[name]["head"] = outputs.head  # type: ignore[assignment]
    return engine


@pytest.mark.parametrize("log", LOGS)
def test_c_batch_path(benchmark, request, results, log):
    """The batch path in one process (what `rectify run EVENTS.jsonl --jobs 0` does)."""
    path = _log(request, log)
    _run(benchmark, results, f"{log}/c_batch_path", JsonlFiles([path]), path)


@pytest.mark.parametrize("log", LOGS)
def test_c_batch_path_1_job(benchmark, request, results, log):
    """Chunks sorted by 1 forked process as well (`Engine.run_batch(workers=1)`; what `rectify run
    EVENTS.jsonl` does by default on a log this size when a core is free)."""
    path = _log(request, log)
    _run(benchmark, results, f"{log}/c_batch_path_1_job", JsonlFiles([path]), path, workers=1)


def test_c_batch_path_2_jobs(benchmark, million_log, results):
    """Chunks sorted by 2 forked processes (three processes), demo log only."""
    _run(benchmark, results, "demo/c_batch_path_2_jobs", JsonlFiles([million_log]), million_log, workers=2)


@pytest.mark.parametrize("log", LOGS)
def test_e_archive(benchmark, request, results, log):
    """The Parquet archive of the log (`rectify run ARCHIVE`), the columnar lane."""
    directory = request.getfixturevalue("million_archive" if log == "demo" else "heavy_archive")
    _run(benchmark, results, f"{log}/e_archive", Archive(directory), _log(request, log))


@pytest.mark.parametrize("log", LOGS)
def test_e_archive_1_job(benchmark, request, results, log):
    """Its windows read and sorted by 1 forked process (`Engine.run_batch(workers=1)`; `rectify run
    ARCHIVE --jobs 1` runs in one process instead: not reliably faster, docs/archive.md)."""
    directory = request.getfixturevalue("million_archive" if log == "demo" else "heavy_archive")
    _run(benchmark, results, f"{log}/e_archive_1_job", Archive(directory), _log(request, log), workers=1)


def test_e_archive_long(benchmark, long_log, long_archive, log_days, results):
    """(e') the archive of the long log, in one process, against the floor of that log (d')."""
    _run(benchmark, results, "long/e_archive", Archive(long_archive), long_log)
    results["long/e_archive"].update(days=log_days["long"], demo_days=log_days["demo"])


@pytest.mark.parametrize("log", LOGS)
def test_f_floor_orjson_parse(benchmark, request, results, log):
    """(d) the floor."""
    path = _log(request, log)
    started = time.perf_counter()
    count = benchmark.pedantic(lambda: _floor(path), rounds=1, iterations=1)
    _record(results, f"{log}/d_floor_orjson", count, time.perf_counter() - started)


@pytest.mark.parametrize("log", LOGS)
def test_g_floor_with_digest(benchmark, request, results, log):
    """(d2) the floor and each line's content digest (orjson.loads, then XXH3-64 of its sorted-key
    JSON, `engine.normalise.content_digest`), which de-duplication needs of every JSONL event: the
    most a path that reads JSONL in one process can do. No validation, no rules."""
    path = _log(request, log)

    def run() -> int:
        count = 0
        with path.open("rb") as handle:
            for line in handle:
                content_digest(orjson.loads(line))
                count += 1
        return count

    started = time.perf_counter()
    count = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(results, f"{log}/d2_floor_with_digest", count, time.perf_counter() - started)


@pytest.mark.parametrize("log", LOGS)
@pytest.mark.parametrize("kind", ["jsonl", "archive"])
def test_j_jobs_in_pairs(benchmark, request, results, log, kind):
    """(j) no sorting process and one, alternately: (0, 1), then (1, 0); each pair's ratio."""
    path = _log(request, log)
    if kind == "archive":
        directory = request.getfixturevalue("million_archive" if log == "demo" else "heavy_archive")

    def source():
        return Archive(directory) if kind == "archive" else JsonlFiles([path])

    pairs: list[dict[int, float]] = []
    heads: set[str] = set()

    def run() -> None:
        for order in ((0, 1), (1, 0)):
            seconds: dict[int, float] = {}
            for workers in order:
                head, seconds[workers] = _replay(source(), workers)
                heads.add(head)
            pairs.append(seconds)

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert len(heads) == 1, f"{log} {kind}: no sorting process and one wrote different records"
    results[f"{log}/j_{kind}_pairs"] = {"head": heads.pop(),  # type: ignore[dict-item]
                                        **{f"{order}_{w}": p[w] for order, p in enumerate(pairs) for w in (0, 1)}}


def test_z_ratios(benchmark, results, capsys):
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    rate = {name: r["events_per_s"] for name, r in results.items() if "events_per_s" in r}
    lines = ["", "throughput (events/s), one run; ratios against the floor (d) and per-event (b) of the same log,",
             "and against the floor of the same log timed just before the path (d'):"]
    for log in LOGS:
        floor, per_event = rate.get(f"{log}/d_floor_orjson"), rate.get(f"{log}/b_engine_process")
        heads = set()
        for name in sorted(n for n in rate if n.startswith(log + "/")):
            r = results[name]
            extra = ""
            if "quiet_share" in r:
                extra = f"   quiet {r['quiet_share']:.1%}, findings {r['findings']:,.0f}, records {r['records']:,.0f}"
                heads.add(r["head"])
            vs_floor = f"{rate[name] / floor:6.3f}x d" if floor else ""
            if "floor_adjacent" in r:
                vs_floor += f"  {rate[name] / r['floor_adjacent']:6.3f}x d'"
            vs_b = f"{rate[name] / per_event:6.2f}x b" if per_event else ""
            lines.append(f"  {name:<28}{rate[name]:>12,.0f}/s  {vs_floor}  {vs_b}   ({r['events']:,.0f} events, "
                         f"{r['seconds']:.2f} s){extra}")
        if heads:
            lines.append(f"  {log}: batch and archive paths end on {'the same chain head' if len(heads) == 1 else 'DIFFERENT chain heads'}")
    if "long/e_archive" in results:
        r, demo = results["long/e_archive"], results.get("demo/e_archive")
        lines.append(f"  {'long/e_archive':<28}{rate['long/e_archive']:>12,.0f}/s  "
                     f"{rate['long/e_archive'] / r['floor_adjacent']:6.3f}x d'   ({r['events']:,.0f} events, "
                     f"{r['seconds']:.2f} s; the demo log's city over {r['days']} days, not {r['demo_days']})"
                     + (f"; demo/e_archive {rate['demo/e_archive'] / demo['floor_adjacent']:.3f}x d'" if demo else ""))
    for name in sorted(n for n in rate if n.startswith("archive_write_")):
        r = results[name]
        log = name.removeprefix("archive_write_")
        floor, mark = rate.get(f"{log}/d_floor_orjson"), "d"
        if not floor:
            floor, mark = results.get(f"{log}/e_archive", {}).get("floor_adjacent"), "d'"
        vs_floor = f"{rate[name] / floor:6.3f}x {mark}" if floor else ""
        lines.append(f"  {name:<28}{rate[name]:>12,.0f}/s  {vs_floor}   (validating and writing {r['events']:,.0f} lines once, "
                     f"{r['seconds']:.1f} s)")
    if "a_durable_rules_alone" in rate and "demo/c_batch_path" in rate:
        lines.append(f"  demo/c_batch_path vs (a) durable_rules alone: {rate['demo/c_batch_path'] / rate['a_durable_rules_alone']:.2f}x")
    pairs = [name for name in results if "/j_" in name]
    if pairs:
        lines.append("--jobs in pairs (j): seconds with no sorting process / with one (workers=0/1; rectify run --jobs "
                     "starts one on JSONL only), and their ratio (< 1: one was faster)")
        for name in sorted(pairs):
            r = results[name]
            cells = [f"{r[f'{o}_0']:.2f} / {r[f'{o}_1']:.2f} s = {r[f'{o}_1'] / r[f'{o}_0']:.3f}" for o in (0, 1)]
            slower = sum(r[f"{o}_1"] > r[f"{o}_0"] for o in (0, 1))
            lines.append(f"  {name:<28}{cells[0]};  {cells[1]};  one sorting process slower in {slower} of 2")
    with capsys.disabled():
        print("\n".join(lines))
    for log in LOGS:
        heads = {results[n]["head"] for n in results if n.startswith(log + "/") and "head" in results[n]}
        assert len(heads) <= 1, f"{log}: the paths wrote different records"
