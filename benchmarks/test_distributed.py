"""Distributed replay throughput: the single-process batch path vs Dask on 1 and 2 workers.

All three run on the same generated log in one pytest run (`pytest benchmarks/test_distributed.py
--benchmark-only -s`); the last test prints the events/s table and checks that the three
outputs are the same bytes, then each distributed run's CPU per input line: the driver's
(the serial part), the workers' (in total), and the speed-up projected from them at 8, 32
and 128 workers (Amdahl: round trips and waiting are not counted), twice: from the rounds
(start-up, when every node builds its engine at the same time, left out of both parts), and from
the whole run (the driver's engine build counted as serial, the workers' as parallel).
RECTIFY_BENCH_DIST_EVENTS sets the log size (default 200,000).
Each distributed figure includes starting a LocalCluster (about a second here).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from engine import Engine
from engine.devtools.demo import generate_city, write_jsonl
from engine.ingest import read_jsonl
from engine.output import dumps

pytest.importorskip("dask.distributed")

EVENTS = int(os.environ.get("RECTIFY_BENCH_DIST_EVENTS", "200000"))
RESULTS: dict[str, dict[str, float | str]] = {}
TIMINGS: dict[str, dict[str, float]] = {}  # driver-side seconds per phase of each distributed run
USAGE: dict[str, dict] = {}  # each distributed run's `report()`: driver and worker CPU seconds, rows, phases


@pytest.fixture(scope="module")
def dist_log(tmp_path_factory) -> Path:
    days = 1
    while True:
        city = generate_city(enterprises=1000, days=days, seed=2024)
        if len(city.events) >= EVENTS or days >= 366:
            break
        days = max(days + 1, int(days * EVENTS / len(city.events)) + 1)
    path = tmp_path_factory.mktemp("bench_dist") / "events.jsonl"
    write_jsonl(city.events, path)
    return path


def _measure(benchmark, name: str, run) -> None:
    def once():
        started = time.perf_counter()
        digest, events = run()
        seconds = time.perf_counter() - started
        RESULTS[name] = {"events": events, "seconds": seconds, "events_per_s": events / seconds, "sha256": digest}

    benchmark.pedantic(once, rounds=1, iterations=1)


def _digest(records) -> str:
    h = hashlib.sha256()
    for record in records:
        h.update(dumps(record.to_dict()))
    return h.hexdigest()


def test_a_single_process_batch_path(benchmark, dist_log):
    def run():
        engine = Engine()
        digest = _digest(engine.run_batch(read_jsonl([dist_log])))
        return digest, engine.summary.read

    _measure(benchmark, "single process (run_batch)", run)


@pytest.mark.parametrize("workers", [1, 2])
def test_b_dask_workers(benchmark, dist_log, workers):
    from engine.distributed import DistributedRun

    def run():
        job = DistributedRun([str(dist_log)], workers=workers)
        digest = _digest(job)
        TIMINGS[f"dask, {workers} worker{'s' if workers > 1 else ''}"] = dict(job.timings)
        USAGE[f"dask, {workers} worker{'s' if workers > 1 else ''}"] = job.report()
        return digest, job.summary.read

    _measure(benchmark, f"dask, {workers} worker{'s' if workers > 1 else ''}", run)


def test_z_report(benchmark):
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # so that --benchmark-only runs the report
    base = RESULTS.get("single process (run_batch)")
    print()
    print(f"{'path':<30}{'events':>10}{'seconds':>10}{'events/s':>12}{'vs single':>11}")
    for name, row in RESULTS.items():
        ratio = row["events_per_s"] / base["events_per_s"] if base else float("nan")
        print(f"{name:<30}{row['events']:>10}{row['seconds']:>10.2f}{row['events_per_s']:>12,.0f}{ratio:>10.2f}x")
    for name, phases in TIMINGS.items():
        print(f"{name}: " + ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in phases.items()))
    for name, usage in USAGE.items():
        events = RESULTS[name]["events"]
        serial = usage["driver_main_thread_cpu_s"] / events * 1e6  # the driver's own work: the serial part
        rounds = usage["driver_rounds_cpu_s"] / events * 1e6  # of which after the engines are built
        process = usage["driver_cpu_s"] / events * 1e6  # with the LocalCluster's scheduler (same process)
        parallel = sum(w["cpu_s"] for w in usage["workers"]) / events * 1e6  # all workers' CPU, per line
        parallel_rounds = sum(w["rounds_cpu_s"] for w in usage["workers"]) / events * 1e6  # after their engines are built
        print(f"{name}: driver {serial:.3f} µs/line (main thread; of which {rounds:.3f} in the rounds after the "
              f"engines are built; {process:.2f} µs/line with the scheduler in its process), "
              f"workers {parallel:.2f} µs/line in total, {parallel_rounds:.2f} in the rounds")
        print("  driver's main thread by phase (CPU s): " + ", ".join(
            f"{phase} {seconds:.3f}" for phase, seconds in usage["driver_phases_cpu_s"].items()))
        # Amdahl from the measured CPU: T(N) = serial + parallel / N (round trips and waiting not counted)
        for label, part, whole in (
                ("the rounds (start-up, when every node builds its engine at once, left out on both sides)",
                 rounds, parallel_rounds),
                ("the whole run (the driver's engine build counted as serial, the workers' as parallel)",
                 serial, parallel)):
            projected = []
            for n in (8, 32, 128):
                speedup = (part + whole) / (part + whole / n)
                projected.append(f"{n} workers {speedup:.1f}x (efficiency {speedup / n:.2f})")
            print(f"  projected speed-up over 1 worker, from {label}: " + ", ".join(projected))
    assert len({row["sha256"] for row in RESULTS.values()}) == 1, "the outputs differ"
