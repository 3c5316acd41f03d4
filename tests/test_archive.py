"""The Parquet event archive: a replay of an archive gives the bytes of the JSONL it was made from.

Every comparison runs `Engine.run` over the JSONL lines (the per-event reference) and checks,
record for record, the archive replayed by `Engine.run` (rebuilt lines) and by
`Engine.run_batch` (the columnar lane, engine/fast/columns.py): same records, summary,
remembered ids and decision clock. Archives are written small (a few buckets, small windows)
so rows of several partitions are merged back into input order many times.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest
from click.testing import CliRunner

from engine import Engine, InputLine, load_plugins
from engine.cli import cli
from engine.devtools.demo import generate_city
from engine.ingest import JsonlFiles, read_jsonl
from engine.ingest.archive import MANIFEST, Archive, ArchiveError
from engine.normalise import DIGEST, content_digest
from engine.output import ListSink
from engine.run import archive_files
from test_fastlane import (
    DATED_GROUPS,
    adversarial_log,
    benchmark_events,
    bound_events,
    dated_events,
    killed_midway,
    registrations,
)

PLUGINS = load_plugins()
CITY = generate_city(enterprises=40, days=2, seed=11)
FORMAT_2 = Path(__file__).parent / "data" / "archive_format2"  # written by rectify 0.3.0 from its events.jsonl


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def finding_heavy(events: list[dict]) -> list[bytes]:
    """The log with every fourth reading well above its limits."""
    lines, n = [], 0
    for event in events:
        event = orjson.loads(orjson.dumps(event))
        if event["type"] in ("emission.measured", "discharge.measured"):
            n += 1
            if n % 4 == 0:
                event["data"]["value"] = round(event["data"]["value"] * 8 + 50, 3)
        lines.append(orjson.dumps(event))
    return lines


def records(engine: Engine, source, batch: bool, as_of: str | None = None, workers: int = 0) -> list[bytes]:
    run = engine.run_batch(source, as_of=as_of, workers=workers) if batch else engine.run(source, as_of=as_of)
    return [orjson.dumps(r.to_dict()) for r in run]


def remembered_ids(engine: Engine) -> tuple:
    """What the de-duplication index remembers (ids, digests, times; its clock and last purge),
    in no particular order: ids that came as columns are listed after the others."""
    state = engine.dedupe.state()
    return sorted(map(tuple, state["ids"])), state["newest"], state["purged_at"]


def compare(paths: list[Path], directory: Path, backend: str = "compiled", window: int = 97,
            as_of: str | None = None) -> Engine:
    """Per-event over JSONL == per-event over the archive == columnar over the archive, its windows
    sorted here and in a forked process (`workers=1`), and the state after each."""
    reference = Engine(plugins=PLUGINS, backend=backend)
    expected = records(reference, read_jsonl(paths), batch=False, as_of=as_of)
    from engine.fast import columns

    engines: list[Engine] = []
    ways: list[tuple[bool, int, float | None]] = [(False, 0, None), (True, 0, None), (True, 1, None)]
    for batch, workers, heavy_share in ways:  # a way appended below is taken too
        engine = Engine(plugins=PLUGINS, backend=backend)
        default, columns.HEAVY_SHARE = columns.HEAVY_SHARE, heavy_share or columns.HEAVY_SHARE
        try:
            got = records(engine, Archive(directory, window=window), batch=batch, as_of=as_of, workers=workers)
        finally:
            columns.HEAVY_SHARE = default
        assert len(got) == len(expected)
        for left, right in zip(expected, got):
            assert left == right
        assert engine.summary.to_dict() == reference.summary.to_dict()
        assert remembered_ids(engine) == remembered_ids(reference)
        assert engine.decisions.clock == reference.decisions.clock
        engines.append(engine)
        if len(engines) == 3 and engine.lane_stats["windows_sorted_here"]:
            # its sorting process stopped after a finding-heavy first window: kept for every window too
            ways.append((True, 1, 2.0))
    for key in ("quiet", "exact"):  # the same rows quiet, wherever they were sorted
        assert len({engine.lane_stats[key] for engine in engines[1:]}) == 1
    assert engines[-1].lane_stats["windows_sorted_here"] == 0
    return engines[1]


def test_demo_log_archive_replays_byte_for_byte_mostly_by_column(tmp_path):
    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    summary = archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=4)
    assert summary.read == summary.valid == summary.rows == len(CITY.events)
    assert summary.typed > 0.9 * summary.rows  # readings as columns, not bytes
    columnar = compare([log], tmp_path / "archive")
    assert columnar.lane_stats["quiet"] > 0.8 * len(CITY.events)
    assert sum(columnar.summary.findings.values()) > 0


@pytest.mark.parametrize("backend", ["compiled", "rete"])
@pytest.mark.parametrize("seed", [1, 2])
def test_adversarial_logs_with_bad_lines_replay_byte_for_byte(tmp_path, seed, backend):
    """Mutated, duplicated, conflicting, re-ordered and broken lines; both backends."""
    log = write(tmp_path / "adv.jsonl", adversarial_log(seed, 900))
    quarantine = ListSink()
    summary = archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", quarantine, buckets=3)
    assert summary.quarantined > 20 and summary.read == summary.rows
    engine = compare([log], tmp_path / "archive", backend=backend, window=64, as_of="2025-12-31T23:59:59+08:00")
    assert engine.summary.duplicate and engine.summary.quarantined >= summary.quarantined
    assert engine.lane_stats["quiet"] > 200 and engine.lane_stats["exact"] > 200
    # the archive's quarantine records are those the run writes for the same (invalid) lines
    run = Engine(plugins=PLUGINS).run(read_jsonl([log]))
    invalid = {(r.source, r.line): r.to_dict() for r in run if getattr(r, "error", None) and "already used" not in r.error}
    assert {(r["source"], r["line"]): r for r in quarantine.records} == invalid


def test_a_quiet_reading_with_a_repeated_key_is_quarantined_when_archived(tmp_path):
    """A reading inside its limits whose line repeats a key (the value kept is the reader's
    choice: ambiguous) is invalid on its own: `archive_files` counts it quarantined and writes
    the quarantine record `rectify run` writes for it, and the replay quarantines it too.
    Until 2026-12-03 the writer sorted lines without their bytes, so such a line was counted
    valid and left out of `--quarantine` (only the replay quarantined it)."""
    lines = [orjson.dumps(e) for e in CITY.events]
    row = next(n for n, e in enumerate(CITY.events) if e["type"] == "emission.measured" and n > 200)
    lines[row] = lines[row].replace(b'"data":{', b'"data":{"unit":"mg/m3",', 1)
    log = write(tmp_path / "events.jsonl", lines)
    expected = [r.to_dict() for r in Engine(plugins=PLUGINS).run(read_jsonl([log])) if getattr(r, "error", None)]
    assert len(expected) == 1 and "appears twice" in expected[0]["error"] and expected[0]["line"] == row + 1
    quarantine = ListSink()
    summary = archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", quarantine, buckets=2)
    assert (summary.quarantined, summary.valid, summary.read) == (1, len(lines) - 1, len(lines))
    assert quarantine.records == expected
    compare([log], tmp_path / "archive", window=200)


def test_every_threshold_rule_at_its_bounds_replays_by_column(tmp_path):
    events, count = bound_events()
    log = write(tmp_path / "bounds.jsonl", [orjson.dumps(e) for e in events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=5)
    engine = compare([log], tmp_path / "archive", window=200)
    assert engine.lane_stats["quiet"] > 200 and sum(engine.summary.findings.values()) > 200


@pytest.mark.parametrize("window", [5, 300])
def test_readings_on_the_edges_of_a_rule_s_dates_replay_by_column(tmp_path, window):
    """The columnar lane's exact test is told each row's local date, as the fast lane's is, and
    a window's gates are cut on the rules in force on some date of its rows: windows of 5 rows
    lie on one side of a rule's dates or the other, windows of 300 across them."""
    log = write(tmp_path / "dated.jsonl", [orjson.dumps(e) for e in dated_events()])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=3)
    engine = compare([log], tmp_path / "archive", window=window, as_of="2024-12-31T00:00:00+08:00")
    assert engine.lane_stats["quiet"] > 0 and sum(engine.summary.findings.values()) > 1000


