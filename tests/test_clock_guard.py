"""One source must not move time for everyone (issue 15, item 1): the guarded event-time clock
(engine/normalise/clock.py) on adversarial logs, on every path.

What main (69b045b) did: one `inspection.recorded` dated 2999, valid by the schema, in the
demo log moved the clock to 2999; `close_by_law` went from 5 to 21 and open orders from 16 to
0, for other enterprises, exit 0, nothing quarantined (on today's demo city, with land, and the
guard off: 18 proposals become 1,829, and 301 open orders 147). As the first line, the same event froze
the clock at 2999: no later event moved it again.
"""

from __future__ import annotations

import math

import orjson
import pytest

from engine import Engine, JsonlFiles
from engine.devtools.demo import generate_city
from engine.normalise import EventClock

DAY = 86400.0


def hostile_event(number: int, time: str = "2999-01-01T00:00:00+08:00", subject: str | None = None) -> dict:
    from engine.validate import make_uscc

    return {"specversion": "1.0", "id": f"hostile-{number}", "source": "inspection-app", "type": "inspection.recorded",
            "subject": subject or make_uscc("91330200MA2HX0000"), "time": time,
            "data": {"result": "fail", "violations": ["stack"], "notes": "dated in the future"}}


@pytest.fixture(scope="module")
def city() -> list[dict]:
    return generate_city(enterprises=3000, days=2, seed=2024).events  # the demo city: 18 proposals, 301 open orders


@pytest.fixture(scope="module")
def clean(city) -> tuple[list[dict], Engine]:
    return records_of(city)


def records_of(events: list[dict], how: str = "batch", tmp_path=None, **kwargs) -> tuple[list[dict], Engine]:
    engine = Engine(**kwargs)
    if how == "run":
        records = list(engine.run(events))
    elif how == "batch":
        records = list(engine.run_batch([orjson.dumps(e) for e in events]))
    else:  # --jobs 1: chunks sorted in a forked process, from a file
        path = tmp_path / "events.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        records = list(engine.run_batch(JsonlFiles([path]), workers=1))
    assert engine.summary.balanced()
    return [r.to_dict() for r in records], engine


def others(records: list[dict], enterprise: str) -> list[bytes]:
    return [orjson.dumps(r) for r in records if r.get("enterprise") != enterprise]


# ---- the clock alone --------------------------------------------------------------------------


def test_a_lone_far_event_is_held_and_corroboration_moves_the_clock():
    clock = EventClock(lead_days=7, quorum=2)
    assert clock.observe(0.0, "a") is None  # not started: one enterprise cannot start it
    assert clock.observe(3600.0, "b") == 3600.0  # a second enterprise within the lead: started
    assert clock.observe(2 * DAY, "a") == 2 * DAY  # within 7 days: moves
    assert clock.observe(1000 * 365 * DAY, "a") is None  # the year 2999: held
    assert clock.observe(1000 * 365 * DAY + 1, "a") is None  # the same enterprise again: still held
    assert clock.time == 2 * DAY and clock.counted == 2
    assert clock.observe(40 * DAY, "b") is None  # a real gap: held until...
    assert clock.observe(40 * DAY + 60, "c") == 40 * DAY + 60  # ...another enterprise reports
    assert clock.plausible_until() == 47 * DAY + 60
    restored = EventClock(lead_days=7, quorum=2)
    restored.restore(orjson.loads(orjson.dumps(clock.state())))
    assert restored.state() == clock.state()
    assert restored.observe(1000 * 365 * DAY, "z") == 1000 * 365 * DAY  # two enterprises agree: a documented limit


def test_a_far_first_line_cannot_start_the_clock_and_is_counted_when_it_starts():
    clock = EventClock(lead_days=7, quorum=2)
    assert clock.observe(1000 * 365 * DAY, "x") is None
    assert clock.observe(0.0, "a") is None and clock.observe(60.0, "b") == 60.0
    assert clock.counted == 1 and clock.stranded == 1


