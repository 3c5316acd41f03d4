"""The fast lane of the batch path: the per-event path's output and state, on adversarial logs.

Every test compares `Engine.run` (one event at a time, the reference) with
`Engine.run_batch` (shape plans, threshold gates, bulk commits) record for record, summary
for summary, and remembered id for remembered id; and checks that the fast lane did take
events in bulk, so a comparison cannot pass by sending everything down the exact path.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine, Finding, InputLine, load_plugins
from engine.devtools.demo import generate_city
from engine.fast import FastLane
from engine.fast.lane import EXACT
from engine.fast.shapes import plan_shape
from engine.ingest import JsonlFiles
from engine.judge import Gate, Rule

PLUGINS = load_plugins()
CITY = generate_city(enterprises=40, days=1, seed=11)
REGISTRATIONS = [e for e in CITY.events if e["type"] in ("enterprise.registered", "equipment.declared")]
READINGS = [e for e in CITY.events if e["type"] in ("emission.measured", "discharge.measured")]
REFERENCE = Engine(plugins=PLUGINS)
JUDGE = Engine(plugins=PLUGINS)  # knows the enterprises, so industry-specific rules judge
list(JUDGE.run(REGISTRATIONS))


def run_both(lines: list[bytes], batch_size: int, backend: str = "compiled", as_of: str | None = None) -> tuple[Engine, Engine]:
    """Both paths over the same lines; asserts identical records, summaries and remembered ids."""
    inputs = [InputLine("log.jsonl", n, text) for n, text in enumerate(lines, start=1)]
    per_event, batch = Engine(plugins=PLUGINS, backend=backend), Engine(plugins=PLUGINS, backend=backend)
    a = [orjson.dumps(r.to_dict()) for r in per_event.run(inputs, as_of=as_of)]
    b = [orjson.dumps(r.to_dict()) for r in batch.run_batch(inputs, as_of=as_of, batch_size=batch_size)]
    assert len(a) == len(b)
    for left, right in zip(a, b):
        assert left == right
    assert per_event.summary.to_dict() == batch.summary.to_dict()
    assert per_event.dedupe.state() == batch.dedupe.state()
    assert per_event.decisions.clock == batch.decisions.clock
    assert per_event.summary.balanced()
    return per_event, batch


def limits_of(event: dict[str, Any]) -> list[float]:
    """The raw values at which the event's rules change their verdict (in the event's unit)."""
    data = event["data"]
    rules = REFERENCE.judge.index.for_reading(event["type"], data["pollutant"], data.get("process"), data.get("point"),
                                         data.get("destination"), data["period"])
    scale = 1000.0 if data["unit"].startswith("ug/") else 1.0
    return [bound * scale for r in rules if r.threshold for bound in r.threshold[1:]]


def near(limit: float) -> list[float]:
    return [limit, math.nextafter(limit, math.inf), math.nextafter(limit, -math.inf), limit + 1e-10, limit - 1e-10,
            limit * (1 + 1e-12), round(limit) if abs(limit) < 1e15 else limit, limit + 0.5]


MUTATIONS = ["value", "value", "value", "o2", "unit", "flag", "drop", "extra_envelope", "bad_envelope", "extra_data",
             "value_type", "subject", "time", "keys_order", "big_int", "negative", "id_length"]


def mutate(event: dict[str, Any], kind: str, rng: random.Random) -> dict[str, Any]:
    event = orjson.loads(orjson.dumps(event))
    data = event["data"]
    if kind == "value":
        candidates = [x for limit in limits_of(event) for x in near(limit)] or [1.0]
        data["value"] = rng.choice(candidates)
    elif kind == "o2" and event["type"] == "emission.measured":
        data["o2_percent"] = rng.choice([0, 5.5, 15, 20.999, 21, -1, "7"])
        data["value"] = rng.choice([x for limit in limits_of(event) for x in near(limit)] or [1.0])
    elif kind == "unit":
        data["unit"] = rng.choice(["ug/m3", "mg/L", "ug/L", "mg/m3", "kg"])
    elif kind == "flag":
        data["flag"] = rng.choice(["F", "M", "D", "N", "X", 1])
    elif kind == "drop":
        data.pop(rng.choice(sorted(data)))
    elif kind == "extra_envelope":
        event["traceparent"] = rng.choice(["00-abc", {"nested": [1]}, 7])
    elif kind == "bad_envelope":
        event["Trace-Parent"] = "x"
    elif kind == "extra_data":
        data["comment"] = "hello"
    elif kind == "value_type":
        data["value"] = rng.choice(["12.5", None, True, [1], {"v": 1}])
    elif kind == "subject":
        event["subject"] = event["subject"][:-1] + ("0" if event["subject"][-1] != "0" else "1")
    elif kind == "time":
        event["time"] = rng.choice(["2024-03-04T25:00:00+08:00", "2024-03-04 10:00:00", "2026-03-04T10:00:00Z"])
    elif kind == "keys_order":
        event = dict(reversed(list(event.items())))
        event["data"] = dict(reversed(list(data.items())))
    elif kind == "big_int":
        data["value"] = rng.choice([2**53, 2**53 + 1, 2**63, -(2**64), 10**30])
    elif kind == "id_length":
        event["id"] = rng.choice(["", "x" * 201, "y" * 200, 7])
    elif kind == "negative":
        data["value"] = rng.choice([-1, -0.0, -1e-300, -1e6])
    return event


def encode(event: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(event)
    except TypeError:  # integers beyond 64 bits: orjson will not write them, json will
        return json.dumps(event).encode()


def adversarial_log(seed: int, size: int) -> list[bytes]:
    """Registrations, then readings mutated, repeated, re-ordered and moved in time."""
    rng = random.Random(seed)
    lines = [orjson.dumps(e) for e in REGISTRATIONS]
    emitted: list[dict[str, Any]] = []
    for n in range(size):
        event = orjson.loads(orjson.dumps(rng.choice(READINGS)))
        event["id"] = f"adv-{seed}-{n}"
        roll = rng.random()
        if roll < 0.35:
            event = mutate(event, rng.choice(MUTATIONS), rng)
        elif roll < 0.42 and emitted:  # a duplicate, a re-ordered duplicate, or a conflict
            event = copy.deepcopy(rng.choice(emitted))
            choice = rng.random()
            if choice < 0.3:
                event = dict(reversed(list(event.items())))
            elif choice < 0.6 and isinstance(event.get("data"), dict):
                event["data"]["value"] = 12345.0
        elif roll < 0.47:  # far later (deadlines, the dedupe horizon) or earlier
            day = rng.choice([2, 9, 40, 95, 200, 400])
            event["time"] = f"2024-{1 + day // 31 % 12:02d}-{1 + day % 28:02d}T10:00:00+08:00" if day < 360 else "2025-06-01T10:00:00+08:00"
        elif roll < 0.5:
            lines.append(b"{broken")
            continue
        emitted.append(event)
        lines.append(encode(event))
    return lines


def test_demo_log_identical_with_most_events_in_bulk():
    lines = [orjson.dumps(e) for e in CITY.events]
    _, batch = run_both(lines, batch_size=256)
    assert batch.lane_stats["quiet"] > 0.8 * len(lines)
    assert batch.summary.findings  # exceedances were found, on the exact path


@pytest.mark.parametrize("backend", ["compiled", "rete"])
@pytest.mark.parametrize("seed,batch_size", [(1, 1), (2, 7), (3, 64), (4, 256), (5, 4096)])
def test_adversarial_logs_identical(seed, batch_size, backend):
    _, batch = run_both(adversarial_log(seed, 1500), batch_size, backend)
    assert batch.lane_stats["quiet"] > 300 and batch.lane_stats["exact"] > 300
    assert batch.summary.duplicate and batch.summary.quarantined and batch.summary.unavailable


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 300), st.sampled_from([1, 5, 32, 256]))
def test_generated_adversarial_logs_identical(seed, size, batch_size):
    run_both(adversarial_log(seed, size), batch_size)


def reading(time: str, value: float, subject: str, n: int) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": f"q-{n}", "source": "cems", "type": "emission.measured",
                         "subject": subject, "time": time,
                         "data": {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013", "value": value,
                                  "unit": "mg/m3", "period": "hour", "flag": "N"}})


def test_an_order_falling_due_inside_a_quiet_run_escalates_at_its_place():
    subject = "91330200MA2AB1234Y"
    registration = {"specversion": "1.0", "id": "reg", "source": "registry", "type": "enterprise.registered",
                    "subject": subject, "time": "2024-01-01T08:00:00+08:00",
                    "data": {"name": "Test foundry", "industry": "foundry", "district": "Beilun", "in_park": True,
                             "eia_approved_on": "2010-01-01", "permits": {"emission_permit": True}, "scale": "above"}}
    from datetime import date, timedelta

    from engine.validate import make_uscc

    other = make_uscc("91330200MA2CD5678")
    lines = [orjson.dumps(registration), orjson.dumps({**registration, "id": "reg-2", "subject": other})]
    lines += [reading(f"2024-03-0{d}T10:00:00+08:00", 45, subject, d) for d in (1, 5, 9)]  # three exceedances: an order
    for day in range(40):  # quiet daily readings of two enterprises across the deadline (06-07); the first day's
        when = (date(2024, 5, 20) + timedelta(days=day)).isoformat()  # jump is corroborated by the second firm
        lines += [reading(f"{when}T10:00:00+08:00", 3, s, 100 + 2 * day + n) for n, s in enumerate((other, subject))]
    per_event, batch = run_both(lines, batch_size=4096)
    closures = [line for line in (orjson.dumps(r.to_dict()) for r in Engine(plugins=PLUGINS).run(lines)) if b"close_by_law" in line]
    assert len(closures) == 1 and batch.lane_stats["quiet"] >= 2


def test_bulk_reading_from_files_matches_line_by_line(tmp_path):
    lines = adversarial_log(9, 800)
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(lines))  # no newline at the end: the last line still counts
    per_event, batch = Engine(plugins=PLUGINS), Engine(plugins=PLUGINS)
    from engine.ingest import read_jsonl

    a = [orjson.dumps(r.to_dict()) for r in per_event.run(read_jsonl([path]))]
    files = JsonlFiles([path], block_bytes=1000)  # blocks end inside lines
    b = [orjson.dumps(r.to_dict()) for r in batch.run_batch(files, batch_size=50)]
    assert a == b and per_event.summary.to_dict() == batch.summary.to_dict()
    assert [line.text for line in files] == [line.text for line in read_jsonl([path])]


def test_lines_that_only_parse_together_are_each_quarantined():
    good = [orjson.dumps(e) for e in REGISTRATIONS[:2]]
    lines = good[:1] + [b'{"a":1},{"b":2}', b'{"x":"}', b'{"}', b'{"c":[{}', b'{}]}'] + good[1:]
    per_event, batch = run_both(lines, batch_size=16)
    assert batch.summary.quarantined == 5


def shape_of(event: dict[str, Any]) -> dict[str, Any]:
    shape: dict[str, Any] = {key: None for key in event}
    if isinstance(event.get("data"), dict):
        shape["data"] = {key: None for key in event["data"]}
    return shape


def test_a_shape_plan_never_accepts_what_the_validator_rejects():
    rng = random.Random(3)
    accepted = rejected_by_both = 0
    for n in range(3000):
        event = rng.choice(READINGS)
        if rng.random() < 0.7:
            event = mutate(event, rng.choice(MUTATIONS), rng)
        if not isinstance(event.get("data"), dict):
            continue
        plan = plan_shape(REFERENCE.validator.schemas[event["type"]], shape_of(event), REFERENCE.validator.compile_leaf)
        if plan is None:
            continue
        columns = {c.path: [event[c.path[0]] if len(c.path) == 1 else event["data"][c.path[1]]] for c in plan.checks}
        verdict = judged_alike(plan, columns, event)
        accepted += verdict == "accepted"
        rejected_by_both += verdict == "rejected"
    assert accepted > 1000 and rejected_by_both > 100


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(READINGS), st.floats(-1e6, 1e9, allow_nan=False), st.one_of(st.none(), st.floats(0, 20.99)))
def test_a_gate_lets_through_only_readings_no_rule_fires_on(event, value, o2):
    lane = FastLane(REFERENCE)
    data = dict(event["data"], value=value)
    if o2 is not None and event["type"] == "emission.measured":
        data["o2_percent"] = o2
    candidate = dict(event, data=data)
    key = tuple(data.get(f, "N" if f == "flag" else None) for f in ("pollutant", "unit", "process", "point", "destination", "period", "flag"))
    gate = lane._gate(event["type"], key, "o2_percent" in data)
    if isinstance(gate, int):
        return
    inside = gate.low <= value <= gate.high and (gate.o2_free is None or value * gate.o2_free / (21.0 - data["o2_percent"]) <= gate.o2_high)
    findings = JUDGE.judge.reading(_reading(candidate), data["period"])
    if inside:
        assert not findings
    assert gate.fires(value, data.get("o2_percent")) or not findings
    assert gate.fires(value, data.get("o2_percent"), data, candidate["time"][:10]) or not findings  # told the date


def _sure_cuts() -> list[tuple[Any, Any, dict[str, Any]]]:
    """(gate, threshold, event) for each rule of the demo's reading groups with a finite `sure` cut."""
    lane, found, seen = FastLane(REFERENCE), [], set()
    for event in READINGS:
        data = event["data"]
        key = tuple(data.get(f, "N" if f == "flag" else None) for f in ("pollutant", "unit", "process", "point", "destination", "period", "flag"))
        if (event["type"], key, "o2_percent" in data) in seen:
            continue
        seen.add((event["type"], key, "o2_percent" in data))
        gate = lane._gate(event["type"], key, "o2_percent" in data)
        if not isinstance(gate, int):
            found.extend((gate, threshold, event) for threshold in gate.rules if math.isfinite(threshold.sure))
    return found