def test_a_window_across_the_last_day_of_a_rule_keeps_the_rule_in_its_gates(tmp_path):
    """GB 4287 Table 1's limits for existing works ended on 2014-12-31, and for some groups the
    benchmark-corrected limits after it are looser. Readings just above Table 1's limit, with a
    production and a volume: those of 2015 stay quiet, and each of 2014-12-31 (each of its own
    works, none yet watched for an order) gives a finding, whichever days a window of 2 to 7
    rows holds. The log goes 2015, 2014, 2015, so gates made for one side meet rows of the other."""
    events, after_end = registrations("9133025")
    judge = Engine(plugins=PLUGINS).judge
    late: list[dict] = []
    early: list[dict] = []
    for key in DATED_GROUPS:
        before, after = (judge.screen(*key, days=(day, day)) for day in ("2014-12-31", "2015-01-01"))
        value = round(before.high * 1.01, 6)
        if not key[-1] or not after.benchmarks or not value < min(cut.high for cut in after.benchmarks):
            continue  # only where the gate of 2015 lets the reading through
        (category, unit), (per_unit, to_m3) = min(after.benchmarks[0].per_unit.items(), key=repr)
        data = {"outlet": "W1", "point": key[4], "destination": key[5], "pollutant": key[1], "value": value,
                "unit": key[2], "period": "day", "flag": "N", "volume_m3": 5.0 * per_unit * to_m3,
                "production": {"category": category, "unit": unit, "quantity": 10.0}}
        for day, hour in itertools.product(("2014-12-31", "2015-01-01", "2015-01-02"), (2, 10, 18)):
            reading = {"specversion": "1.0", "id": f"t1-{key[1]}-{day}-{hour}", "source": "t",
                       "type": "discharge.measured", "subject": after_end["dyeing"],
                       "time": f"{day}T{hour:02d}:00:00+08:00", "data": data}
            if day < "2015":
                more, codes = registrations(f"91330{26 + len(early):02d}")
                events += [{**event, "id": f"{event['id']}-{len(early)}"} for event in more]
                early.append({**reading, "subject": codes["dyeing"]})
            else:
                late.append(reading)
    for event in events:
        event["time"] = "2010-01-01T08:00:00+08:00"
    assert len(early) >= 6
    late.sort(key=lambda e: e["time"])
    log = write(tmp_path / "edge.jsonl", [orjson.dumps(e) for e in events + late[:6] + early + late[6:]])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    for window in (2, 3, 7):
        engine = compare([log], tmp_path / "archive", window=window)
        assert engine.lane_stats["quiet"] >= 6 and sum(engine.summary.findings.values()) == len(early)


def test_benchmark_corrected_readings_replay_byte_for_byte(tmp_path):
    """Daily wastewater readings with a `production` object are typed rows (format 3), gated by
    their own volume and production; those quiet only outside an industry wait for the registry
    at their place (a re-registration half way). A list of products stays the line's bytes."""
    events, count = benchmark_events()
    log = write(tmp_path / "benchmark.jsonl", [orjson.dumps(e) for e in events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=3)
    rows = pa.concat_tables(Archive(tmp_path / "archive").tables()).to_pylist()
    readings = [row for row in rows if row["type"] == "discharge.measured" and row["valid"]]
    typed = [row for row in readings if row["raw"] is None]
    assert len(typed) > 0.8 * len(readings) > 300
    assert {type(orjson.loads(row["raw"])["data"]["production"]) for row in readings if row["raw"] is not None} == {list}
    assert {row["production_category"] for row in typed} >= {None, "no_such_fabric"}  # none given, and unknown
    assert any("production{quantity:i," in row["shape"] for row in typed)  # integers come back as integers
    assert any("volume_m3:i," in row["shape"] for row in typed)
    for window in (150, 5000):
        engine = compare([log], tmp_path / "archive", window=window)
        assert engine.lane_stats["quiet"] > 100 and sum(engine.summary.data_gaps.values()) > 20


def test_readings_only_another_industry_s_rules_judge_replay_byte_for_byte(tmp_path):
    """Typed rows that fire only under rules of other industries wait for the registry at their
    place: the enterprise registers as a foundry half way."""
    events, _ = bound_events()
    other = next(e for e in events if e["id"] == "reg-other")
    copies = [{**e, "id": e["id"] + "-other", "subject": other["subject"]} for e in events
              if e["type"] != "enterprise.registered"]
    copies.insert(len(copies) // 2, {**other, "id": "reg-other-foundry", "data": {**other["data"], "industry": "foundry"}})
    log = write(tmp_path / "others.jsonl", [orjson.dumps(e) for e in events + copies])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=5)
    for window in (128, 10000):
        engine = compare([log], tmp_path / "archive", window=window)
        assert engine.lane_stats["quiet"] > 400


def test_rows_past_a_sure_cut_are_sorted_as_the_exact_test_sorts_them(tmp_path, monkeypatch):
    """`ColumnLane.sort` sends rows past a rule's `sure` cut to the exact path by column
    (engine/fast/columns.py `_sure`), for enterprises of the rule's industries and for any
    enterprise: each window sorts as with the exact test alone (`_sure` deciding no row), with
    the registry as it stands, with none (`sort_apart`), and with an empty one. Readings around
    every threshold, copies of them for an enterprise of no plugin's industry, a finding-heavy city."""
    from engine.fast import columns
    from engine.fast.columns import ColumnLane

    events, _ = bound_events()
    other = next(e for e in events if e["id"] == "reg-other")
    copies = [{**e, "id": e["id"] + "-other", "subject": other["subject"]} for e in events
              if e["type"] != "enterprise.registered"]
    heavy = finding_heavy(CITY.events)  # and every fourth reading of a small city well above its limits
    log = write(tmp_path / "sure.jsonl", [orjson.dumps(e) for e in events + copies] + heavy)
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    engine = Engine(plugins=PLUGINS)
    registrations = [e for e in events + CITY.events if e["type"] == "enterprise.registered"]
    list(engine.run(InputLine("reg", n, orjson.dumps(e)) for n, e in enumerate(registrations, 1)))
    decided = []
    shortcut = columns._sure

    def counted(*args):
        found = shortcut(*args)
        decided.append(int(found.sum()))
        return found

    def sorted_windows(sure, registry) -> list:
        monkeypatch.setattr(columns, "_sure", sure)
        lane = ColumnLane(engine)
        return [(lane.sort(table, registry, defer=True).tolist(), dict(lane._unless))
                for table in Archive(tmp_path / "archive", window=500).tables()]

    for registry in (engine.registry, {}, None):
        assert sorted_windows(counted, registry) == sorted_windows(lambda rows, *_: np.zeros(len(rows), dtype=bool),
                                                                    registry)
    assert sum(decided) > 400


def test_finding_heavy_log_replays_byte_for_byte(tmp_path):
    log = write(tmp_path / "heavy.jsonl", finding_heavy(CITY.events))
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=4)
    engine = compare([log], tmp_path / "archive", window=1000)
    assert sum(engine.summary.findings.values()) > 0.2 * len(CITY.events) * 0.9 / 4


def test_one_sorting_process_stops_after_a_finding_heavy_first_window(tmp_path):
    """`workers=1` on an archive whose first window has `HEAVY_SHARE` of its rows readings taken
    exactly: the sorting process sorts that window only and ends (its folder goes), the rest is
    read and sorted in this process, and the chain is the one without it. On the demo archive it
    sorts every window."""
    from engine.fast.columns import HEAVY_SHARE
    from engine.run import Outputs, Run

    heavy = write(tmp_path / "heavy.jsonl", finding_heavy(CITY.events))
    calm = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    for log, name in ((heavy, "heavy"), (calm, "calm")):
        archive_files(Engine(plugins=PLUGINS), [log], tmp_path / name, buckets=4)
    before = _window_folders()
    heads = {}
    for name, workers in (("heavy", 0), ("heavy", 1), ("calm", 0), ("calm", 1)):
        engine = Engine(plugins=PLUGINS)
        outputs = Outputs(ListSink())
        Run(engine, outputs, workers=workers).feed(Archive(tmp_path / name, window=1000)).finish()
        heads[name, workers] = outputs.head
        windows = -(-len(CITY.events) // 1000)
        apart, here = engine.lane_stats["windows_sorted_apart"], engine.lane_stats["windows_sorted_here"]
        expected = {("heavy", 0): (0, windows), ("heavy", 1): (1, windows - 1), ("calm", 0): (0, windows),
                    ("calm", 1): (windows, 0)}[name, workers]
        assert (apart, here) == expected, (name, workers)
    assert heads["heavy", 0] == heads["heavy", 1] and heads["calm", 0] == heads["calm", 1]
    assert _window_folders() == before  # the stopped process's folder went with it
    assert 0 < HEAVY_SHARE < 0.25  # a quarter of the readings raised is over it


def test_after_the_sorting_process_stops_the_rest_is_read_while_the_first_window_is_applied(tmp_path):
    """Once the sorting process has stopped after a finding-heavy first window, a thread of this
    process is already reading the next window when the first is handed on (as without a sorting
    process, which reads ahead from the start); a replay stopped there leaves no thread, no
    process and no folder behind."""
    import multiprocessing
    import threading

    from engine.fast.batch import batches

    heavy = write(tmp_path / "heavy.jsonl", finding_heavy(CITY.events))
    archive_files(Engine(plugins=PLUGINS), [heavy], tmp_path / "archive", buckets=4)
    threads, folders = threading.active_count(), _window_folders()
    engine = Engine(plugins=PLUGINS)
    stopped = batches(engine, Archive(tmp_path / "archive", window=1000), workers=1)
    next(stopped)
    assert (engine.lane_stats["windows_sorted_apart"], engine.lane_stats["windows_sorted_here"]) == (1, 0)
    assert not multiprocessing.active_children()  # the sorting process has ended
    assert [t.name for t in threading.enumerate()].count("rectify-archive-read") == 1
    stopped.close()
    assert threading.active_count() == threads and _window_folders() == folders


def test_a_new_month_is_a_new_partition_and_nothing_is_rewritten(tmp_path):
    march = [e for e in CITY.events]
    april = []
    for n, event in enumerate(CITY.events):
        if event["type"] == "emission.measured":
            later = orjson.loads(orjson.dumps(event))
            later["id"] = f"april-{n}"
            later["time"] = "2024-04-" + event["time"][8:]
            april.append(later)
    first = write(tmp_path / "march.jsonl", [orjson.dumps(e) for e in march])
    second = write(tmp_path / "april.jsonl", [orjson.dumps(e) for e in april] + [b"{broken"])
    directory = tmp_path / "archive"
    archive_files(Engine(plugins=PLUGINS), [first], directory, buckets=2)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.rglob("*.parquet")}
    months_before = {p.name for p in directory.iterdir() if p.is_dir()}
    summary = archive_files(Engine(plugins=PLUGINS), [second], directory)
    assert summary.rows == len(march) + len(april) + 1
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.rglob("*.parquet")}
    assert all(after[p] == digest for p, digest in before.items())  # untouched
    months = {p.name for p in directory.iterdir() if p.is_dir()} - months_before
    assert {"month=2024-04", "month=unknown"} <= months
    compare([first, second], directory, window=500)


