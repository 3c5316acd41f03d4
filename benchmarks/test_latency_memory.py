"""Single-event latency of Engine.process (p50, p99) and memory of a 100,000-enterprise replay:
per event, through the batch path from JSONL, and from the Parquet archive; and the peak memory
of `rectify run`'s replay of the benchmark log and of the log LONG times as long (conftest.py).

Peak memory is the child's own VmHWM (replay.py `peak_rss_kb`), not `getrusage`'s ru_maxrss: on
Linux a child keeps the maxrss of the process it was forked from (here pytest's, with the logs it
generated), which exec does not reset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from engine import Engine


def test_latency_p50_p99(benchmark, million_log, capsys):
    engine = Engine()
    events = []
    with million_log.open("rb") as handle:
        for number, line in enumerate(handle):
            if number >= 200_000:
                break
            events.append(orjson.loads(line))

    def run() -> list[int]:
        timings = []
        clock = time.perf_counter_ns
        for event in events:
            start = clock()
            engine.process(event)
            timings.append(clock() - start)
        return timings

    timings = sorted(benchmark.pedantic(run, rounds=1, iterations=1))
    p50, p99 = timings[len(timings) // 2] / 1000, timings[int(len(timings) * 0.99)] / 1000
    with capsys.disabled():
        print(f"\nEngine.process latency over {len(timings):,} events: p50 {p50:.1f} µs, p99 {p99:.1f} µs")


MEMORY_PROBE = r"""
import json, sys, tracemalloc
from datetime import datetime, timedelta, timezone
from engine import Engine
start = datetime(2024, 3, 1, 10, tzinfo=timezone(timedelta(hours=8)))
from engine.validate import make_uscc
enterprises, days = int(sys.argv[1]), int(sys.argv[2])
engine = Engine()
def events():
    n = 0
    for e in range(enterprises):
        code = make_uscc(f"9133{e:013d}")
        n += 1
        yield {"specversion": "1.0", "id": f"r{n}", "source": "m", "type": "enterprise.registered", "subject": code,
               "time": "2024-01-01T00:00:00+08:00", "data": {"name": "x", "industry": "foundry", "district": "Beilun",
               "in_park": True, "eia_approved_on": "2010-01-01", "permits": {"emission_permit": True}, "land_area_mu": 5}}
    for d in range(days):
        for e in range(enterprises):
            code = make_uscc(f"9133{e:013d}")
            n += 1
            yield {"specversion": "1.0", "id": f"m{n}", "source": "m", "type": "emission.measured", "subject": code,
                   "time": (start + timedelta(days=8 * d)).isoformat(),
                   "data": {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013", "value": 12.5,
                            "unit": "mg/m3", "period": "hour"}}
if sys.argv[3] in ("batch", "archive"):  # the batch path from a JSONL file (or its archive), written before measuring
    import orjson, tempfile
    from engine.ingest import JsonlFiles
    path = tempfile.mkstemp(suffix=".jsonl")[1]
    with open(path, "wb") as handle:
        for event in events():
            handle.write(orjson.dumps(event) + b"\n")
    source = JsonlFiles([path])
    if sys.argv[3] == "archive":
        from engine.ingest.archive import Archive
        from engine.run import archive_files
        folder = tempfile.mkdtemp() + "/archive"
        archive_files(Engine(), [path], folder)
        source = Archive(folder)
    tracemalloc.start()
    for _ in engine.run_batch(source):
        pass
else:
    tracemalloc.start()
    for event in events():
        engine.process(event)
    engine.flush()
current, peak = tracemalloc.get_traced_memory()
from replay import peak_rss_kb
print(json.dumps({"enterprises": enterprises, "events": engine.summary.read, "traced_bytes": current,
                  "peak_traced_bytes": peak, "max_rss_kb": peak_rss_kb()}))
