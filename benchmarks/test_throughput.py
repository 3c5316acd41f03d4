"""Throughput of the same log through four paths, measured in one run, and the ratios.

(a) durable_rules alone: the rule set's reading rules compiled to one durable_rules
    ruleset, each event posted one at a time (what a user of durable_rules alone gets);
(b) Engine.process, per event (orjson per line, then process);
(c) the batch path, Engine.run_batch, end to end from the JSONL file: in one process, and
    with chunks sorted in 1 and in 2 forked processes (`--jobs 1`, `--jobs 2`);
(d) the floor: reading the file and orjson.loads per line, no validation, no rules.

Tests are named so that pytest runs them in this order; the last prints the table.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from engine import Engine
from engine.decide.rete import SafeHost
from engine.judge import READING_TYPES, Rule
from engine.ingest import JsonlFiles


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _record(results, name: str, events: int, seconds: float) -> None:
    results[name] = {"events": events, "seconds": seconds, "events_per_s": events / seconds}


def _durable_condition(rule: Rule) -> dict | None:
    """A reading rule as a durable_rules condition on the posted data (no corrections)."""
    if rule.type not in READING_TYPES:
        return None
    parts: list[dict] = [{"type": rule.type}]
    for field, values in (("pollutant", rule.pollutants), ("process", rule.processes),
                          ("point", rule.points), ("destination", rule.destinations)):
        if values:
            options = [{field: v} for v in sorted(values)]
            parts.append(options[0] if len(options) == 1 else {"$or": options})
    text = rule.condition_text.replace(" ", "")
    if text == "judged>limit" and rule.limit and "value" in rule.limit:
        parts.append({"$gt": {"value": float(rule.limit["value"])}})
    elif text in ("judged<loworjudged>high",) and rule.limit:
        parts.append({"$or": [{"$lt": {"value": float(rule.limit["min"])}}, {"$gt": {"value": float(rule.limit["max"])}}]})
    else:
        return None
    return {"$and": parts}


def test_a_durable_rules_alone(benchmark, million_log, results):
    engine = Engine()
    hits: list[int] = []
    definition = {}
    for index, rule in enumerate(engine.rules):
        condition = _durable_condition(rule)
        if condition is not None:
            definition[f"r{index:03d}"] = {"all": [{"m": condition}], "run": lambda c: hits.append(1)}
    host = SafeHost(drain_every_post=False)
    host.register("alone", definition, numeric_fields=("value",))

    def run() -> int:
        count = 0
        with million_log.open("rb") as handle:
            for line in handle:
                event = orjson.loads(line)
                message = {"id": event["id"], "sid": "0", "type": event["type"], **event["data"]}
                message.pop("attributes", None), message.pop("production", None), message.pop("output", None)
                message.pop("permits", None), message.pop("violations", None)
                host.post("alone", message)
                count += 1
        return count

    started = time.perf_counter()
    count = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(results, "a_durable_rules_alone", count, time.perf_counter() - started)
    results["a_durable_rules_alone"]["rules"] = len(definition)
    assert hits, "durable_rules alone found no exceedance at all: the translation is broken"


def test_b_engine_process_per_event(benchmark, million_log, results):
    engine = Engine()

    def run() -> int:
        count = 0
        with million_log.open("rb") as handle:
            for line in handle:
                engine.process(orjson.loads(line))
                count += 1
        engine.flush()
        return count

    started = time.perf_counter()
    count = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(results, "b_engine_process", count, time.perf_counter() - started)


def _batch(benchmark, million_log, results, name: str, workers: int) -> Engine:
    engine = Engine()

    def run() -> int:
        for _ in engine.run_batch(JsonlFiles([million_log]), workers=workers):
            pass
        return engine.summary.read

    started = time.perf_counter()
    count = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(results, name, count, time.perf_counter() - started)
    results[name]["quiet_share"] = engine.lane_stats["quiet"] / max(1, count)
    assert engine.summary.balanced() and engine.summary.quarantined == 0
    return engine


def test_c_batch_path(benchmark, million_log, results):
    """The batch path in one process (what an embedder gets from Engine.run_batch by default)."""
    _batch(benchmark, million_log, results, "c_batch_path", workers=0)


def test_c_batch_path_1_job(benchmark, million_log, results):
    """The batch path with chunks sorted in 1 forked process (`rectify run --jobs 1`)."""
    _batch(benchmark, million_log, results, "c_batch_path_1_job", workers=1)


def test_c_batch_path_2_jobs(benchmark, million_log, results):
    """The batch path with chunks sorted in 2 forked processes (`rectify run --jobs 2`)."""
    _batch(benchmark, million_log, results, "c_batch_path_2_jobs", workers=2)


def test_d_floor_orjson_parse(benchmark, million_log, results):
    def run() -> int:
        count = 0
        with million_log.open("rb") as handle:
            for line in handle:
                orjson.loads(line)
                count += 1
        return count

    started = time.perf_counter()
    count = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(results, "d_floor_orjson", count, time.perf_counter() - started)


def test_z_ratios(benchmark, results, capsys):
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    rate = {name: r["events_per_s"] for name, r in results.items()}
    lines = ["", "throughput (events/s), one run, same log:"]
    for name in sorted(rate):
        lines.append(f"  {name:<24}{rate[name]:>14,.0f}   ({results[name]['events']:,} events, {results[name]['seconds']:.1f} s)")
    for c_name in ("c_batch_path", "c_batch_path_1_job", "c_batch_path_2_jobs"):
        if {"a_durable_rules_alone", "b_engine_process", c_name, "d_floor_orjson"} <= set(rate):
            c = rate[c_name]
            lines.append(f"  {c_name}: c/a = {c / rate['a_durable_rules_alone']:.2f}   c/b = {c / rate['b_engine_process']:.2f}   "
                         f"c/d = {c / rate['d_floor_orjson']:.3f}   (quiet share {results[c_name]['quiet_share']:.1%})")
    with capsys.disabled():
        print("\n".join(lines))