def test_an_archive_validated_differently_is_replayed_through_its_lines(tmp_path):
    """strict mode changes what is valid: an engine that validates otherwise does not trust the
    archive's columns; it reads the rebuilt lines, and still gives the JSONL's output."""
    lines = [orjson.dumps(e) for e in CITY.events[:800]] + [orjson.dumps(dict(CITY.events[500], id="u-1", type="x.unknown"))]
    log = write(tmp_path / "events.jsonl", lines)
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive")
    strict = Engine(plugins=PLUGINS, strict=True)
    expected = records(Engine(plugins=PLUGINS, strict=True), read_jsonl([log]), batch=False)
    assert not Archive(tmp_path / "archive").trusted_by(strict.validation, "xxh3_64(orjson sorted-key JSON)")
    assert records(strict, Archive(tmp_path / "archive"), batch=True) == expected
    assert strict.summary.quarantined == 1 and strict.lane_stats["quiet"] > 300


def test_an_archive_it_cannot_read_is_refused_with_a_clear_message(tmp_path):
    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events[:50]])
    directory = tmp_path / "archive"
    archive_files(Engine(plugins=PLUGINS), [log], directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["format"] = 99
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArchiveError, match="archive format 99.*reads formats 1, 2, 3"):
        Archive(directory)
    result = CliRunner().invoke(cli, ["run", str(directory), "--out", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2 and "archive format 99" in result.output
    with pytest.raises(ArchiveError, match="not a rectify archive"):
        Archive(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    with pytest.raises(ArchiveError, match="not an empty directory"):
        archive_files(Engine(plugins=PLUGINS), [log], other)
    result = CliRunner().invoke(cli, ["archive", str(log), "--out", str(other)])
    assert result.exit_code == 2 and "not an empty directory" in result.output


def test_cli_archive_then_run_gives_the_jsonl_output(tmp_path):
    lines = adversarial_log(7, 400) + [orjson.dumps(e) for e in CITY.events[:600]]
    log = write(tmp_path / "events.jsonl", lines)
    runner = CliRunner()
    made = runner.invoke(cli, ["archive", str(log), "--out", str(tmp_path / "archive"),
                               "--quarantine", str(tmp_path / "bad.jsonl")])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "bad.jsonl").read_bytes().count(b"\n") > 10
    for name, source in (("jsonl", log), ("archive", tmp_path / "archive")):
        result = runner.invoke(cli, ["run", str(source), "--out", str(tmp_path / f"{name}.out"),
                                     "--quarantine", str(tmp_path / f"{name}.q"), "--no-progress", "--jobs", "1"])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "jsonl.out").read_bytes() == (tmp_path / "archive.out").read_bytes()
    assert (tmp_path / "jsonl.q").read_bytes() == (tmp_path / "archive.q").read_bytes()


def test_what_if_on_an_archive_is_the_what_if_on_its_jsonl(tmp_path):
    """`rectify diff ARCHIVE` (issue 13's case: last year's log under Table 3's special limits)
    gives what `rectify diff EVENTS.jsonl` gives, replayed by column: an option changes the rules,
    not the validation, so both sides' engines trust the archive. Mixed inputs are refused."""
    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    runner = CliRunner()
    made = runner.invoke(cli, ["archive", str(log), "--out", str(tmp_path / "archive")])
    assert made.exit_code == 0, made.output
    table3 = "option:dyeing.gb4287.table3"
    results = {}
    for name, source in (("jsonl", log), ("archive", tmp_path / "archive")):
        result = runner.invoke(cli, ["diff", str(source), "--rules", "default", "--rules", table3, "--json"])
        assert result.exit_code == 0, result.output
        results[name] = orjson.loads(result.stdout)
    assert results["jsonl"] == results["archive"]
    assert results["archive"]["enterprises_changed"] > 0
    assert any(".t3." in rule for rule in results["archive"]["findings_by_rule"])
    archive = Archive(tmp_path / "archive")
    assert all(archive.trusted_by(Engine(options=options).validation, DIGEST) for options in ([], [table3[7:]]))
    mixed = runner.invoke(cli, ["diff", str(tmp_path / "archive"), str(log), "--rules", "default", "--rules", table3])
    assert mixed.exit_code == 2 and "one archive" in mixed.output


def test_the_year_s_evaluation_from_an_archive_is_the_one_from_its_jsonl(tmp_path):
    """`rectify evaluate --year Y ARCHIVE`: the ranking the JSONL gives (the year closed in the log)."""
    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    runner = CliRunner()
    assert runner.invoke(cli, ["archive", str(log), "--out", str(tmp_path / "archive")]).exit_code == 0
    year = next(e["data"]["year"] for e in CITY.events if e["type"] == "finance.reported")
    rankings = []
    for source in (log, tmp_path / "archive"):
        result = runner.invoke(cli, ["evaluate", "--year", str(year), str(source), "--json"])
        assert result.exit_code == 0, result.output
        rankings.append(orjson.loads(result.stdout))
    assert rankings[0] == rankings[1] and rankings[1]["closed"]
    assert len(rankings[1]["ranking"]) + len(rankings[1]["not_ranked"]) == 40 and rankings[1]["ranking"]


def test_an_auditor_replays_and_explains_from_the_archive(tmp_path):
    """Years later the archive may be all that is kept (9.6 MB for the demo log's 304 MB):
    `rectify replay ARCHIVE --verify LOG` finds no divergence from what `rectify run EVENTS.jsonl`
    wrote, archives and files mix in input order, an archive of another log diverges, and
    `rectify explain ID --events ARCHIVE` explains as the JSONL does."""
    lines = [orjson.dumps(e) for e in CITY.events]
    first, second = write(tmp_path / "first.jsonl", lines[:1500]), write(tmp_path / "second.jsonl", lines[1500:])
    log = write(tmp_path / "events.jsonl", lines)
    runner = CliRunner()
    for name, source in (("archive", log), ("first_archive", first)):
        made = runner.invoke(cli, ["archive", str(source), "--out", str(tmp_path / name)])
        assert made.exit_code == 0, made.output
    out = tmp_path / "decisions.jsonl"
    assert runner.invoke(cli, ["run", str(log), "--out", str(out), "--no-progress"]).exit_code == 0
    replayed = runner.invoke(cli, ["replay", str(tmp_path / "archive"), "--verify", str(out), "--json"])
    assert replayed.exit_code == 0, replayed.output
    report = orjson.loads(replayed.stdout)
    assert report["divergence"] is None and report["replayed"] == report["records"] > 50
    split = tmp_path / "split.jsonl"
    assert runner.invoke(cli, ["run", str(first), str(second), "--out", str(split), "--no-progress"]).exit_code == 0
    mixed = runner.invoke(cli, ["replay", str(tmp_path / "first_archive"), str(second), "--verify", str(split), "--json"])
    assert mixed.exit_code == 0 and orjson.loads(mixed.stdout)["divergence"] is None, mixed.output
    other = runner.invoke(cli, ["replay", str(tmp_path / "first_archive"), "--verify", str(out), "--json"])
    assert other.exit_code == 1 and orjson.loads(other.stdout)["divergence"] is not None
    finding = next(r["id"] for r in map(orjson.loads, out.read_bytes().splitlines()) if r.get("record") == "finding")
    explained = [runner.invoke(cli, ["explain", finding, "--events", str(source), "--json"])
                 for source in (log, tmp_path / "archive")]
    assert all(result.exit_code == 0 for result in explained), explained[1].output
    assert explained[0].stdout == explained[1].stdout and finding in explained[1].stdout


def test_the_report_from_an_archive_is_the_report_from_its_jsonl(tmp_path):
    """`rectify report ARCHIVE` and `collect` over an archive (alone, or after a JSONL file): the
    records, the data period and every enterprise's history the JSONL gives, quarantined and
    conflicting lines left out alike."""
    from engine.report import collect

    reading = next(e for e in CITY.events if e["type"] == "emission.measured")
    times = sorted(e["time"] for e in CITY.events)

    def at(time: str, event_id: str, value: float | None = None, spaced: bool = False) -> bytes:
        event = {**reading, "id": event_id, "time": time,
                 "data": {**reading["data"], "value": value or reading["data"]["value"]}}
        return json.dumps(event).encode() if spaced else orjson.dumps(event)  # spaced: kept as a raw row

    # the same instants spelt two ways, a raw row first, then a typed one: the first in input order
    # is the period's start and end; a conflict (an id already used, other content) is quarantined,
    # so its earlier time is not the start
    edges = [at("2020-01-01T08:00:00+08:00", "edge-1", spaced=True), at("2020-01-01T00:00:00Z", "edge-2"),
             at("2019-06-01T00:00:00Z", reading["id"], 1.5), at("2030-01-01T00:00:00Z", "edge-3", spaced=True),
             at("2030-01-01T08:00:00+08:00", "edge-4")]
    assert times[0] > "2020" and times[-1] < "2030"
    lines = adversarial_log(5, 300) + [orjson.dumps(e) for e in CITY.events] + edges
    log = write(tmp_path / "events.jsonl", lines)
    head, tail = write(tmp_path / "head.jsonl", lines[:700]), write(tmp_path / "tail.jsonl", lines[700:])
    runner = CliRunner()
    for name, source in (("archive", log), ("tail_archive", tail)):
        made = runner.invoke(cli, ["archive", str(source), "--out", str(tmp_path / name)])
        assert made.exit_code == 0, made.output
    as_of = "2025-12-31T23:59:59+08:00"
    expected = collect(Engine(), [str(log)], as_of)
    assert expected.period == ("2020-01-01T08:00:00+08:00", "2030-01-01T00:00:00Z")
    assert expected.history and expected.counts["quarantined"] > 10
    assert collect(Engine(), [str(tmp_path / "archive")], as_of) == expected
    split = collect(Engine(), [str(head), str(tail)], as_of)
    assert collect(Engine(), [str(head), str(tmp_path / "tail_archive")], as_of) == split
    reports = [runner.invoke(cli, ["report", str(source), "--json"]) for source in (log, tmp_path / "archive")]
    assert all(r.exit_code == 0 for r in reports), reports[1].output
    assert reports[0].stdout == reports[1].stdout


def test_an_archive_found_damaged_while_read_is_a_message_not_a_traceback(tmp_path):
    """A part file that exists but does not read (found once the replay reaches it) ends every
    command that reads the archive with the file and the reason, exit 1, as a damaged store does."""
    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    part = max((tmp_path / "archive").glob("*/*/*.parquet"))
    part.write_bytes(b"not parquet")
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", "run", str(tmp_path / "archive"),
                           "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"rectify: {part}: unreadable part file" in done.stderr
    runner = CliRunner()
    for args in (["report", "--json"], ["evaluate", "--year", "2023"], ["diff", "--rules", "default", "--rules", "default"],
                 ["replay", "--verify", str(log)]):
        result = runner.invoke(cli, [args[0], str(tmp_path / "archive"), *args[1:]])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (args, result.output)
        assert "unreadable part file" in result.output


def _window_folders(pid: int | str | None = None) -> set[str]:
    """The window folders of the engine in process `pid` (this one's by default; "*": any): another
    rectify running beside the tests makes its own."""
    import glob
    import tempfile

    name = f"rectify-windows-{os.getpid() if pid is None else pid}-*"
    return set(glob.glob(f"/dev/shm/{name}")) | set(glob.glob(f"{tempfile.gettempdir()}/{name}"))


def test_a_part_file_whose_pages_do_not_decode_is_a_message_not_a_traceback(tmp_path):
    """Bytes changed inside a part file (its footer intact, so it opens): the page that does not
    decode, or whose checksum does not match (a changed `id_hash` or digest would otherwise be
    read as it is), is an ArchiveError naming the file, in this process and in the one sorting windows
    apart, and `rectify run` ends with the message, exit 1."""
    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=1)
    part = max((tmp_path / "archive").glob("*/*/*.parquet"), key=lambda p: p.stat().st_size)
    data = bytearray(part.read_bytes())
    for i in range(len(data) // 4, len(data) // 2):
        data[i] = (data[i] * 7 + 13) % 256
    part.write_bytes(bytes(data))
    for workers in (0, 1):
        with pytest.raises(ArchiveError, match="unreadable part file"):
            list(Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive"), workers=workers))
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "archive"), "--out", str(tmp_path / "o.jsonl"),
                                      "--no-progress"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"{part}: unreadable part file" in result.output


@pytest.mark.parametrize("buckets", [1, 2])
def test_a_window_that_holds_a_row_twice_is_a_message_not_a_replay_without_a_row(tmp_path, buckets):
    """A part file rewritten so that one row carries the `seq` (input position) of the row before
    it: its pages decode and its rows and range agree with the manifest, but the window that
    holds those rows lacks one input position and has another twice, whether its rows come from
    one partition (one bucket) or several. The replay stops with an ArchiveError naming the rows,
    and `rectify run` with the message, exit 1; it does not replay one row twice and another never."""
    import pyarrow.parquet as pq

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=buckets)
    assert len(list((tmp_path / "archive").glob("*/*/*.parquet"))) == buckets  # one month: one window, 1 or 2 pieces
    part = max((tmp_path / "archive").glob("*/*/*.parquet"), key=lambda p: p.stat().st_size)
    table = pq.read_table(part)
    seq = table.column("seq").to_numpy().copy()
    seq[len(seq) // 2] = seq[len(seq) // 2 - 1]
    table = table.set_column(table.schema.get_field_index("seq"), "seq", pa.array(seq))
    pq.write_table(table, part)  # the schema's metadata (the archive format) is kept
    for workers in (0, 1):
        with pytest.raises(ArchiveError, match=r"rows \d+\.\.\d+ hold a row twice; the archive is damaged"):
            list(Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive"), workers=workers))
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "archive"), "--out", str(tmp_path / "o.jsonl"),
                                      "--no-progress"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "hold a row twice; the archive is damaged" in result.output


def test_a_windows_input_order_is_each_rows_place_and_a_seq_out_of_place_is_damage():
    """`_input_order`: the take that puts rows of seq 10..14 in input order, whatever order the
    partitions gave them in; a seq twice, or one outside the window, is an ArchiveError."""
    from engine.ingest.archive import _input_order

    seq = np.array([12, 10, 14, 11, 13])
    order = _input_order(seq, 10, Path("a"))
    assert seq[order].tolist() == [10, 11, 12, 13, 14]
    for bad, what in (([12, 10, 12, 11, 13], "twice"), ([12, 10, 15, 11, 13], "from outside"),
                      ([12, 9, 14, 11, 13], "from outside")):
        with pytest.raises(ArchiveError, match=f"a: rows 10..14 hold a row {what}"):
            _input_order(np.array(bad), 10, Path("a"))


def _archive_with_first_raw_row_edited(tmp_path, edit) -> tuple[bytes, bytes]:
    """The demo city's archive, its first raw row (a line kept as written) replaced in its part
    file by `edit(line)` after it was written; returns the line and the new line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=1)
    part = min((tmp_path / "archive").glob("*/*/*.parquet"))
    table = pq.read_table(part)
    raw = table.column("raw").to_pylist()
    row = next(i for i, line in enumerate(raw) if line is not None)
    line, raw[row] = raw[row], edit(raw[row])
    field = table.schema.field("raw")
    pq.write_table(table.set_column(table.schema.get_field_index("raw"), field, pa.array(raw, field.type)), part)
    return line, raw[row]


def _quarantined_replaying(directory) -> list[tuple[str, str]]:
    """(raw, error) of each quarantine record of the archive's replay, in this process and with
    its windows sorted apart (the same in both), counts adding up."""
    found = []
    for workers in (0, 1):
        engine = Engine(plugins=PLUGINS)
        found.append([(r.raw, r.error) for r in engine.run_batch(Archive(directory), workers=workers)
                      if getattr(r, "error", None)])
        assert engine.summary.quarantined == len(found[-1]) and engine.summary.balanced()
    assert found[0] == found[1]
    return found[0]


def test_a_raw_line_changed_after_writing_is_quarantined_not_trusted(tmp_path):
    """A raw row edited in its part file after the archive was written: the replay validates it
    again and quarantines it with the reason."""
    _archive_with_first_raw_row_edited(tmp_path, lambda line: b'{"id": "x"}')
    assert _quarantined_replaying(tmp_path / "archive") == [('{"id": "x"}', "(event): 'specversion' is a required property")]


def test_a_raw_line_given_a_repeated_key_after_writing_is_quarantined(tmp_path):
    """A raw row edited so that it parses to the very event it was (a key repeated with the same
    value): its content digest is the one made when it was written, so its schema is not checked
    again (engine/pipeline.py `prepare_archived`), but its bytes are still screened for repeated
    keys, and it is quarantined as the JSONL replay quarantines that line."""
    before, line = _archive_with_first_raw_row_edited(
        tmp_path, lambda line: line[:-1] + b',"id":' + orjson.dumps(orjson.loads(line)["id"]) + b"}")
    assert orjson.loads(line) == orjson.loads(before)
    expected = [r.error for r in Engine(plugins=PLUGINS).run([InputLine("edited.jsonl", 1, line)]) if getattr(r, "error", None)]
    assert expected and "appears twice" in expected[0]
    assert _quarantined_replaying(tmp_path / "archive") == [(line.decode(), expected[0])]


def test_windows_sorted_in_another_process_leave_nothing_behind(tmp_path):
    """`workers=1`: the windows come through shared memory; the files go when the replay ends,
    finished or stopped half way, and the process with them. A damaged part file found there is
    the ArchiveError it is in this process."""
    import multiprocessing

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    before = _window_folders()
    whole = [r.to_dict() for r in Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive", window=300), workers=1)]
    assert whole == [r.to_dict() for r in Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive", window=300))]
    assert _window_folders() == before and not multiprocessing.active_children()
    stopped = Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive", window=300), workers=1)
    assert next(stopped).to_dict() == whole[0]
    assert _window_folders() - before  # a window is on its way
    stopped.close()
    assert _window_folders() == before and not multiprocessing.active_children()
    part = max((tmp_path / "archive").glob("*/*/*.parquet"))
    part.write_bytes(b"not parquet")
    with pytest.raises(ArchiveError, match="unreadable part file"):
        list(Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive", window=300), workers=1))
    assert _window_folders() == before and not multiprocessing.active_children()


def test_the_sorting_process_killed_mid_replay_stops_it_with_a_message(tmp_path):
    """The archive's sorting process killed half way (SIGKILL, as the out-of-memory killer does):
    the replay stops with HelperFailed naming it, the window it owed and how it ended, and leaves
    no window file behind."""
    import multiprocessing
    import os
    import signal

    from engine.fast import HelperFailed

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    before = _window_folders()
    records = Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive", window=300), workers=1)
    next(records)  # the process now waits for room: at most two windows ahead of this one
    (process,) = multiprocessing.active_children()
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(HelperFailed, match=r"rectify-sort-archive ended before it handed over window \d+ of the "
                                           r"archive \(killed by SIGKILL, which the out-of-memory killer sends\)"):
        list(records)
    assert _window_folders() == before and not multiprocessing.active_children()


def test_rectify_run_of_an_archive_with_jobs_runs_in_this_process_and_says_so(tmp_path, monkeypatch):
    """`rectify run ARCHIVE --jobs N` on a free core: no sorting process (one was not reliably
    faster on the benchmark archives, docs/archive.md); the log says so (`jobs_ignored`) and the
    output is that of `--jobs 0`. `Engine.run_batch(workers=1)` still sorts an archive apart."""
    import os

    import psutil

    from engine.cli.logs import configure
    from engine.fast import batch

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: 0.0)  # free cores: JSONL would get its processes
    apart = batch.sorted_windows
    monkeypatch.setattr(batch, "sorted_windows", lambda *a: pytest.fail("an archive was sorted in another process"))
    outputs = {}
    for jobs in ("0", "2"):
        configure("info")
        result = CliRunner().invoke(cli, ["run", str(tmp_path / "archive"), "--out", str(tmp_path / f"{jobs}.jsonl"),
                                          "--no-progress", "--jobs", jobs])
        assert result.exit_code == 0, result.output
        outputs[jobs] = (tmp_path / f"{jobs}.jsonl").read_bytes()
        logged = [orjson.loads(line) for line in result.output.splitlines() if line.startswith("{")]
        ignored = [entry for entry in logged if entry["event"] == "jobs_ignored"]
        assert [entry["jobs"] for entry in logged if entry["event"] == "batch_path"] == [0]
        assert len(ignored) == (jobs != "0") and all("archive" in entry["reason"] for entry in ignored)
    assert outputs["0"] == outputs["2"]
    monkeypatch.setattr(batch, "sorted_windows", apart)
    engine = Engine(plugins=PLUGINS)
    assert b"".join(orjson.dumps(r.to_dict()) for r in engine.run_batch(Archive(tmp_path / "archive", window=200),
                                                                         workers=1))
    assert engine.lane_stats["windows_sorted_apart"] > 0


def test_rectify_run_of_jsonl_and_an_archive_with_jobs_sorts_the_jsonl_apart_only(tmp_path, monkeypatch):
    """`rectify run EVENTS.jsonl ARCHIVE --jobs 1`: the JSONL file gets its sorting process (files
    of AUTO_JOBS_BYTES or more, here lowered), the archive runs in this process; the output is that
    of `--jobs 0`."""
    import os

    import psutil

    from engine.cli.logs import configure
    from engine.fast import batch

    events = [orjson.dumps(e) for e in CITY.events]
    first = write(tmp_path / "first.jsonl", events[:400])
    archive_files(Engine(plugins=PLUGINS), [write(tmp_path / "rest.jsonl", events[400:])], tmp_path / "archive",
                  buckets=2)
    monkeypatch.setattr("engine.cli.run.AUTO_JOBS_BYTES", 0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: 0.0)
    monkeypatch.setattr(batch, "sorted_windows", lambda *a: pytest.fail("an archive was sorted in another process"))
    chunked = []
    apart = batch.sorted_file_chunks
    monkeypatch.setattr(batch, "sorted_file_chunks", lambda lane, files, *a: chunked.append(files.paths) or
                        apart(lane, files, *a))
    outputs = {}
    for jobs in ("0", "1"):
        configure("info")
        result = CliRunner().invoke(cli, ["run", str(first), str(tmp_path / "archive"), "--no-progress", "--jobs", jobs,
                                          "--out", str(tmp_path / f"{jobs}.jsonl")])
        assert result.exit_code == 0, result.output
        outputs[jobs] = (tmp_path / f"{jobs}.jsonl").read_bytes()
    assert chunked == [[str(first)]]
    assert outputs["0"] == outputs["1"] and outputs["0"].count(b"\n") > 10


def test_windows_read_ahead_by_a_thread_leave_no_thread_behind(tmp_path):
    """In one process a thread reads the next window while this one is applied: the replay stopped
    half way, finished, or failed on a damaged part file leaves no thread running, and the error
    is the ArchiveError it is."""
    import threading

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    threads = threading.active_count()
    stopped = Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive", window=100))
    next(stopped)
    assert threading.active_count() == threads + 1
    stopped.close()
    assert threading.active_count() == threads
    assert len(list(Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive", window=100)))) > 0
    assert threading.active_count() == threads
    max((tmp_path / "archive").glob("*/*/*.parquet")).write_bytes(b"not parquet")
    with pytest.raises(ArchiveError, match="unreadable part file"):
        list(Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive", window=100)))
    assert threading.active_count() == threads


@pytest.fixture
def mimalloc_default(monkeypatch):
    """Arrow's default pool as its Linux wheels have it (mimalloc), and as it was afterwards."""
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    before = pa.default_memory_pool()
    try:
        pa.set_memory_pool(pa.mimalloc_memory_pool())
    except NotImplementedError:
        pytest.skip("this pyarrow has no mimalloc")
    yield
    pa.set_memory_pool(before)


def test_an_archive_is_read_with_the_system_allocator_and_mimalloc_is_put_back(tmp_path, mimalloc_default):
    """While an archive is read Arrow allocates from the system allocator (mimalloc hands freed
    pages back and faults them in again, window after window); the default comes back when the
    last reading ends, finished, stopped, failed or in another thread, and the records are the
    same as with mimalloc throughout."""
    import threading

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    archive = Archive(tmp_path / "archive", window=100)
    backends = []
    for _ in archive.tables():
        backends.append(pa.default_memory_pool().backend_name)
    assert set(backends) == {"system"}
    assert pa.default_memory_pool().backend_name == "mimalloc"

    first, second = archive.tables(), archive.tables()  # two readings at once: the last one out restores
    next(first), next(second)
    first.close()
    assert pa.default_memory_pool().backend_name == "system"
    second.close()
    assert pa.default_memory_pool().backend_name == "mimalloc"

    stopped = Engine(plugins=PLUGINS).run_batch(archive)  # the windows read by a thread
    next(stopped)
    assert pa.default_memory_pool().backend_name == "system"
    stopped.close()
    assert pa.default_memory_pool().backend_name == "mimalloc"

    seen = []
    reader = threading.Thread(target=lambda: seen.extend(pa.default_memory_pool().backend_name
                                                         for _ in archive.tables()))
    reader.start()
    reader.join()
    assert set(seen) == {"system"} and pa.default_memory_pool().backend_name == "mimalloc"

    expected = records(Engine(plugins=PLUGINS), read_jsonl([log]), batch=False)
    assert records(Engine(plugins=PLUGINS), archive, batch=True) == expected
    assert records(Engine(plugins=PLUGINS), archive, batch=True, workers=1) == expected
    assert pa.default_memory_pool().backend_name == "mimalloc"

    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "archive", damaged)
    max(damaged.glob("*/*/*.parquet")).write_bytes(b"not parquet")
    with pytest.raises(ArchiveError, match="unreadable part file"):
        list(Archive(damaged, window=100).tables())
    assert pa.default_memory_pool().backend_name == "mimalloc"