SURE = _sure_cuts()


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(range(len(SURE))), st.one_of(st.integers(-64, 64), st.floats(-0.5, 1e3)),
       st.one_of(st.none(), st.floats(0, 20.99)))
def test_a_threshold_s_sure_cut_never_changes_its_answer(n, offset, o2):
    """engine/judge/thresholds.py `_Threshold.sure`: what `fires` answers with it is what it
    answers with the conversions and the rounding made in full, on either side of the cut (a
    raw value, or at the reference O2), and the judge finds what it says."""
    from dataclasses import replace

    gate, threshold, event = SURE[n]
    day = event["time"][:10]
    if threshold.o2_free is None:
        o2 = event["data"].get("o2_percent")
        value = threshold.sure
    else:
        o2 = event["data"]["o2_percent"] if o2 is None else o2
        value = threshold.sure * (21.0 - o2) / threshold.o2_free  # at the cut, at the reference O2
    if isinstance(offset, int):
        for _ in range(abs(offset)):
            value = math.nextafter(value, math.inf if offset > 0 else -math.inf)
    else:
        value = value + abs(value) * offset
    data = dict(event["data"], value=value)
    if o2 is not None:
        data["o2_percent"] = o2
    whole = replace(threshold, sure=math.inf)  # no shortcut
    fires = threshold.fires(value, o2, gate.pollutant, gate.unit, data, day)
    assert fires == whole.fires(value, o2, gate.pollutant, gate.unit, data, day)
    if fires and threshold.rule.industries is None and threshold.rule.threshold is not None:
        found = JUDGE.judge.reading(_reading(dict(event, data=data)), data["period"])
        assert any(type(f) is Finding and f.rule == threshold.rule.id for f in found)


