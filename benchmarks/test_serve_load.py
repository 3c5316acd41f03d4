"""Load on `rectify serve` over loopback: HJ 212 stations sending hourly data (time compressed)
plus HTTP batches, both acknowledged only after the commit.

One server process (`rectify serve --store ... --hj212 ...`) and one client process (this one,
asyncio on uvloop): STATIONS data loggers on persistent TCP connections, each sending an hourly packet
(particulate matter and NOx of an electric melting furnace) once per HOUR_SECONDS of wall
time, spread evenly, waiting for the 9014 reply; and SENDERS HTTP senders posting batches of
BATCH hourly readings of other outlets of the same enterprises: together RATE events/s on a
fixed schedule (open loop: the latency at that load), a batch that falls behind schedule going
as soon as the sender's previous one was answered; RATE=0 sends each batch as soon as the
previous one was answered (closed loop: the most the server takes). After WARMUP seconds,
SECONDS are measured: events/s acknowledged through HTTP and through HJ 212, and the
acknowledgement latency (p50, p99) of each, as the sender sees it. Targets (issue 16):
>= 20,000 events/s sustained through HTTP batches, p99 acknowledgement <= 50 ms.

    pytest benchmarks/test_serve_load.py --benchmark-only -s
    RECTIFY_SERVE_STATIONS=300 RECTIFY_SERVE_SECONDS=5 pytest benchmarks/test_serve_load.py --benchmark-only -s   # small

Environment: RECTIFY_SERVE_STATIONS (5000), RECTIFY_SERVE_SECONDS (30), RECTIFY_SERVE_WARMUP (3),
RECTIFY_SERVE_BATCH (250), RECTIFY_SERVE_SENDERS (4), RECTIFY_SERVE_RATE (20000; 0 = closed loop),
RECTIFY_SERVE_HOUR_SECONDS (5),
RECTIFY_SERVE_CHECKPOINT (250000 events between checkpoints: some fall inside the window, and
their pause counts in the latencies).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import uvloop

from engine import Engine
from engine.ingest.hj212 import build_packet
from engine.validate.uscc import make_uscc

STATIONS = int(os.environ.get("RECTIFY_SERVE_STATIONS", "5000"))
SECONDS = float(os.environ.get("RECTIFY_SERVE_SECONDS", "30"))
WARMUP = float(os.environ.get("RECTIFY_SERVE_WARMUP", "3"))
BATCH = int(os.environ.get("RECTIFY_SERVE_BATCH", "250"))
SENDERS = int(os.environ.get("RECTIFY_SERVE_SENDERS", "4"))
RATE = float(os.environ.get("RECTIFY_SERVE_RATE", "20000"))  # HTTP events/s offered; 0: as fast as answered
HOUR_SECONDS = float(os.environ.get("RECTIFY_SERVE_HOUR_SECONDS", "5"))
CHECKPOINT = int(os.environ.get("RECTIFY_SERVE_CHECKPOINT", "250000"))  # so that checkpoints fall in the window
OUTLETS = 10  # HTTP outlets per enterprise (DA101...), besides the HJ 212 station's DA001
RECTIFY = [sys.executable, "-c", "from engine.cli import main; main()"]
BATCHED = {"content-type": "application/cloudevents-batch+json"}


def _codes(count: int) -> list[str]:
    return [make_uscc(f"9133{n:013d}") for n in range(count)]


def _registration(code: str, number: int) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"reg-{number}", "source": "registry", "type": "enterprise.registered",
            "subject": code, "time": "2024-03-01T00:00:00+08:00",
            "data": {"name": f"Foundry {number}", "industry": "foundry", "district": "Beilun", "in_park": True,
                     "land_area_mu": 10, "eia_approved_on": "2015-01-01", "permits": {"emission_permit": True},
                     "scale": "above"}}


class Readings:
    """HTTP batches of hourly readings: every (enterprise, outlet) once per simulated hour, hour after hour."""

    def __init__(self, codes: list[str], seed: int = 16) -> None:
        self.codes, self.random = codes, random.Random(seed)
        self.position = 0
        self.number = 0

    def body(self) -> bytes:
        events = []
        slots = len(self.codes) * OUTLETS
        for _ in range(BATCH):
            hour, slot = divmod(self.position, slots)
            self.position += 1
            self.number += 1
            code = self.codes[slot // OUTLETS]
            day, at = divmod(hour, 24)
            value = 35.0 if self.random.random() < 0.003 else round(5 + 15 * self.random.random(), 1)
            events.append({"specversion": "1.0", "id": f"http-{self.number}", "source": "dcs", "type": "emission.measured",
                           "subject": code, "time": f"2024-03-{2 + day:02d}T{at:02d}:00:00+08:00",
                           "data": {"outlet": f"DA{101 + slot % OUTLETS}", "process": "melting.electric",
                                    "pollutant": "a34013", "value": value, "unit": "mg/m3", "period": "hour"}})
        return orjson.dumps(events)


def _packet(mn: str, hour: int, rng: random.Random) -> bytes:
    day, at = divmod(hour, 24)
    stamp = f"202403{2 + day:02d}{at:02d}0000"
    return build_packet(f"QN={stamp}000;ST=31;CN=2061;PW=123456;MN={mn};Flag=5;CP=&&DataTime={stamp};"
                        f"a34013-Avg={5 + 15 * rng.random():.1f},a34013-Flag=N;"
                        f"a21002-Avg={50 + 100 * rng.random():.1f},a21002-Flag=N&&")


class Connection:
    """A keep-alive HTTP/1.1 connection that POSTs bodies and reads the answers: the least a
    sender can cost (httpx's per-request work in this process was the load generator's limit,
    leaving the server idle half the time). The tests use httpx; this measures the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host.encode()

    async def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                          % (path.encode(), self.host, content_type.encode(), len(body)) + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        return status, await self.reader.readexactly(length)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


