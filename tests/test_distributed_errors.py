"""Distributed replay fails with a message, never a traceback, and never leaves output that looks
complete: a worker whose engine has another rule set, a worker lost in the middle of a run (an
unreachable scheduler: tests/test_damaged_store.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dask.distributed")

from dask.distributed import Client, LocalCluster  # noqa: E402

from engine.distributed import DistributedRun, WorkerLost  # noqa: E402
from engine.devtools.demo import generate_city, write_jsonl  # noqa: E402

RECTIFY = [sys.executable, "-c", "from engine.cli import main; main()"]


def test_a_worker_with_another_rule_set_is_refused_by_name(tmp_path):
    """A worker without the land plugin (another rule-set fingerprint): exit 3, the worker named,
    no output file, no manifest, no traceback."""
    events = tmp_path / "events.jsonl"
    write_jsonl(generate_city(enterprises=20, days=1, seed=3).events, events)
    out = tmp_path / "out.jsonl"
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=":0",
                      env={"RECTIFY_DISABLE_PLUGINS": "land"}) as cluster:
        worker = next(iter(cluster.scheduler_info["workers"]))
        result = subprocess.run([*RECTIFY, "run", str(events), "--out", str(out), "--cluster", "dask",
                                 "--scheduler", cluster.scheduler_address], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 3, result.stderr[-1000:]
    assert f"rectify: worker {worker} has rule set sha256:" in result.stderr
    assert "install the same rectify and plugins" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]


def test_a_worker_lost_mid_run_fails_naming_it(tmp_path):
    lines = [__import__("orjson").dumps(e) for e in generate_city(enterprises=30, days=1, seed=5).events]
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        job = DistributedRun(lines, client=client, chunk_size=500, poll=0.5)
        records = iter(job)
        next(records)  # the first chunk is written
        victim = job.addresses[1]
        os.kill(job.pids[1], signal.SIGKILL)
        with pytest.raises(WorkerLost, match=f"worker {victim} \\(partition 1\\)"):
            list(records)