def test_a_pool_the_process_chose_is_kept_while_an_archive_is_read(tmp_path, monkeypatch, mimalloc_default):
    """Only mimalloc is replaced, and nothing when ARROW_DEFAULT_MEMORY_POOL names a pool."""
    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events[:300]])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    archive = Archive(tmp_path / "archive", window=100)
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    assert {pa.default_memory_pool().backend_name for _ in archive.tables()} == {"mimalloc"}
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:
        pytest.skip("this pyarrow has no jemalloc")
    assert {pa.default_memory_pool().backend_name for _ in archive.tables()} == {"jemalloc"}
    assert pa.default_memory_pool().backend_name == "jemalloc"


def test_sorting_processes_leave_the_garbage_collector_as_they_found_it(tmp_path):
    """While a sorting process runs, what existed when it was forked is frozen out of the collector
    (engine/fast/workers.py `freeze_existing`); once it is done, stopped or not, nothing is, and a
    freeze the process made itself is left as it was."""
    import gc

    from engine.fast.batch import batches

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events[:700]])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    assert gc.get_freeze_count() == 0
    for source in (lambda: Archive(tmp_path / "archive", window=100), lambda: JsonlFiles([log])):
        running = batches(Engine(plugins=PLUGINS), source(), workers=1)
        next(running)
        assert gc.get_freeze_count() > 0
        running.close()  # stopped half way
        assert gc.get_freeze_count() == 0
        assert sum(1 for _ in batches(Engine(plugins=PLUGINS), source(), workers=1)) > 1  # to the end
        assert gc.get_freeze_count() == 0
        gc.freeze()  # the process's own
        held = gc.get_freeze_count()
        try:
            running = batches(Engine(plugins=PLUGINS), source(), workers=1)
            next(running)
            assert 0 < gc.get_freeze_count() <= held  # nothing frozen on top (a frozen object freed leaves it)
            running.close()
            assert 0 < gc.get_freeze_count() <= held  # nor thawed
        finally:
            gc.unfreeze()


