"""Where the batch path spends its time: µs per event for each stage, on the same log.

Run with `pytest benchmarks/test_stages.py --benchmark-only -s`. Uses the first 300,000
lines of the benchmark log, in 256-line chunks as the batch path reads them. Each stage is
timed on its own, best of three:
- parse: orjson per line;
- sort: shape plans, gates, event times and digests (engine/fast/lane.py);
- of which digests: the sorted-key XXH3-64 content digest alone;
- apply: id exclusion, bulk commits and the exact path, on a fresh engine.
"""

from __future__ import annotations

import time
from itertools import islice

from engine import Engine, JsonlFiles
from engine.fast import FastLane, parse_lines
from engine.normalise import content_digests

LINES = 300_000


def _best(function, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def test_stages(benchmark, million_log, capsys):
    chunks = list(islice(JsonlFiles([million_log]).chunks(256), LINES // 256))
    events = sum(len(texts) for _, _, texts in chunks)
    lane = FastLane(Engine())

    def parse() -> None:
        for _, _, texts in chunks:
            parse_lines(texts)

    def sort() -> None:
        for _, _, texts in chunks:
            lane.sort(parse_lines(texts))

    def digests() -> None:
        for _, _, texts in chunks:
            content_digests(parse_lines(texts))

    def run() -> dict[str, float]:
        seconds = {"parse": _best(parse), "parse+sort": _best(sort), "parse+digests": _best(digests)}
        parsed = [parse_lines(texts) for _, _, texts in chunks]
        sortings = [lane.sort(chunk_events) for chunk_events in parsed]
        engine = Engine()
        applier = FastLane(engine)
        started = time.perf_counter()
        for (source, first, texts), chunk_events, sorting in zip(chunks, parsed, sortings):
            for _ in applier.apply(sorting, chunk_events, texts, source, first):
                pass
        seconds["apply (with the exact path)"] = time.perf_counter() - started
        seconds["exact share"] = engine.lane_stats["exact"] / events
        return seconds

    seconds = benchmark.pedantic(run, rounds=1, iterations=1)
    us = {name: value / events * 1e6 for name, value in seconds.items() if name != "exact share"}
    with capsys.disabled():
        print(f"\nbatch path stages, µs per event over {events:,} events (best of 3):")
        print(f"  parse                          {us['parse']:.2f}")
        print(f"  sort                           {us['parse+sort'] - us['parse']:.2f}")
        print(f"    of which digests             {us['parse+digests'] - us['parse']:.2f}")
        print(f"  apply (incl. the exact path)   {us['apply (with the exact path)']:.2f}"
              f"   (exact share {seconds['exact share']:.1%})")
