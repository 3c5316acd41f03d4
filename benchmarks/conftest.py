"""Benchmark fixtures: one generated log of at least 1,000,000 events with the demo's mix, the
same log made finding-heavy, and Parquet archives of both; and a log of the same city over
LONG times as many days, with its archive (how an archive replay's rate depends on the log's length).

Run with `pytest benchmarks --benchmark-only -s` (not part of the default test run). The
logs are generated once per session into a temporary folder (about 300 MB each, the long one
about 1.2 GB); the archives are written once (`rectify archive`'s code path) and their writing
time recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from engine import Engine
from engine.devtools.demo import generate_city, write_jsonl
from engine.run import archive_files

EVENTS = int(os.environ.get("RECTIFY_BENCH_EVENTS", "1000000"))
LONG = int(os.environ.get("RECTIFY_BENCH_LONG", "4"))  # the long log: this many times the benchmark log's days
RESULTS: dict[str, dict[str, float]] = {}
DAYS: dict[str, int] = {}  # the days each generated log covers


@pytest.fixture(scope="session")
def million_log(tmp_path_factory) -> Path:
    """A demo-mix log of at least RECTIFY_BENCH_EVENTS events (default 1,000,000)."""
    days = 2
    while True:
        city = generate_city(enterprises=3000, days=days, seed=2024)
        if len(city.events) >= EVENTS:
            break
        days = max(days + 1, int(days * EVENTS / len(city.events)) + 1)
    path = tmp_path_factory.mktemp("bench") / "events.jsonl"
    write_jsonl(city.events, path)
    DAYS["demo"] = days
    return path


@pytest.fixture(scope="session")
def long_log(million_log, tmp_path_factory) -> Path:
    """The benchmark log's city (3,000 enterprises, the same seed) over LONG times its days:
    about as many registrations, reports and declarations, LONG times the readings. Generated in
    a child process, so that this one does not keep the heap of several million events."""
    days = DAYS["demo"] * LONG
    path = tmp_path_factory.mktemp("bench") / "long.jsonl"
    script = ("import sys; from engine.devtools.demo import generate_city, write_jsonl; "
              "write_jsonl(generate_city(enterprises=3000, days=int(sys.argv[1]), seed=2024).events, sys.argv[2])")
    subprocess.run([sys.executable, "-c", script, str(days), str(path)], check=True)
    DAYS["long"] = days
    return path


def make_finding_heavy(source: Path, target: Path) -> int:
    """`source` with every fourth stack or discharge reading raised well above its limits
    (value × 8 + 50): what a what-if with tighter limits, or a bad district, looks like.
    Returns how many readings were raised."""
    raised = readings = 0
    with source.open("rb") as lines, target.open("wb") as out:
        for line in lines:
            event = orjson.loads(line)
            if event["type"] in ("emission.measured", "discharge.measured"):
                readings += 1
                if readings % 4 == 0:
                    event["data"]["value"] = round(event["data"]["value"] * 8 + 50, 3)
                    raised += 1
            out.write(orjson.dumps(event) + b"\n")
    return raised


@pytest.fixture(scope="session")
def heavy_log(million_log, tmp_path_factory) -> Path:
    """The benchmark log with a quarter of its readings above their limits."""
    path = tmp_path_factory.mktemp("bench") / "heavy.jsonl"
    make_finding_heavy(million_log, path)
    return path


def _archive(log: Path, name: str, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("bench") / name
    started = time.perf_counter()
    summary = archive_files(Engine(), [log], directory)
    seconds = time.perf_counter() - started
    RESULTS[f"archive_write_{name}"] = {"events": summary.read, "seconds": seconds, "events_per_s": summary.read / seconds}
    return directory


@pytest.fixture(scope="session")
def million_archive(million_log, tmp_path_factory) -> Path:
    """The benchmark log as a Parquet archive (written once, timed)."""
    return _archive(million_log, "demo", tmp_path_factory)


@pytest.fixture(scope="session")
def heavy_archive(heavy_log, tmp_path_factory) -> Path:
    return _archive(heavy_log, "heavy", tmp_path_factory)


@pytest.fixture(scope="session")
def long_archive(long_log, tmp_path_factory) -> Path:
    return _archive(long_log, "long", tmp_path_factory)


@pytest.fixture(scope="session")
def log_days() -> dict[str, int]:
    """The days each generated log covers ("demo", "long"), once it is made."""
    return DAYS


@pytest.fixture(scope="session")
def results() -> dict[str, dict[str, float]]:
    return RESULTS