"""


def _child(script: str, *args: str) -> dict:
    """Run `script` in a fresh Python at the project's root, the `replay` module importable; its JSON line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                        os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent, env=env)
    return json.loads(out.stdout)


def _probe(enterprises: int, days: int, path: str = "process") -> dict:
    return _child(MEMORY_PROBE, str(enterprises), str(days), path)


@pytest.mark.parametrize("path", ["process", "batch", "archive"])
def test_memory_100k_enterprises(benchmark, capsys, path):
    def run() -> list[dict]:
        # readings 8 days apart: the log grows past the 7-day dedupe horizon
        return [_probe(100_000, 2, path), _probe(100_000, 4, path)]

    short, long = benchmark.pedantic(run, rounds=1, iterations=1)
    with capsys.disabled():
        for probe in (short, long):
            per = probe["traced_bytes"] / probe["enterprises"]
            print(f"\n{path}: replay of {probe['enterprises']:,} enterprises, {probe['events']:,} events: "
                  f"state {probe['traced_bytes'] / 2**20:.0f} MiB traced ({per:,.0f} B per enterprise), "
                  f"peak traced {probe['peak_traced_bytes'] / 2**20:.0f} MiB, peak RSS {probe['max_rss_kb'] / 1024:.0f} MiB")
        growth = (long["traced_bytes"] - short["traced_bytes"]) / (long["events"] - short["events"])
        print(f"{path}: state growth with log length: {growth:,.0f} B per additional event")


REPLAY_PROBE = r"""
import json, sys, time
from engine import Engine, JsonlFiles
from engine.ingest.archive import Archive
from engine.run import long_run_collector
from replay import feed, peak_rss_kb
kind, path = sys.argv[1], sys.argv[2]
engine = Engine()
with long_run_collector():  # `rectify run PATH --jobs 0`, in its own process
    started = time.perf_counter()
    outputs = feed(engine, Archive(path) if kind == "archive" else JsonlFiles([path]))
    seconds = time.perf_counter() - started
print(json.dumps({"events": engine.summary.read, "seconds": seconds, "head": outputs.head, "peak_rss_kb": peak_rss_kb()}))
"""


def _replay_probe(kind: str, path: Path) -> dict:
    return _child(REPLAY_PROBE, kind, str(path))


def test_peak_memory_by_log_length(benchmark, capsys, million_log, million_archive, long_log, long_archive, log_days):
    """The peak memory of one replay in a fresh process (JSONL in one process, and the archive),
    of the benchmark log and of the same city over LONG times the days (four by default): "flat
    in log length" means the second is about the first. The JSONL and archive replays of a log must end on the
    same chain head (the same bytes), here at four times the length too."""
    logs = {"demo": (million_log, million_archive), "long": (long_log, long_archive)}

    def run() -> dict[tuple[str, str], dict]:
        return {(log, kind): _replay_probe(kind, paths[kind == "archive"])
                for log, paths in logs.items() for kind in ("jsonl", "archive")}

    probes = benchmark.pedantic(run, rounds=1, iterations=1)
    with capsys.disabled():
        print(f"\npeak memory of one replay (a fresh process each, VmHWM), {log_days['demo']} days / "
              f"{log_days['long']} days of the same city:")
        for kind in ("jsonl", "archive"):
            short, long = probes["demo", kind], probes["long", kind]
            print(f"  {kind:<8}{short['peak_rss_kb'] / 1024:8.0f} MiB ({short['events']:,} events, {short['seconds']:.2f} s)"
                  f" / {long['peak_rss_kb'] / 1024:.0f} MiB ({long['events']:,} events, {long['seconds']:.2f} s):"
                  f" {long['peak_rss_kb'] / short['peak_rss_kb']:.2f}x for {long['events'] / short['events']:.2f}x the events")
    for log in logs:
        assert probes[log, "jsonl"]["head"] == probes[log, "archive"]["head"], f"{log}: JSONL and archive wrote different records"