def test_sure_cuts_exist_and_lie_above_the_quiet_cut():
    assert len({threshold.rule.id for _, threshold, _ in SURE}) > 10
    assert any(threshold.o2_free is not None for _, threshold, _ in SURE)
    assert all(threshold.sure > (gate.high if threshold.o2_free is None else gate.o2_high) for gate, threshold, _ in SURE)


def _reading(event: dict[str, Any]):
    from engine.normalise import reading_from_event

    return reading_from_event(event)


@pytest.mark.parametrize("workers", [1, 2])
def test_sorting_in_worker_processes_gives_the_same_output(workers, tmp_path):
    from engine.ingest import read_jsonl

    lines = adversarial_log(21, 1200) + [orjson.dumps(e) for e in CITY.events[:300]]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"\n".join(lines[:700]) + b"\n")
    second.write_bytes(b"\n".join(lines[700:]))
    per_event, batch = Engine(plugins=PLUGINS), Engine(plugins=PLUGINS)
    a = [orjson.dumps(r.to_dict()) for r in per_event.run(read_jsonl([first, second]))]
    b = [orjson.dumps(r.to_dict()) for r in batch.run_batch(JsonlFiles([first, second]), batch_size=64, workers=workers)]
    assert a == b and per_event.summary.to_dict() == batch.summary.to_dict()
    assert per_event.dedupe.state() == batch.dedupe.state()
    assert batch.lane_stats["quiet"] > 300


