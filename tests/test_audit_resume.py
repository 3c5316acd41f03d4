"""Crash safety (issue 5): snapshots restore the engine exactly; a SIGKILLed `rectify run
--store` started again ends with exactly the records of an uninterrupted run."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import Engine
from engine.devtools.demo import generate_city, write_jsonl
from engine.ingest import read_jsonl
from engine.output import Store

RECTIFY = [sys.executable, "-c", "from engine.cli import main; main()"]


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "events.jsonl"
    write_jsonl(generate_city(enterprises=300, days=1, seed=5).events, path)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")
    return path


@pytest.mark.parametrize("backend", ["compiled", "rete"])
def test_a_restored_snapshot_continues_exactly_like_an_uninterrupted_engine(plugins, city, backend):
    lines = list(read_jsonl([city]))
    whole = Engine(plugins=plugins, backend=backend)
    reference = [r.to_dict() for r in whole.run(lines)]
    assert any(r["record"] == "decision" for r in reference)
    for cut in (1, len(lines) // 3, len(lines) - 5):
        first = Engine(plugins=plugins, backend=backend)
        out = [r.to_dict() for n, item in enumerate(lines[:cut], 1) for r in first.process_line(item, n)]
        state = first.snapshot()
        assert first.snapshot() == state  # deterministic
        second = Engine(plugins=plugins, backend=backend)
        second.restore(state)
        assert second.snapshot() == state
        out += [r.to_dict() for n, item in enumerate(lines[cut:], cut + 1) for r in second.process_line(item, n)]
        out += [r.to_dict() for r in second.flush()]
        assert out == reference, cut
        assert second.summary.to_dict() == whole.summary.to_dict()


def _offset(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05) as connection:
            row = connection.execute("SELECT offset FROM checkpoint").fetchone()
            return row[0] if row else 0
    except sqlite3.Error:
        return 0


def _export(db: Path) -> bytes:
    with Store(db) as store:
        return b"".join(line + b"\n" for line in store.lines())


def test_sigkill_at_several_points_then_resume_gives_exactly_the_uninterrupted_records(city, tmp_path):
    total = sum(1 for _ in city.open("rb"))
    reference = tmp_path / "reference.db"
    done = subprocess.run([*RECTIFY, "run", str(city), "--store", str(reference), "--checkpoint-every", "100"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = _export(reference)
    assert expected.count(b"\n") > 50

    crashed = tmp_path / "crashed.db"
    kills = 0
    for target in (0, total // 4, total // 2, (3 * total) // 4):
        process = subprocess.Popen([*RECTIFY, "run", str(city), "--store", str(crashed), "--checkpoint-every", "100"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while process.poll() is None and _offset(crashed) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)
        if process.returncode == 0:
            break
        assert process.returncode == -signal.SIGKILL
        # between runs the store holds only whole checkpoints: a prefix of the reference records
        assert expected.startswith(_export(crashed))
    assert kills >= 2, "the run finished before it could be killed: make the input larger"
    resumed = subprocess.run([*RECTIFY, "run", str(city), "--store", str(crashed), "--checkpoint-every", "100"],
                             capture_output=True, text=True, timeout=120)
    if resumed.returncode == 2:  # the last kill came too late: the previous run had completed
        assert "already holds a complete run" in resumed.stderr
    else:
        assert resumed.returncode == 0, resumed.stderr
    assert _export(crashed) == expected  # none lost, none twice, same chain
    with Store(crashed) as a, Store(reference) as b:
        assert a.meta("summary") == b.meta("summary")