def test_a_window_with_no_room_in_shared_memory_comes_through_the_pipe(tmp_path, monkeypatch):
    """Writing the window's file fails (e.g. a full /dev/shm): the window is sent through the pipe
    instead, and the replay gives the same records."""
    import pyarrow as pa

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    expected = [r.to_dict() for r in Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive", window=300))]

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pa.ipc, "new_file", full)  # the forked process inherits it
    before = _window_folders()
    got = [r.to_dict() for r in Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive", window=300), workers=1)]
    assert got == expected and _window_folders() == before


def test_a_killed_replay_leaves_no_process_and_no_window_behind(tmp_path):
    """The engine's process killed (SIGKILL, no clean-up of its own) while the archive's process
    has windows written ahead: that process notices, removes them and ends."""
    import time

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    script = ("import multiprocessing, sys, time\n"
              "from engine import Engine, load_plugins\n"
              "from engine.ingest.archive import Archive\n"
              "replay = Engine(plugins=load_plugins()).run_batch(Archive(sys.argv[1], window=50), workers=1)\n"
              "next(replay)\n"
              "print(multiprocessing.active_children()[0].pid, flush=True)\n"
              "time.sleep(120)\n")
    before = _window_folders("*")
    written: list[set[str]] = []
    helpers, left = killed_midway(script, str(tmp_path / "archive"),
                                  while_running=lambda: written.append(_window_folders("*") - before))
    assert len(helpers) == 1 and written[0] and not left  # windows were on their way
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and written[0] & _window_folders("*"):
        time.sleep(0.1)
    assert not written[0] & _window_folders("*")  # the killed replay's folder is gone


def test_rows_from_an_offset_are_the_rows_after_it(tmp_path):
    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events[:700]])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=3)
    archive = Archive(tmp_path / "archive", window=50)
    lines = [line.text for line in archive]
    assert lines == [line.text for line in read_jsonl([log])]
    tail = [row for table in archive.tables(skip=333) for row in table.column("seq").to_pylist()]
    assert tail == list(range(333, 700))
    # read and sorted by another process (`workers`), from the same offset: the same rows, sorted alike
    from engine.fast.columns import ColumnLane
    from engine.fast.workers import sorted_windows

    lane = ColumnLane(Engine(plugins=PLUGINS))
    apart = [(table, kind.tolist(), unless) for table, (kind, unless) in sorted_windows(lane, archive, skip=333)]
    assert [row for table, _, _ in apart for row in table.column("seq").to_pylist()] == tail
    here = [(kind.tolist(), unless) for kind, unless in map(lane.sort_apart, archive.tables(skip=333))]
    assert [(kind, unless) for _, kind, unless in apart] == here