def test_the_held_times_are_bounded_and_the_guard_can_be_switched_off():
    clock = EventClock(lead_days=1, quorum=3, max_held=10)
    clock.observe(0.0, "a"), clock.observe(0.0, "b"), clock.observe(0.0, "c")
    for n in range(1000):
        clock.observe(1e9 + n * 10 * DAY, f"s{n}")  # far apart: never corroborate each other
    assert len(clock.state()["held"]) == 10 and clock.time == 0.0
    off = EventClock(lead_days=None)
    assert off.observe(1e12, "x") == 1e12 and off.plausible_until() == math.inf


# ---- adversarial logs -------------------------------------------------------------------------------


def test_a_2999_event_in_the_demo_log_changes_no_other_enterprises_decisions(city, clean):
    clean, engine = clean
    hostile = hostile_event(1)
    log = city[: len(city) // 2] + [hostile] + city[len(city) // 2:]
    attacked, attacked_engine = records_of(log)
    assert others(attacked, hostile["subject"]) == others(clean, hostile["subject"])
    summary, before = attacked_engine.summary.to_dict(), engine.summary.to_dict()
    assert summary["decisions"] == before["decisions"] and not any("close_by_law" in k for k in summary["decisions"])
    assert summary["open_orders"] == before["open_orders"] > 200
    assert summary["clock_held"] == 1 and before["clock_held"] == 0
    unguarded, off = records_of(log, clock_lead_days=None)  # what main did: the event moved everyone's clock
    assert sum(v for k, v in off.summary.to_dict()["decisions"].items() if "close_by_law" in k) > 90
    assert off.summary.to_dict()["open_orders"] < before["open_orders"] - 90


def test_a_2999_first_line_does_not_freeze_the_clock(city, clean):
    clean, _ = clean
    hostile = hostile_event(1)
    attacked, engine = records_of([hostile] + city)
    assert others(attacked, hostile["subject"]) == others(clean, hostile["subject"])
    assert engine.summary.clock_held == 1


@pytest.mark.parametrize("how", ["run", "batch", "jobs"])
def test_the_guard_is_the_same_on_every_path(city, how, tmp_path):
    """Far events of several kinds at several places; the batch path sends them to the exact path."""
    part = city[:20_000]
    log = list(part)
    for n, at in enumerate((5, 7_000, 7_001, 12_000, 19_999)):
        log.insert(at, hostile_event(n))
    reading = next(e for e in part[15_000:] if e["type"] == "emission.measured")
    log.insert(16_000, {**reading, "id": "far-reading", "time": "2031-05-05T10:00:00+08:00"})  # a quiet reading, far ahead
    # a real gap: other enterprises report a month later; the first is held, the second corroborates it
    firms = {e["subject"]: e for e in part[-3000:] if e["type"] == "emission.measured"}
    log += [{**e, "id": e["id"] + "-later", "time": "2024-04-05T10:00:00+08:00"} for e in list(firms.values())[:6]]
    reference, engine = records_of(log, "run")
    got, other = records_of(log, how, tmp_path)
    assert [orjson.dumps(r) for r in got] == [orjson.dumps(r) for r in reference]
    assert other.summary.to_dict() == engine.summary.to_dict()
    assert engine.summary.clock_held == 7  # five inspections, the far reading, the first event after the gap
    assert engine.clock.time == orjson.loads(orjson.dumps(engine.clock.state()))["time"] > 1712000000


def test_a_checkpoint_keeps_the_held_times(city):
    part = city[:6_000]
    log = part[:3_000] + [hostile_event(1)] + part[3_000:]
    reference, _ = records_of(log, "run")
    first = Engine()
    records = [r.to_dict() for e in log[:4_000] for r in first.process_line(orjson.dumps(e))]
    second = Engine()
    second.restore(first.snapshot())
    records += [r.to_dict() for e in log[4_000:] for r in second.process_line(orjson.dumps(e))]
    records += [r.to_dict() for r in second.flush()]
    assert records == reference


def test_as_of_still_moves_time_explicitly(city, clean):
    log = city[: len(city) // 2] + [hostile_event(1)] + city[len(city) // 2:]
    engine = Engine()
    out = [r.to_dict() for r in engine.run_batch([orjson.dumps(e) for e in log], as_of="2025-12-31T23:59:59+08:00")]
    assert engine.summary.open_orders == 0
    escalated = [r for r in out if r.get("supersedes") and r.get("status") == "proposed"]  # a closure or a land remedy
    assert len(escalated) == clean[1].summary.open_orders  # every order falls due


def test_distributed_replay_applies_the_same_guard(city):
    """The driver runs one EventClock over every line; the partitions follow its ticks."""
    from dask.distributed import Client, LocalCluster

    from engine.distributed import DistributedRun

    part = city[:20_000]
    log = [hostile_event(0)] + part[:9_000] + [hostile_event(1), hostile_event(2, "2500-06-01T00:00:00+08:00", part[100]["subject"])] + part[9_000:]
    firms = {e["subject"]: e for e in part[-3000:] if e["type"] == "emission.measured"}
    log += [{**e, "id": e["id"] + "-later", "time": "2024-04-05T10:00:00+08:00"} for e in list(firms.values())[:4]]
    lines = [orjson.dumps(e) for e in log]
    engine = Engine()
    expected = b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in engine.run(lines))
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        job = DistributedRun(lines, client=client, chunk_size=7_000)
        got = b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in job)
    assert got == expected
    assert job.summary.to_dict() == engine.summary.to_dict() and engine.summary.clock_held == 4


