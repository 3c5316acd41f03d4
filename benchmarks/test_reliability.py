"""The guards of issue 15 measured, each against a baseline in the same run (README "Reliability").

Run with `pytest benchmarks/test_reliability.py --benchmark-only -s` (about a minute; it does
not need the million-event log). Prints one table; every figure is best of 3 where timed.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import threading
import time
from pathlib import Path

import orjson
from timing import best

from engine import Engine
from engine.devtools.demo import generate_city
from engine.ingest.hj212 import Registry
from engine.ingest.hj212.listener import Hj212Listener, ListenerLimits
from engine.ingest.hj212.protocol import build_packet, crc16_hj212
from engine.ingest.jsonl import may_repeat_keys
from engine.judge.expressions import ExpressionError, compile_expression
from engine.normalise import canonical_json
from engine.plugins import RulePackSource
from engine.validate import make_uscc
from engine.validate.yamlsafe import YamlError, load_yaml

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _refused(function, *args) -> float:
    def attempt() -> None:
        try:
            function(*args)
        except (YamlError, ExpressionError):
            return
        raise AssertionError("not refused")
    return best(attempt)


def _bomb() -> str:
    lines = ["bomb:", '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        name, prev = chr(97 + i), chr(96 + i)
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _rss_mb() -> float:
    """The process's resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _crc_bits(data: bytes) -> int:  # the bit loop the table replaced
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ byte
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
    return reg


def _split_flood(limits: ListenerLimits) -> tuple[int, int, float]:
    """1,200 parts of ~9.9 KB, PNUM 100, each a packet of its own, on one loopback connection:
    (bytes sent, bytes held at the end, growth of the process's resident memory in MB)."""
    sys.path.insert(0, str(TESTS))
    from test_hj212_listener import MN, PW, REGISTRY

    items = ";".join(f"a{n:05d}-Avg=1.0,a{n:05d}-Flag=N" for n in range(10_000, 10_336))
    parts = [build_packet(f"QN=2024030111{n:07d};ST=31;CN=2061;PW={PW};MN={MN};Flag=6;PNUM=100;PNO=1;"
                          f"CP=&&DataTime=20240301110000;{items}&&") for n in range(1200)]
    loop = asyncio.new_event_loop()
    listener = Hj212Listener(Registry.load(REGISTRY), lambda record: None, "127.0.0.1", 0, limits)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host, port = asyncio.run_coroutine_threadsafe(listener.start(), loop).result(5)
    import socket

    before = _rss_mb()
    with socket.create_connection((host, port)) as client:
        for part in parts:
            client.sendall(part)
        client.sendall(build_packet(f"QN=20240301120000000;ST=31;CN=2061;PW={PW};MN={MN};Flag=5;"
                                    "CP=&&DataTime=20240301120000;a34013-Avg=1,a34013-Flag=N&&"))
        client.recv(1024)
    grown = _rss_mb() - before
    held = listener.held_split_bytes
    asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    return sum(map(len, parts)), held, grown


