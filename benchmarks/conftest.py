"""Benchmark fixtures: one generated log of at least 1,000,000 events with the demo's mix.

Run with `pytest benchmarks --benchmark-only -s` (not part of the default test run). The
log is generated once per session into a temporary folder (about 300 MB).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.devtools.demo import generate_city, write_jsonl

EVENTS = int(os.environ.get("RECTIFY_BENCH_EVENTS", "1000000"))
RESULTS: dict[str, dict[str, float]] = {}


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
    return path


@pytest.fixture(scope="session")
def results() -> dict[str, dict[str, float]]:
    return RESULTS