# ---- the command line -----------------------------------------------------------------------------


def test_the_guard_is_set_on_the_command_line_and_recorded_in_the_manifest(city, tmp_path):
    """`--clock-lead-days DAYS|off` and `--clock-quorum N` on every command that builds an engine;
    the manifest records them, `rectify replay` follows the manifest and refuses to be told
    otherwise without --ignore-manifest; bad values are usage errors (exit 2)."""
    from click.testing import CliRunner

    from engine.cli import cli

    part = city[:20_000]
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in part[:10_000] + [hostile_event(1)] + part[10_000:]))
    runner = CliRunner()

    def run(*options: str) -> tuple[dict, dict]:
        out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
        result = runner.invoke(cli, ["run", str(log), "--out", str(out), "--summary-json", str(summary), *options])
        assert result.exit_code == 0, result.output
        manifest = orjson.loads((tmp_path / "out.jsonl.manifest.json").read_bytes())
        return orjson.loads(summary.read_bytes()), manifest["clock"]

    guarded, clock = run()
    assert guarded["clock_held"] >= 1 and clock == {"lead_days": 7.0, "quorum": 2}
    off, clock = run("--clock-lead-days", "off")
    assert off["clock_held"] == 0 and clock == {"lead_days": None, "quorum": 2}
    assert off["open_orders"] < guarded["open_orders"]  # the 2999 inspection made every order fall due
    alone, clock = run("--clock-quorum", "1")
    assert alone["clock_held"] == 0 and alone["open_orders"] == off["open_orders"] and clock["quorum"] == 1
    wider, clock = run("--clock-lead-days", "30")
    assert wider["open_orders"] == guarded["open_orders"] and clock == {"lead_days": 30.0, "quorum": 2}
    replayed = runner.invoke(cli, ["replay", str(log), "--verify", str(tmp_path / "out.jsonl")])
    assert replayed.exit_code == 0 and "replay matches" in replayed.output, replayed.output
    told = runner.invoke(cli, ["replay", str(log), "--verify", str(tmp_path / "out.jsonl"), "--clock-quorum", "3"])
    assert told.exit_code == 2 and "--clock-quorum would change it" in told.output
    store = str(tmp_path / "run.db")
    assert runner.invoke(cli, ["run", str(log), "--store", store, "--no-progress"]).exit_code == 0
    other = runner.invoke(cli, ["run", str(log), "--store", store, "--no-progress", "--clock-quorum", "3"])
    assert other.exit_code == 2 and "another configuration" in other.output and "clock" in other.output, other.output
    for option, value in (("--clock-lead-days", "-1"), ("--clock-lead-days", "soon"), ("--clock-quorum", "0")):
        bad = runner.invoke(cli, ["run", str(log), "--out", str(tmp_path / "x.jsonl"), option, value])
        assert bad.exit_code == 2 and option in bad.output, bad.output