def test_a_window_s_sorting_reaches_the_engine_s_process_as_it_was_made(tmp_path):
    """The sorting process hands a window over with its sorting (engine/fast/workers.py): through a
    file and, with no room for one, through the pipe, the rows, each row's kind and the industries
    rows are quiet only outside of come back as `sort_apart` made them."""
    import pickle

    from engine.fast.columns import ColumnLane
    from engine.fast.workers import _handed_over, _sorting_of, _with_sorting

    events, _ = bound_events()
    other = next(e for e in events if e["id"] == "reg-other")
    copies = [{**e, "id": e["id"] + "-other", "subject": other["subject"]} for e in events
              if e["type"] != "enterprise.registered"]
    log = write(tmp_path / "others.jsonl", [orjson.dumps(e) for e in events + copies] + finding_heavy(CITY.events))
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=3)
    lane = ColumnLane(Engine(plugins=PLUGINS))
    sets = set()
    for number, table in enumerate(Archive(tmp_path / "archive", window=700).tables()):
        kind, unless = lane.sort_apart(table)
        sets |= set(unless.values())
        window = _with_sorting(table, (kind.copy(), dict(unless)))
        path = _handed_over(window, str(tmp_path / f"{number}.arrow"))
        with pa.memory_map(path) as source:
            through_file = pa.ipc.open_file(source).read_all()
        for handed in (through_file, pickle.loads(pickle.dumps(window))):
            rows, (kind_back, unless_back) = _sorting_of(handed, bool(unless))
            assert rows.equals(table)
            assert kind_back.tolist() == kind.tolist() and unless_back == unless
    assert len(sets) >= 2  # rows quiet only outside different industries


def test_an_order_falling_due_inside_a_quiet_run_escalates_at_its_place(tmp_path):
    from test_fastlane import reading

    subject = "91330200MA2AB1234Y"
    registration = {"specversion": "1.0", "id": "reg", "source": "registry", "type": "enterprise.registered",
                    "subject": subject, "time": "2024-01-01T08:00:00+08:00",
                    "data": {"name": "Test foundry", "industry": "foundry", "district": "Beilun", "in_park": True,
                             "eia_approved_on": "2010-01-01", "permits": {"emission_permit": True}, "scale": "above"}}
    lines = [orjson.dumps(registration)]
    lines += [reading(f"2024-03-0{d}T10:00:00+08:00", 45, subject, d) for d in (1, 5, 9)]  # three exceedances: an order
    lines += [reading(f"2024-{m:02d}-15T10:00:00+08:00", 3, subject, 100 + m) for m in (4, 5, 6, 7, 8)]  # quiet, past the deadline
    lines += [reading(f"2024-08-{d:02d}T10:00:00+08:00", 3, "91330200MA2AB12352", 200 + d) for d in range(16, 20)]  # a stranger
    log = write(tmp_path / "due.jsonl", lines)
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    engine = compare([log], tmp_path / "archive", window=1000)
    assert engine.lane_stats["quiet"] >= 2 and engine.summary.unregistered == 4
    assert b"close_by_law" in b"".join(records(Engine(plugins=PLUGINS), Archive(tmp_path / "archive"), batch=True))