def test_a_sorting_survives_the_pipe_unchanged():
    """What a worker sends (a `Sorting`, pickled in its compact form) is what it sorted: same
    values and types, the 64-bit digests and event times exact; a value JSON cannot carry (a lone
    surrogate in an id) falls back to pickle's own form."""
    import pickle

    from engine.fast.lane import Sorting, parse_lines

    lines = adversarial_log(5, 600) + [orjson.dumps(e) for e in CITY.events[:600]]
    lane = FastLane(Engine(plugins=PLUGINS))
    sortings = [lane.sort(parse_lines(lines[i:i + 256]), lines[i:i + 256], defer=True) for i in range(0, len(lines), 256)]
    assert any(kind != EXACT for sorting in sortings for kind in sorting.lane)  # quiet lines: ids, digests, times
    for sorting in sortings:
        back = pickle.loads(pickle.dumps(sorting))
        assert back == sorting
        assert [type(v) for v in back.digests] == [type(v) for v in sorting.digests]
        assert [type(v) for v in back.valid] == [type(v) for v in sorting.valid]
    odd = Sorting([1, 0], ["\ud800", None], ["E1", None], [1.5e9, 0.0], [2**64 - 1, None], [True, False],
                  {0: frozenset({"dyeing"})})
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(odd.ids)
    assert pickle.loads(pickle.dumps(odd)) == odd


def test_stopping_early_leaves_no_worker_processes(tmp_path):
    import multiprocessing

    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in CITY.events))
    records = Engine(plugins=PLUGINS).run_batch(JsonlFiles([path]), batch_size=16, workers=2)
    assert next(records) is not None
    records.close()
    assert not multiprocessing.active_children()


def test_sorting_processes_end_when_the_engine_s_process_is_killed(tmp_path):
    """The engine's process killed (SIGKILL) with sortings unread: each sorting process's next
    send fails (no process of its own holds a reading end) and it ends, instead of waiting forever."""
    import time

    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in CITY.events * 6))  # sortings of ~10 kB: more than a pipe holds
    script = ("import multiprocessing, sys, time\n"
              "from engine import Engine, load_plugins\n"
              "from engine.ingest import JsonlFiles\n"
              "records = Engine(plugins=load_plugins()).run_batch(JsonlFiles([sys.argv[1]]), workers=2)\n"
              "next(records)\n"
              "print(' '.join(str(p.pid) for p in multiprocessing.active_children()), flush=True)\n"
              "time.sleep(120)\n")
    helpers, left = killed_midway(script, str(path), while_running=lambda: time.sleep(1))  # they fill their pipes
    assert len(helpers) == 2 and not left


def killed_midway(script: str, *args: str, while_running: Any = None) -> tuple[list[Any], list[Any]]:
    """Run the Python `script` with `args` in a process that prints the pids of its helper processes
    on one line; kill it (SIGKILL) once they are known (after `while_running()`), and wait up to 60 s
    for them to end. The helpers (psutil), and those still running."""
    import subprocess
    import sys
    import time

    import psutil

    process = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        helpers = [psutil.Process(int(pid)) for pid in process.stdout.readline().split()]
        if while_running is not None:
            while_running()
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(map(running, helpers)):
        time.sleep(0.1)
    return helpers, [helper for helper in helpers if running(helper)]


def running(process: Any) -> bool:
    """Whether a process (psutil) is running: not ended, not a zombie."""
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def judged_alike(plan: Any, columns: dict[Any, list[Any]], event: dict[str, Any]) -> str | None:
    """A shape plan's verdict on one event (its `columns`) against the per-event validator's: a plan
    may only say "valid" when the validator does (asserted). "accepted": both valid; "rejected": the
    plan sends it to the exact path and the validator finds a problem; None: sent, found valid."""
    problem = REFERENCE.validator.problem(event, from_json=True)
    if not plan.failing(columns):
        assert problem is None, (event, problem)
        return "accepted"
    return "rejected" if problem is not None else None