async def _load(url: str, hj212: tuple[str, int], codes: list[str], mns: list[str]) -> dict[str, Any]:
    start = time.perf_counter() + 1.0
    window = (start + WARMUP, start + WARMUP + SECONDS)
    stats: dict[str, Any] = {"http_events": 0, "http_latency": [], "hj212_events": 0, "hj212_latency": [],
                             "http_errors": 0}

    async def sender(index: int, readings: Readings) -> None:
        address = url.removeprefix("http://")
        client = Connection(*await asyncio.open_connection(*address.rsplit(":", 1)), address)
        interval = BATCH * SENDERS / RATE if RATE else 0.0  # each sender's share of the offered rate
        due = start + interval * index / max(SENDERS, 1)
        while True:
            if RATE:  # open loop: on schedule (late batches go at once: never more than the server takes)
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += interval
            sent = time.perf_counter()
            if sent >= window[1]:
                return
            body = readings.body()
            sent = time.perf_counter()
            status, answer = await client.post("/events", body, BATCHED["content-type"])
            done = time.perf_counter()
            if status != 200:
                stats["http_errors"] += 1
                continue
            if window[0] <= sent and done <= window[1]:
                stats["http_events"] += orjson.loads(answer)["accepted"]
                stats["http_latency"].append(done - sent)

    async def station(index: int, mn: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rng = random.Random(index)
        hour = 0
        while True:
            due = start + hour * HOUR_SECONDS + HOUR_SECONDS * index / len(mns)
            if due >= window[1]:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            sent = time.perf_counter()
            writer.write(_packet(mn, hour, rng))
            reply = await reader.readuntil(b"\r\n")
            done = time.perf_counter()
            assert b"CN=9014" in reply, reply
            if window[0] <= sent and done <= window[1]:
                stats["hj212_events"] += 2
                stats["hj212_latency"].append(done - sent)
            hour += 1
        writer.close()

    connections = []
    for first in range(0, len(mns), 100):  # the listener's backlog: connect in steps
        connections += await asyncio.gather(*(asyncio.open_connection(*hj212) for _ in mns[first:first + 100]))
    start = time.perf_counter() + 0.5
    window = (start + WARMUP, start + WARMUP + SECONDS)
    readings = Readings(codes)
    await asyncio.gather(*(station(i, mn, *connections[i]) for i, mn in enumerate(mns)),
                         *(sender(i, readings) for i in range(SENDERS)))
    return stats


def test_serve_load(benchmark, tmp_path, capsys):
    codes = _codes(STATIONS)
    mns = [f"LOAD{n:020d}" for n in range(STATIONS)]
    registry = tmp_path / "stations.csv"
    registry.write_text("mn,pw,enterprise,medium,outlet,process\n" + "".join(
        f"{mn},123456,{code},air,DA001,melting.electric\n" for mn, code in zip(mns, codes)), encoding="utf-8")
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        server = subprocess.Popen([*RECTIFY, "serve", "--store", str(tmp_path / "load.db"), "--http", "127.0.0.1:0",
                                   "--hj212", "127.0.0.1:0", "--registry", str(registry),
                                   "--max-connections", str(STATIONS + 16),
                                   "--max-unauthenticated", str(STATIONS + 16), "--auth-timeout", "600",
                                   "--checkpoint-every", str(CHECKPOINT)],
                                  stdout=subprocess.DEVNULL, stderr=handle)
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"listening http=(\S+?) hj212=(\S+?);", log.read_text())):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        url = f"http://{found.group(1)}"
        host, _, port = found.group(2).rpartition(":")
        with httpx.Client(timeout=60) as client:
            registrations = [_registration(code, n) for n, code in enumerate(codes)]
            for first in range(0, len(registrations), 1000):
                assert client.post(f"{url}/events", content=orjson.dumps(registrations[first:first + 1000]),
                                   headers=BATCHED).status_code == 200

        stats = benchmark.pedantic(lambda: uvloop.run(_load(url, (host, int(port)), codes, mns)), rounds=1, iterations=1)
        with httpx.Client(timeout=60) as client:
            health = client.get(f"{url}/health").json()
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(120)
    assert code == 0, log.read_text()
    # the baseline, in the same run: the same kind of batches through an Engine in this process,
    # one event at a time, no HTTP, no store (what the service's numbers are a share of)
    engine = Engine()
    for registration in registrations:
        engine.process(registration)
    lines = [line for body in (Readings(codes, seed=99).body() for _ in range(200))
             for line in map(orjson.dumps, orjson.loads(body))]
    began = time.perf_counter()
    for number, line in enumerate(lines, start=1):
        engine.process_line(line, number)
    baseline = len(lines) / (time.perf_counter() - began)
    http_rate = stats["http_events"] / SECONDS
    hj212_rate = stats["hj212_events"] / SECONDS
    figures = {
        "stations": STATIONS, "seconds": SECONDS, "batch": BATCH, "senders": SENDERS, "rate": RATE,
        "hour_seconds": HOUR_SECONDS,
        "http_events_per_s": round(http_rate), "http_p50_ms": round(_percentile(stats["http_latency"], 0.5) * 1000, 1),
        "http_p99_ms": round(_percentile(stats["http_latency"], 0.99) * 1000, 1),
        "hj212_events_per_s": round(hj212_rate), "hj212_p50_ms": round(_percentile(stats["hj212_latency"], 0.5) * 1000, 1),
        "hj212_p99_ms": round(_percentile(stats["hj212_latency"], 0.99) * 1000, 1),
        "total_events_per_s": round(http_rate + hj212_rate), "http_errors": stats["http_errors"],
        "baseline_engine_process_line_per_s": round(baseline),
        "total_vs_baseline": round((http_rate + hj212_rate) / baseline, 2),
        "store_events": health["store"]["events"], "records": health["store"]["records"],
        "last_checkpoint_at_event": health["store"]["checkpoint"],
        "last_checkpoint_seconds": health["store"]["checkpoint_seconds"],
    }
    benchmark.extra_info.update(figures)
    with capsys.disabled():
        print("\nrectify serve under load: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    assert stats["http_events"] > 0 and stats["hj212_events"] > 0 and stats["http_errors"] == 0