def test_a_watched_enterprise_s_quiet_reading_decides_at_its_place(tmp_path):
    """An enterprise registered without an emission permit: its first measurement, quiet by every
    limit, puts it on the list (engine/decide, the watched enterprises); by column as per event."""
    from test_fastlane import reading

    subjects = ["91330200MA2AB1234Y", "91330200MA2AB12352"]
    lines = []
    for n, subject in enumerate(subjects):
        lines.append(orjson.dumps({
            "specversion": "1.0", "id": f"reg-{n}", "source": "registry", "type": "enterprise.registered",
            "subject": subject, "time": "2024-01-01T08:00:00+08:00",
            "data": {"name": f"Foundry {n}", "industry": "foundry", "district": "Beilun", "in_park": True,
                     "eia_approved_on": "2010-01-01", "permits": {"emission_permit": n == 1}, "scale": "above"}}))
    for d in range(1, 9):
        for n, subject in enumerate(subjects):
            lines.append(reading(f"2024-03-0{d}T10:00:00+08:00", 3, subject, 10 * d + n))
    log = write(tmp_path / "watched.jsonl", lines)
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    engine = compare([log], tmp_path / "archive", window=1000)
    assert engine.lane_stats["quiet"] >= 8
    assert b"no_permit" in b"".join(records(Engine(plugins=PLUGINS), Archive(tmp_path / "archive"), batch=True))


def test_a_crashed_run_of_an_archive_into_a_store_resumes_exactly(tmp_path):
    """Checkpoints count rows of the archive as lines of the JSONL: a run that dies after some
    checkpoints resumes from the last one and ends with the records of an uninterrupted JSONL run."""
    from engine.output import Store
    from engine.run import run_into_store

    class Crashing(Archive):
        def tables(self, skip=0, columns=None):
            for number, table in enumerate(super().tables(skip, columns)):
                if number == 6:
                    raise RuntimeError("the machine went down")
                yield table

    log = write(tmp_path / "adv.jsonl", adversarial_log(3, 500) + [orjson.dumps(e) for e in CITY.events[:300]])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=3)
    config = {"inputs": "the same"}
    with Store(tmp_path / "reference.db") as store:
        run_into_store(Engine(plugins=PLUGINS), JsonlFiles([log]), store, config=config, every=40)
        expected = list(store.lines())
    with Store(tmp_path / "crashed.db") as store, pytest.raises(RuntimeError):
        run_into_store(Engine(plugins=PLUGINS), Crashing(tmp_path / "archive", window=50), store, config=config, every=40)
    with Store(tmp_path / "crashed.db") as store:
        assert 0 < store.count() < len(expected)
        _, resumed = run_into_store(Engine(plugins=PLUGINS), Archive(tmp_path / "archive", window=50), store,
                                    config=config, every=40)
        assert resumed and list(store.lines()) == expected


def test_an_archive_of_format_1_replays_and_is_not_appended_to(tmp_path):
    """Format 1 had no `id_hash` column: its replay makes the hashes and gives the same bytes;
    appending to it is refused, and `rectify archive` writes it again as format 3."""
    import pyarrow.parquet as pq

    log = write(tmp_path / "events.jsonl", adversarial_log(3, 200) + [orjson.dumps(e) for e in CITY.events])
    directory = tmp_path / "archive"
    archive_files(Engine(plugins=PLUGINS), [log], directory, buckets=2)
    for part in directory.glob("*/*/*.parquet"):
        table = pq.read_table(part)
        assert "id_hash" in table.column_names
        table = table.drop_columns(["id_hash"]).replace_schema_metadata({"rectify.archive.format": "1"})
        pq.write_table(table, part, compression="zstd")
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["format"] = 1
    (directory / MANIFEST).write_text(json.dumps(manifest))
    compare([log], directory)
    with pytest.raises(ArchiveError, match="archive format 1 .*appends to format 3 only; write a new archive"):
        archive_files(Engine(plugins=PLUGINS), [log], directory)
    # written again from the archive alone: format 3, each line with the file and line it came from
    runner = CliRunner()
    result = runner.invoke(cli, ["archive", str(directory), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "again" / MANIFEST).read_text())["format"] == 3
    assert Archive(tmp_path / "again").manifest.sources == [str(log)]
    compare([log], tmp_path / "again")
    result = runner.invoke(cli, ["archive", str(log), str(directory), "--out", str(directory)])
    assert result.exit_code == 2 and "is an input too" in result.output


def test_an_archive_of_format_2_replays_and_is_not_appended_to(tmp_path, monkeypatch):
    """Written by rectify 0.3.0: format 2 kept a `production` object as the line's bytes. Its
    replay gives the bytes of the JSONL it was made from; appending to it is refused, and
    `rectify archive` writes it again as format 3."""
    shutil.copytree(FORMAT_2, tmp_path / "old")
    monkeypatch.chdir(tmp_path / "old")  # the archive names its log by the relative path it was given
    log, directory = Path("events.jsonl"), Path("archive")
    assert json.loads((directory / MANIFEST).read_text())["format"] == 2
    engine = compare([log], directory, window=64)
    assert engine.lane_stats["quiet"] > 50 and sum(engine.summary.data_gaps.values()) > 5
    with pytest.raises(ArchiveError, match="archive format 2 .*appends to format 3 only; write a new archive"):
        archive_files(Engine(plugins=PLUGINS), [log], directory)
    result = CliRunner().invoke(cli, ["archive", str(directory), "--out", "again"])
    assert result.exit_code == 0, result.output
    assert json.loads((Path("again") / MANIFEST).read_text())["format"] == 3
    compare([log], Path("again"), window=64)


def test_more_rows_than_a_batch_holds_come_back_in_order(tmp_path):
    """Rows become an Arrow batch a chunk at a time and are split by partition when written: one
    partition (one bucket, one month) of some 20,000 rows, typed and raw rows mixed."""
    lines = []
    for copy in range(9):
        lines += [orjson.dumps({**e, "id": f"{e['id']}-{copy}"}) for e in CITY.events[:2300]
                  if e["time"].startswith("2024-03")]
    log = write(tmp_path / "events.jsonl", lines)
    summary = archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=1)
    assert summary.rows == len(lines) > 2 * 8192 and summary.typed > 8192
    assert [line.text for line in Archive(tmp_path / "archive")] == lines


def test_a_write_holds_at_most_rows_per_file_rows_and_each_part_keeps_input_order(tmp_path):
    """`rows_per_file` bounds what a write buffers: a chunk that crosses it is split there, so
    each flush writes exactly that many rows (the last the rest), every part file holds its
    partition's rows in input order, and the archive replays as its JSONL."""
    from engine.ingest.archive import ArchiveWriter
    from engine.normalise import id_hash

    engine = Engine(plugins=PLUGINS)
    lines = [orjson.dumps(e) for e in CITY.events[:1000]] + [b"{broken", b"[]"]
    log = write(tmp_path / "events.jsonl", lines)
    writer = ArchiveWriter(tmp_path / "archive", engine.validation, DIGEST, buckets=3, rows_per_file=100)
    prepared = [engine.prepare_line(line, str(log), n) for n, line in enumerate(lines, 1)]
    events = [getattr(p, "event", None) for p in prepared]
    for start in range(0, len(lines), 256):  # chunks of the size `archive_files` hands over
        piece = slice(start, start + 256)
        writer.add_rows([str(log)] * len(lines[piece]), list(range(start + 1, start + 1 + len(lines[piece]))),
                        lines[piece], events[piece], [getattr(p, "epoch", None) for p in prepared[piece]],
                        [getattr(p, "digest", None) for p in prepared[piece]],
                        [None if e is None else id_hash(e["id"]) for e in events[piece]])
    writer.close()
    files = Archive(tmp_path / "archive").manifest.files
    flushed, total = [], 0
    for entry in files:  # the part files of one flush cover its seq range
        if not flushed or total == 100:
            flushed.append(0)
            total = 0
        flushed[-1] += entry["rows"]
        total += entry["rows"]
    assert flushed == [100] * 10 + [2]
    for entry in files:
        seq = pa.parquet.read_table(tmp_path / "archive" / entry["path"], columns=["seq"]).column("seq").to_pylist()
        assert seq == sorted(seq) and len(seq) == entry["rows"]
    assert [line.text for line in Archive(tmp_path / "archive")] == lines
    compare([log], tmp_path / "archive", window=300)