def registrations(prefix: str, **extra: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One registered enterprise per industry of the three plugins' rules, and one of "other"
    (codes from `prefix`; `extra` data fields for each): the events and the code of each industry."""
    from engine.validate import make_uscc

    events: list[dict[str, Any]] = []
    subjects: dict[str, str] = {}
    for n, industry in enumerate(sorted({i for r in REFERENCE.rules if r.industries for i in r.industries} | {"other"})):
        subjects[industry] = make_uscc(f"{prefix}{n:010d}")
        events.append({"specversion": "1.0", "id": f"reg-{industry}", "source": "t", "type": "enterprise.registered",
                       "subject": subjects[industry], "time": "2024-01-01T08:00:00+08:00",
                       "data": {"name": industry, "industry": industry, "district": "Beilun", "in_park": True,
                                "eia_approved_on": "2010-01-01", "permits": {"emission_permit": True}, "scale": "above",
                                **extra}})
    return events, subjects


def bound_events() -> tuple[list[dict[str, Any]], int]:
    """Registrations, then each reading rule of the three plugins fed values just around each of its
    bounds, in its own unit and in micrograms, with and without O2; and how many readings."""
    events, subjects = registrations("9133020")
    count = 0
    for rule in REFERENCE.rules:
        if rule.threshold is None or rule.type not in ("emission.measured", "discharge.measured"):
            continue
        subject = subjects[sorted(rule.industries)[0] if rule.industries else "other"]
        for pollutant in sorted(rule.pollutants or ["a34013"]):
            data: dict[str, Any] = {"outlet": "X1", "pollutant": pollutant, "period": min(rule.periods)}
            if rule.type == "emission.measured":
                data["process"] = sorted(rule.processes)[0] if rule.processes else "melting.electric"
            else:
                data["point"] = sorted(rule.points)[0] if rule.points else "plant"
                data["destination"] = sorted(rule.destinations)[0] if rule.destinations else "direct"
            micro = "ug/m3" if rule.unit == "mg/m3" else "ug/L" if rule.unit == "mg/L" else None
            for bound in rule.threshold[1:]:
                for value in near(float(bound)):
                    for unit, scale in [(rule.unit, 1.0)] + ([(micro, 1000.0)] if micro else []):
                        for o2 in ([None, 8.5] if rule.o2_reference else [None]):
                            count += 1
                            reading = dict(data, value=value * scale, unit=unit, flag="N")
                            if o2 is not None:
                                reading["o2_percent"] = o2
                            events.append({"specversion": "1.0", "id": f"b-{count}", "source": "t", "type": rule.type,
                                           "subject": subject, "time": f"2024-03-{1 + count % 27:02d}T10:00:00+08:00",
                                           "data": reading})
    return events, count


def test_every_threshold_rule_at_its_bounds_gives_the_per_event_output():
    """Each reading rule at its bounds (`bound_events`): the batch path finds exactly what the
    per-event path finds."""
    events, count = bound_events()
    per_event, batch = run_both([orjson.dumps(e) for e in events], batch_size=128)
    assert count > 500 and batch.lane_stats["quiet"] > 200 and sum(batch.summary.findings.values()) > 200


def dated_events() -> list[dict[str, Any]]:
    """Registrations of existing works (EIA 2010) and new ones (EIA 2020), then daily wastewater
    readings just above each dated rule's limit (e.g. GB 4287's Table 1 limits for existing works,
    in force 2013-2014 only), to each of its destinations, on the day before each of its windows,
    the first and last day, the day after, and in 2024, in local dates at +08:00 and UTC."""
    from datetime import date, datetime, timedelta
    from itertools import product

    events, existing = registrations("9133023")
    more, new = registrations("9133024", eia_approved_on="2020-06-01")
    events += [{**event, "id": event["id"] + "-new"} for event in more]
    for event in events:
        event["time"] = "2010-01-01T08:00:00+08:00"
    readings = []
    dated = [r for r in REFERENCE.rules if r.threshold is not None and r.windows and r.type == "discharge.measured"
             and r.threshold[0] == "gt" and r.periods and "day" in r.periods]
    assert len(dated) > 10
    for rule in dated:
        days = {"2024-03-05"}
        for window in rule.windows.values():
            for edge, shifts in ((window.start, (-1, 0)), (window.end, (0, 1))):
                if edge is not None:
                    days |= {(date.fromisoformat(edge) + timedelta(days=shift)).isoformat() for shift in shifts}
        for codes in (existing, new):
            subject = codes[min(rule.industries) if rule.industries else "other"]
            for when, destination, clock in product(sorted(days), sorted(rule.destinations or ["direct"]),
                                                    ("T00:30:00+08:00", "T23:30:00+00:00")):
                readings.append({"specversion": "1.0", "id": f"w-{len(readings)}", "source": "t",
                                 "type": "discharge.measured", "subject": subject, "time": when + clock,
                                 "data": {"outlet": "W1", "point": min(rule.points) if rule.points else "plant",
                                          "destination": destination, "pollutant": min(rule.pollutants),
                                          "value": rule.threshold[1] * 1.01, "unit": rule.unit, "period": "day",
                                          "flag": "N"}})
    readings.sort(key=lambda e: datetime.fromisoformat(e["time"]))
    return events + readings


def test_readings_on_the_edges_of_a_rule_s_dates_give_the_per_event_output():
    """A reading outside a gate's cuts is judged exactly, told its local date: a rule in force
    that day for no facility class is skipped, as the judge skips it, so the reading stays in
    bulk (none did before); the records are the per-event path's."""
    _, batch = run_both([orjson.dumps(e) for e in dated_events()], batch_size=256,
                        as_of="2024-12-31T00:00:00+08:00")
    assert batch.lane_stats["quiet"] > 0 and sum(batch.summary.findings.values()) > 1000


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def _group(rule: Rule, inputs: bool) -> tuple[Any, ...]:
    """The reading group of a daily wastewater rule (its first pollutant, point and destination),
    with or without a benchmark-volume correction's inputs."""
    return ("discharge.measured", min(rule.pollutants), rule.unit, None, min(rule.points) if rule.points else "plant",
            min(rule.destinations) if rule.destinations else "direct", "day", "N", False, inputs)