def test_reliability_figures(benchmark, capsys):
    def run() -> list[tuple[str, str]]:
        rows = []
        city = generate_city(enterprises=3000, days=2, seed=2024).events
        lines = [orjson.dumps(e) for e in city[:100_000]]
        parsed = [orjson.loads(line) for line in lines]
        canonical = [canonical_json(e) for e in parsed]
        parse = best(lambda: [orjson.loads(line) for line in lines])
        screen = best(lambda: [may_repeat_keys(r, c) for r, c in zip(lines, canonical)])
        suspects = sum(may_repeat_keys(r, c) for r, c in zip(lines, canonical))
        from engine.fast import FastLane, parse_lines

        lane = FastLane(Engine())
        chunks = [lines[i:i + 256] for i in range(0, len(lines), 256)]
        with_screen = best(lambda: [lane.sort(parse_lines(c), c) for c in chunks])
        without = best(lambda: [lane.sort(parse_lines(c)) for c in chunks])
        rows.append(("batch path parse+sort per line, with the repeated-key screen",
                     f"{with_screen / len(lines) * 1e6:.2f} µs vs {without / len(lines) * 1e6:.2f} µs without "
                     f"({with_screen / without:.3f}x)"))
        rows.append(("repeated-key screen, per line (100,000 demo lines)",
                     f"{screen / len(lines) * 1e6:.2f} µs = {screen / parse:.2f}x orjson.loads ({parse / len(lines) * 1e6:.2f} µs); "
                     f"{suspects} lines needed the exact check"))

        pack = RulePackSource.from_package("foundry", "plugins.foundry", "rules.yaml")
        load_pack = best(lambda: load_yaml(pack.text, pack.origin))
        bomb = _refused(load_yaml, _bomb(), "params.yaml")
        digits = _refused(load_yaml, "foundry:\n  x: " + "9" * 5000 + "\n", "params.yaml")
        rows.append(("YAML alias bomb (10^9 nodes expanded) refused", f"{bomb * 1e3:.2f} ms = {bomb / load_pack:.3f}x loading the foundry pack ({load_pack * 1e3:.1f} ms)"))
        rows.append(("YAML 5,000-digit integer refused", f"{digits * 1e3:.2f} ms = {digits / load_pack:.3f}x the foundry pack"))

        roots = frozenset({"judged", "limit", "x"})
        plain = best(lambda: compile_expression("judged > limit", roots))
        parens = _refused(compile_expression, "(" * 300 + "x" + ")" * 300 + " > 0", roots)
        terms = _refused(compile_expression, " + ".join(["x"] * 100_000) + " > 0", roots)
        rows.append(("expression, 300 nested parentheses refused", f"{parens * 1e3:.3f} ms = {parens / plain:.1f}x compiling `judged > limit` ({plain * 1e6:.0f} µs)"))
        rows.append(("expression, 100,000 terms refused", f"{terms * 1e3:.3f} ms = {terms / plain:.1f}x compiling `judged > limit`"))

        segment = bytes(range(256)) * 39
        table, bits = best(lambda: crc16_hj212(segment)), best(lambda: _crc_bits(segment))
        rows.append(("HJ 212 CRC of a 9,984-byte segment", f"{table * 1e3:.2f} ms, the bit loop {bits * 1e3:.2f} ms ({bits / table:.0f}x)"))

        limits = ListenerLimits(idle_timeout=30.0)
        loose = ListenerLimits(idle_timeout=30.0, max_pending_split=100_000, max_split_parts=10_000,
                               max_split_packet_bytes=1 << 40, max_split_bytes=1 << 40)  # main's bounds: count only
        for name, bounds in (("default bounds", limits), ("bounds off", loose)):
            sent, held, grown = _split_flood(bounds)
            rows.append((f"HJ 212 split parts never completed (1,200 x 9.9 KB), {name}",
                         f"held {held / 2**20:.2f} MiB of {sent / 2**20:.1f} MiB sent ({held / sent:.1%}), "
                         f"resident memory +{grown:.0f} MB"))

        hostile = {"specversion": "1.0", "id": "hostile-1", "source": "inspection-app", "type": "inspection.recorded",
                   "subject": make_uscc("91330200MA2HX0000"), "time": "2999-01-01T00:00:00+08:00",
                   "data": {"result": "fail", "violations": ["stack"]}}
        clean, attacked = Engine(), Engine()
        list(clean.run_batch(city))
        list(attacked.run_batch(city[: len(city) // 2] + [hostile] + city[len(city) // 2:]))
        off = Engine(clock_lead_days=None)
        list(off.run_batch(city[: len(city) // 2] + [hostile] + city[len(city) // 2:]))
        for name, engine in (("clean demo log", clean), ("with one event dated 2999", attacked), ("the same, guard off", off)):
            s = engine.summary.to_dict()
            proposed = sum(v for k, v in s["decisions"].items() if k.endswith("(proposed)"))  # closures, land remedies
            rows.append((f"clock guard: {name}", f"escalated to proposals {proposed}, "
                                                 f"open orders {s['open_orders']}, clock_held {s['clock_held']}"))

        part = city[:40_000]
        timings = {}
        for backend in ("compiled", "rete"):
            started = time.perf_counter()
            engine = Engine(backend=backend)
            list(engine.run(part))
            timings[backend] = (time.perf_counter() - started, engine)
        rebuilds = timings["rete"][1].decisions.detector.host.rebuilds
        rows.append(("rete backend, first 40,000 demo events",
                     f"{timings['rete'][0]:.1f} s vs compiled {timings['compiled'][0]:.1f} s ({timings['rete'][0] / timings['compiled'][0]:.1f}x), "
                     f"{rebuilds} sid rebuilds"))
        return rows

    rows = benchmark.pedantic(run, rounds=1, iterations=1)
    with capsys.disabled():
        print("\nreliability figures (issue 15):")
        for name, value in rows:
            print(f"  {name:58} {value}")