def test_a_line_spelt_otherwise_among_typed_ones_is_kept_raw_and_the_rest_typed(tmp_path):
    """The writer checks a chunk's readings against what orjson writes for them all at once; a
    line spelt otherwise (a space, `12.50`, an escaped character) is kept as its bytes, and only it."""
    readings = [e for e in CITY.events if e["type"] == "emission.measured"][:600]
    lines = [orjson.dumps(e) for e in readings]
    decimal = next(n for n in range(400, 600) if b"." in orjson.dumps(readings[n]["data"]["value"]))
    value = b'"value":' + orjson.dumps(readings[decimal]["data"]["value"])
    odd = {100: lines[100].replace(b'":', b'": ', 1),  # a space
           300: lines[300].replace(b'"specversion"', b'"spec\\u0076ersion"', 1),  # an escaped character
           301: json.dumps(readings[301]).encode(),  # another writer's separators
           decimal: lines[decimal].replace(value, value + b"0", 1)}  # 12.50 for 12.5
    for row, text in odd.items():
        assert text != lines[row] and orjson.loads(text) == readings[row]
        lines[row] = text
    log = write(tmp_path / "events.jsonl", lines)
    summary = archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=1)
    table = pa.concat_tables(Archive(tmp_path / "archive").tables(columns=["seq", "raw"]))
    raw = dict(zip(table.column("seq").to_pylist(), table.column("raw").to_pylist()))
    assert {seq for seq, text in raw.items() if text is not None} == set(odd)
    assert all(raw[seq] == lines[seq] for seq in odd)
    assert summary.typed == len(lines) - len(odd)
    assert [line.text for line in Archive(tmp_path / "archive")] == lines
    compare([log], tmp_path / "archive", window=250)


def test_a_changed_value_in_a_part_file_is_caught_by_its_page_checksum(tmp_path):
    """One byte of the `id_hash` column changed: the page still decodes (to another hash, which
    would hide a duplicate), but its checksum no longer matches, so the replay stops with the
    file named instead of trusting it."""
    import pyarrow.parquet as pq

    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=1)
    part = max((tmp_path / "archive").glob("*/*/*.parquet"), key=lambda p: p.stat().st_size)
    before = pq.read_table(part, columns=["id_hash"]).column("id_hash").to_pylist()
    chunk = pq.ParquetFile(part).metadata.row_group(0).column(pq.ParquetFile(part).schema_arrow.names.index("id_hash"))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(part.read_bytes())
    data[start + chunk.total_compressed_size - 20] ^= 0x01  # inside the page's values, not its header
    part.write_bytes(bytes(data))
    unchecked = pq.ParquetFile(part, page_checksum_verification=False).read(columns=["id_hash"])
    assert unchecked.column("id_hash").to_pylist() != before  # it decodes, to other values
    with pytest.raises(ArchiveError, match="unreadable part file"):
        list(Engine(plugins=PLUGINS).run_batch(Archive(tmp_path / "archive")))


def test_a_row_taken_exactly_keeps_the_digest_its_archive_holds(make_event):
    """An archive's row that the columnar lane takes exactly is prepared with the content digest
    the archive holds (made when the line was validated), not made again; a digest is refused
    beside a text, whose repeated keys are checked against its sorted-key JSON, and for an event
    not yet validated."""
    engine = Engine(plugins=PLUGINS)
    event = make_event("emission.measured", "2024-05-01T10:00:00+08:00",
                       {"outlet": "DA001", "pollutant": "a21026", "value": 12.0, "unit": "mg/m3", "period": "hour"})
    made = engine.prepare(event, True, event, valid=True)
    assert made.digest == content_digest(event)
    assert engine.prepare(event, True, event, valid=True, digest=made.digest ^ 1).digest == made.digest ^ 1
    with pytest.raises(ValueError, match="digest"):
        engine.prepare(event, True, orjson.dumps(event), valid=True, digest=made.digest)
    with pytest.raises(ValueError, match="digest"):
        engine.prepare(event, True, event, digest=made.digest)


def test_rows_in_order_are_the_rows_of_a_table_converted_a_block_at_a_time(tmp_path):
    """`rows_in_order` gives `rows_of`'s rows, block by block, and `RowBlocks` any of them:
    dictionary columns (their values once, a null row's None), strings, bytes, numbers with NaN
    and nulls; tables of 0 rows, of fewer rows than a block, of a block and one more; the windows
    of an archive, and two of them as one table, whose dictionary columns come in two chunks with
    dictionaries of their own."""
    from engine.ingest.archive import RowBlocks, rows_in_order, rows_of

    table = pa.table({
        "subject": pa.array(["a", None, "b", "a", "c", None, "b"]).dictionary_encode(),
        "id": ["e1", "e2", "e3", "e4", "e5", "e6", "e7"],
        "raw": pa.array([b"{}", None, b"x", b"", None, b"y", b"z"], type=pa.binary()),
        "value": [1.5, float("nan"), None, -0.0, 2.0, 3.0, 4.0],
        "line": pa.array([1, 2, None, 4, 5, 6, 7], type=pa.int64()),
    })

    def same(left, right):  # NaN is not equal to itself: compared as text (types and -0.0 too)
        return repr([dict(row) for row in left]) == repr([dict(row) for row in right])

    for size in (0, 1, 3, 4, 7):
        part = table.slice(0, size)
        for block in (1, 3, 1024):
            assert same(list(rows_in_order(part, block)), rows_of(part))
    log = write(tmp_path / "events.jsonl", [orjson.dumps(e) for e in CITY.events[:700]])
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=3)
    windows = list(Archive(tmp_path / "archive", window=300).tables())
    second = windows[1]  # its subjects encoded again, in the order they appear: another dictionary
    at = second.column_names.index("subject")
    second = second.set_column(at, "subject", second.column("subject").cast(pa.string()).dictionary_encode())
    joined = pa.concat_tables([windows[0], second])
    assert joined.column("subject").num_chunks == 2
    assert not joined.column("subject").chunk(0).dictionary.equals(joined.column("subject").chunk(1).dictionary)
    order = list(range(joined.num_rows))
    random.Random(5).shuffle(order)
    blocks = RowBlocks(joined)  # any row, in any order (the block last converted is kept)
    assert same([blocks[i] for i in order], [rows_of(joined)[i] for i in order])
    for window in [*windows, joined]:
        assert same(list(rows_in_order(window, 64)), rows_of(window))
        assert same(list(rows_in_order(window.take([5, 1, 299 % window.num_rows]), 2)),
                    rows_of(window.take([5, 1, 299 % window.num_rows])))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_window_gives_its_records_in_parts_as_they_are_made(tmp_path, monkeypatch, workers):
    """A window's records come in parts of `ColumnLane.PART` or more (the last part of a window
    may hold fewer), the rows it consumed counted with its last part; together they are the
    records of the log replayed event by event. A checkpoint is taken only where the engine has
    read the lines it counts, never inside a window, also when one is asked for after every part."""
    from engine.fast.batch import batches
    from engine.fast.columns import ColumnLane
    from engine.run import Outputs, Run

    monkeypatch.setattr(ColumnLane, "PART", 7)
    log = write(tmp_path / "heavy.jsonl", finding_heavy(CITY.events))
    archive_files(Engine(plugins=PLUGINS), [log], tmp_path / "archive", buckets=2)
    expected = [orjson.dumps(r.to_dict()) for r in Engine(plugins=PLUGINS).run(read_jsonl([log]))]
    engine = Engine(plugins=PLUGINS)
    parts = list(batches(engine, Archive(tmp_path / "archive", window=1000), workers=workers))
    got = [orjson.dumps(r.to_dict()) for _, records in parts for r in records]
    got += [orjson.dumps(r.to_dict()) for r in engine.flush()]
    assert got == expected
    counts = [done for done, _ in parts]
    ends = [n for n, (done, _) in enumerate(parts) if done > (parts[n - 1][0] if n else 0)]  # a window's last part
    window_ends = list(range(1000, len(CITY.events), 1000)) + [len(CITY.events)]
    assert counts == sorted(counts) and sorted(set(counts)) == [0, *window_ends]  # 0: the first window's parts
    assert len(parts) > 3 * len(ends)
    assert all(len(records) >= 7 for n, (_, records) in enumerate(parts) if n not in ends)
    taken: list[tuple[int, int]] = []
    checked = Engine(plugins=PLUGINS)
    run = Run(checked, Outputs(ListSink()), workers=workers, every=0,
              checkpoint=lambda done: taken.append((done, checked.summary.read)))
    run.feed(Archive(tmp_path / "archive", window=1000))
    assert taken == [(done, done) for done in window_ends]