# the gated reading groups of dated daily wastewater rules
DATED_GROUPS = sorted({key for r in REFERENCE.rules if r.threshold is not None and r.windows and r.pollutants
                       and r.type == "discharge.measured" and r.threshold[0] == "gt" and "day" in r.periods
                       for key in (_group(r, False), _group(r, True)) if isinstance(REFERENCE.judge.screen(*key), Gate)},
                      key=repr)
# the days around each date a rule comes into or goes out of force
EDGES = sorted({shifted for rule in REFERENCE.rules if rule.windows for window in rule.windows.values()
                for edge in (window.start, window.end) if edge is not None
                for shifted in (_shift(edge, -1), edge, _shift(edge, 1))})


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(DATED_GROUPS), start=st.sampled_from(EDGES), length=st.integers(0, 40),
       other=st.sampled_from(EDGES), other_length=st.integers(0, 400), draw=st.data())
def test_a_gate_of_a_span_of_days_answers_as_the_judge_on_each_of_them(key, start, length, other, other_length, draw):
    """`Judge.screen(..., days=span)` leaves out the rules in force on no day of the span: on each
    day its exact test answers as the gate of every rule does, a value it leaves quiet fires on
    none of them, and spans of one `era` make the same gate."""
    days = [_shift(start, n) for n in range(length + 1)]
    every, dated = REFERENCE.judge.screen(*key), REFERENCE.judge.screen(*key, days=(days[0], days[-1]))
    assert isinstance(every, Gate) and isinstance(dated, Gate)
    assert [t.rule.id for t in dated.rules] == [t.rule.id for t in every.rules
                                                 if any(t.rule.in_force_on(day) for day in days)]
    assert dated.high >= every.high and len(dated.benchmarks) <= len(every.benchmarks)
    data = None
    if every.benchmarks:  # a production of a category some benchmark rule of the group knows
        products = sorted({pair for cut in every.benchmarks for pair in cut.per_unit}, key=repr)
        category, unit = draw.draw(st.sampled_from(products))
        data = {"volume_m3": draw.draw(st.floats(0, 1e4)),
                "production": {"category": category, "unit": unit, "quantity": draw.draw(st.floats(0, 1e3))}}
    values = [dated.high, math.nextafter(dated.high, math.inf), every.high, draw.draw(st.floats(0, 2 * every.high + 1e3))]
    for value in values:
        quiet = dated.low <= value <= dated.high and (not dated.benchmarks or dated.benchmark_quiet(value, data) == frozenset())
        for day in days:
            assert dated.fires(value, None, data, day) == every.fires(value, None, data, day)
            assert not (quiet and every.fires(value, None, data, day))
    span = (other, _shift(other, other_length))
    if REFERENCE.judge.era(*span) == REFERENCE.judge.era(days[0], days[-1]):
        assert REFERENCE.judge.screen(*key, days=span) == dated


def test_a_gate_of_days_after_a_table_s_end_leaves_its_rules_out():
    """GB 4287 Table 1's limits for existing works ended on 2014-12-31: a 2024 gate of a group
    they judge is cut on the rules in force then, which lets more readings through quietly."""
    looser = 0
    for key in DATED_GROUPS:
        every = REFERENCE.judge.screen(*key)
        dated = REFERENCE.judge.screen(*key, days=("2024-01-01", "2024-01-31"))
        assert isinstance(every, Gate) and isinstance(dated, Gate)
        table_1 = {t.rule.id for t in every.rules if t.rule.basis.get("standard") == "GB 4287-2012"
                   and t.rule.basis.get("table") == "Table 1"}
        assert not table_1 & {t.rule.id for t in dated.rules}
        looser += bool(table_1) and dated.high > every.high
    assert looser > 5


def benchmark_events() -> tuple[list[dict[str, Any]], int]:
    """Registrations, then daily wastewater readings of every benchmark-volume-corrected rule
    around its bound, with actual volumes below, at and above the benchmark (so the judged value
    crosses the limit only after the correction), and readings whose correction cannot be made
    (a category without a benchmark, another production unit, no production, a list of products,
    no category at all); some quantities and volumes are integers."""
    events, subjects = registrations("9133021", sub_sector="cotton_woven")
    count = 0
    for rule in REFERENCE.rules:
        if rule.benchmark is None or rule.threshold is None or "day" not in rule.periods:
            continue
        subject = subjects[sorted(rule.industries)[0] if rule.industries else "other"]
        product_unit = "m2" if rule.benchmark_unit == "L/m2" else "t"
        per_unit = 0.001 if product_unit == "m2" else 1.0
        category = sorted(rule.benchmark)[0]
        for pollutant in sorted(rule.pollutants or ["w01018"]):
            for bound in rule.threshold[1:]:
                for ratio in (0.5, 1.0, 1.0 + 1e-12, 1.25, 2.0):
                    for value in near(float(bound)) + [float(bound) / ratio, float(bound) / ratio * (1 + 1e-12),
                                                       float(bound) / ratio * 1.01, float(bound) * 0.9]:
                        quantity = 10.0
                        benchmark_m3 = quantity * rule.benchmark[category] * per_unit
                        production: Any = {"quantity": quantity, "unit": product_unit, "category": category}
                        count += 1
                        kinds = ["ok"] * 6 + ["no category", "other unit", "zero", "list", "int", "bare", "whole volume"]
                        kind = kinds[count % len(kinds)]
                        if kind == "no category":
                            production = {"quantity": quantity, "unit": "t", "category": "no_such_fabric"}
                        elif kind == "other unit":
                            production = {"quantity": quantity, "unit": "m2" if product_unit == "t" else "t",
                                          "category": category}
                        elif kind == "zero":
                            production = dict(production, quantity=0)
                        elif kind == "list":
                            production = [production, dict(production, quantity=1.5)]
                        elif kind == "int":
                            production = dict(production, quantity=10)
                        elif kind == "bare":  # no category at all
                            production = {"quantity": quantity, "unit": product_unit}
                        data = {"outlet": "W1", "point": sorted(rule.points)[0] if rule.points else "plant",
                                "destination": sorted(rule.destinations)[0] if rule.destinations else "direct",
                                "pollutant": pollutant, "value": value, "unit": rule.unit, "period": "day", "flag": "N",
                                "volume_m3": round(benchmark_m3 * ratio, 6), "production": production}
                        if kind == "whole volume":  # an integer, as a meter may report it
                            data["volume_m3"] = round(benchmark_m3 * ratio)
                        events.append({"specversion": "1.0", "id": f"bm-{count}", "source": "t",
                                       "type": "discharge.measured", "subject": subject,
                                       "time": f"2024-03-{1 + count % 27:02d}T00:00:00+08:00", "data": data})
                        if kind in ("no category", "other unit"):  # the same from an enterprise the rule is not for
                            events.append({**events[-1], "id": f"bm-{count}-other", "subject": subjects["other"]})
    # the enterprise of no listed industry registers as a dyeing works half way: its readings
    # that could not be corrected under the dyeing rules become data gaps from then on
    other = next(e for e in events if e["id"] == "reg-other")
    middle = len(events) // 2
    events.insert(middle, {**other, "id": "reg-other-again", "time": "2024-03-01T00:00:00+08:00",
                           "data": {**other["data"], "industry": "dyeing"}})
    return events, count


def test_benchmark_corrected_readings_at_their_bounds_give_the_per_event_output():
    """Daily wastewater readings under the benchmark-volume correction take the fast lane (their
    gates apply each rule's cut after the correction); the output is the per-event path's, data
    gaps of corrections that cannot be made included."""
    events, count = benchmark_events()
    for batch_size in (128, 1000):
        per_event, batch = run_both([orjson.dumps(e) for e in events], batch_size=batch_size)
        assert count > 300 and batch.lane_stats["quiet"] > 100
        assert sum(batch.summary.findings.values()) > 50 and sum(batch.summary.data_gaps.values()) > 20
    # readings another industry's rule cannot correct are quiet for this enterprise until it registers as that industry
    lane = FastLane(REFERENCE)
    others = [e for e in events if e["id"].endswith("-other")]
    sorting = lane.sort(others, [orjson.dumps(e) for e in others], defer=True)
    assert sum(1 for kind in sorting.lane if kind) > 20 and len(sorting.unless) > 20
    # a caller that does not commit through `apply` (defer=False) gets them exact, never quiet
    safe = lane.sort(others, [orjson.dumps(e) for e in others])
    assert not safe.unless and all(safe.lane[row] == EXACT for row in sorting.unless)


def test_a_shape_plan_of_a_production_object_never_accepts_what_the_validator_rejects():
    """Plans of daily wastewater readings (a `production` object inside `data`, an anyOf of an
    object and a list, the surface-treatment plugin's if/then on its unit) against the per-event
    validator on mutated productions."""
    lane = FastLane(REFERENCE)
    events, _ = benchmark_events()
    readings = [e for e in events if e["type"] == "discharge.measured" and isinstance(e["data"]["production"], dict)]
    rng = random.Random(5)
    mutations = [("quantity", -1), ("quantity", "3"), ("quantity", 1e13), ("unit", "kg"), ("unit", "m2"), ("unit", "t"),
                 ("category", "multi"), ("category", "single"), ("category", 7), ("category", None), ("extra", 1),
                 ("drop", "category"), ("drop", "unit"), ("drop", "quantity")]
    accepted = rejected_by_both = 0
    for _ in range(1500):
        event = orjson.loads(orjson.dumps(rng.choice(readings)))
        production = event["data"]["production"]
        key, value = rng.choice(mutations)
        if key == "drop":
            production.pop(value, None)
        elif value is None:
            production.pop(key, None)
        else:
            production[key] = value
        if rng.random() < 0.2:
            event["data"].pop("volume_m3")
        data = event["data"]
        nested = tuple(sorted((k, frozenset(v)) for k, v in data.items() if type(v) is dict))
        planned = lane._plan((event["type"], frozenset(event), frozenset(data), nested))
        if planned is None:
            continue
        plan, paths = planned
        columns = {path: [event[path[0]] if len(path) == 1 else data[path[1]] if len(path) == 2 else data[path[1]][path[2]]]
                   for path in paths}
        verdict = judged_alike(plan, columns, event)
        accepted += verdict == "accepted"
        rejected_by_both += verdict == "rejected"
    assert accepted > 250 and rejected_by_both > 100


def test_a_reading_only_another_industry_s_rules_judge_is_quiet_until_its_enterprise_is_of_that_industry():
    """Every threshold rule at its bounds (`bound_events`), each reading also sent by an enterprise
    of no listed industry, which registers as a foundry half way: the rules that fire belong to
    other industries until then (the lane commits such readings in bulk after a look at the
    registry), to its own after."""
    events, _ = bound_events()
    other = next(e for e in events if e["id"] == "reg-other")
    copies = [{**e, "id": e["id"] + "-other", "subject": other["subject"]} for e in events
              if e["type"] != "enterprise.registered"]
    mixed = [x for pair in zip(events[len(events) - len(copies):], copies) for x in pair]
    mixed = events[:len(events) - len(copies)] + mixed
    mixed.insert(len(mixed) // 2, {**other, "id": "reg-other-foundry", "data": {**other["data"], "industry": "foundry"}})
    for batch_size in (64, 700):
        per_event, batch = run_both([orjson.dumps(e) for e in mixed], batch_size=batch_size)
        assert batch.lane_stats["quiet"] > 400
    sorting = FastLane(REFERENCE).sort(copies, [orjson.dumps(e) for e in copies], defer=True)
    assert len(sorting.unless) > 100
    # without `defer` (a caller that ignores `unless`) they are exact; readings no rule fires on stay quiet
    safe = FastLane(REFERENCE).sort(copies, [orjson.dumps(e) for e in copies])
    assert not safe.unless and all(safe.lane[row] == EXACT for row in sorting.unless)
    assert sum(1 for kind in safe.lane if kind != EXACT) > 100


def test_a_sorting_process_killed_with_a_chunk_taken_stops_the_run_with_a_message(tmp_path):
    """A sorting process killed while it sorts a chunk it took (the out-of-memory killer sends
    SIGKILL), or half way through sending one: the replay stops with HelperFailed naming the
    process, the chunk it owed and how it ended. (Chunks it had not taken are sorted here.)"""
    import multiprocessing
    import os
    import signal
    import time
    from pathlib import Path

    from engine.fast import HelperFailed, workers

    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in CITY.events * 6))  # more sortings than a pipe holds
    message = (r"rectify-sort-0 ended before it handed over chunk \d+ \(killed by SIGKILL, which the out-of-memory "
               r"killer sends\); the replay stopped")
    original = workers._sort_share

    def killed_in_its_first_chunk(lane, *args):  # in the forked worker, as it starts sorting the chunk it took
        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)

        lane.sort = die
        original(lane, *args)

    workers._sort_share = killed_in_its_first_chunk
    try:
        with pytest.raises(HelperFailed, match=message):
            list(Engine(plugins=PLUGINS).run_batch(JsonlFiles([path]), workers=1))
    finally:
        workers._sort_share = original
    assert not multiprocessing.active_children()
    # killed while it waits on its full pipe: half a sorting may be in the pipe
    records = Engine(plugins=PLUGINS).run_batch(JsonlFiles([path]), workers=1)
    assert next(records) is not None
    (worker,) = multiprocessing.active_children()
    deadline = time.monotonic() + 60
    while "pipe_write" not in Path(f"/proc/{worker.pid}/wchan").read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(worker.pid, signal.SIGKILL)
    try:
        list(records)  # complete when the chunk it was sending had arrived whole
    except HelperFailed as exc:
        assert re.match(message, str(exc))
    assert not multiprocessing.active_children()


def test_chunks_go_to_whichever_process_is_free(tmp_path):
    """Who sorts a chunk is decided as the work goes: with the worker stopped (SIGSTOP) before it
    takes any, this process sorts every chunk itself and gives the same records, and the stopped
    worker is ended with the replay."""
    import multiprocessing
    import os
    import signal

    from engine.fast import workers

    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in CITY.events * 3))
    expected = [r.to_dict() for r in Engine(plugins=PLUGINS).run_batch(JsonlFiles([path]))]
    original = workers._sort_share

    def stopped_first(*args, **kwargs):  # in the forked worker: stop before taking any chunk
        os.kill(os.getpid(), signal.SIGSTOP)
        original(*args, **kwargs)

    workers._sort_share = stopped_first
    try:
        records = Engine(plugins=PLUGINS).run_batch(JsonlFiles([path]), workers=1)
        got = [next(records).to_dict()]
        assert len(multiprocessing.active_children()) == 1
        got += [r.to_dict() for r in records]
        assert got == expected
    finally:
        workers._sort_share = original
    assert not multiprocessing.active_children()
