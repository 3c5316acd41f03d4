"""The tamper-evident decision log (issue 5): hash chain, verify, replay, the SQLite store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engine.audit import first_divergence
from engine.output import GENESIS, ChainedWriter, canonical, record_hash, verify_file, verify_lines
from engine.devtools.demo import generate_city, write_jsonl
from engine.ingest import read_jsonl
from engine.output import Store

RECTIFY = [sys.executable, "-c", "from engine.cli import main; main()"]


def rectify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RECTIFY, *args], capture_output=True, text=True, timeout=120)


class _Lines:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, record: dict) -> None:
        self.lines.append(orjson.dumps(record))

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "events.jsonl"
    write_jsonl(generate_city(enterprises=150, days=1, seed=11).events, path)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")  # one quarantine record in the log too
    return path


@pytest.fixture(scope="module")
def log(events, plugins) -> bytes:
    """A small real decision log, chained exactly as `rectify run --out` writes it."""
    from engine import Engine

    sink = _Lines()
    writer = ChainedWriter(sink)
    for record in Engine(plugins=plugins).run(read_jsonl([events])):
        writer.write(record.to_dict())
    assert len(sink.lines) > 20
    return b"".join(line + b"\n" for line in sink.lines)


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def test_each_record_names_the_ruleset_and_chains_to_the_previous(log):
    records = [json.loads(x) for x in lines_of(log)]
    assert {r["record"] for r in records} == {"finding", "decision", "quarantine"}
    assert records[0]["prev"] == GENESIS
    for before, record in zip(records, records[1:]):
        assert record["prev"] == before["hash"]
    for record in records:
        assert record["hash"] == record_hash(record)
        if record["record"] != "quarantine":
            assert record["ruleset"].startswith("sha256:")
    # the hash covers the canonical JSON (sorted keys) without `hash`, and covers `prev`
    first = records[0]
    assert b'"hash"' not in canonical(first) and b'"prev"' in canonical(first)
    assert verify_lines(lines_of(log)).ok


def test_chaining_leaves_the_engine_records_untouched(plugins, make_event):
    from engine import Engine

    engine = Engine(plugins=plugins)
    record = engine.process(make_event("equipment.declared", "2024-03-01T10:00:00+08:00",
                                       {"equipment_id": "E1", "kind": "cupola", "attributes": {"melt_rate_t_h": 1},
                                        "status": "active"}))
    sink = _Lines()
    writer = ChainedWriter(sink)
    for r in record:
        before = r.to_dict()
        writer.write(before)
        assert "hash" not in before and r.to_dict() == before


def _positions(size: int, count: int = 48) -> list[int]:
    return sorted({0, size - 1, *range(0, size, max(1, size // count))})


@pytest.mark.parametrize("fraction", [i / 47 for i in range(48)])
def test_one_changed_byte_anywhere_is_detected_and_located(log, tmp_path, fraction):
    position = min(len(log) - 1, int(fraction * len(log)))
    for delta in (1, 0x20):  # two different edits of the same byte
        damaged = bytearray(log)
        damaged[position] = (damaged[position] + delta) % 256
        path = tmp_path / "damaged.jsonl"
        path.write_bytes(bytes(damaged))
        verdict = verify_file(str(path))
        assert not verdict.ok, (position, delta)
        line = log[:position].count(b"\n") + 1
        assert line in {p.line for p in verdict.problems}, (position, verdict.problems)
        original = json.loads(lines_of(log)[line - 1])
        located = [p for p in verdict.problems if p.line == line]
        # the record's id is named whenever the damaged line still parses (as read: the byte may be in the id)
        for problem in located:
            if problem.id is not None:
                assert len(problem.id) == len(original["id"])
                assert sum(a != b for a, b in zip(problem.id, original["id"])) <= 1


def test_hex_case_and_prev_edits_are_detected(log):
    lines = lines_of(log)
    record = json.loads(lines[5])
    for field, value in (("hash", record["hash"].upper()), ("prev", GENESIS)):
        edited = list(lines)
        edited[5] = orjson.dumps({**record, field: value})
        verdict = verify_lines(edited)
        assert not verdict.ok and 6 in {p.line for p in verdict.problems}


def test_a_content_edit_written_by_another_json_writer_is_named_a_content_edit(log):
    """Before 2026-12-02 a changed record written again with other spacing (json.dumps) was
    called 'edited without changing the JSON meaning': the bytes were checked before the hash."""
    lines = lines_of(log)
    record = json.loads(lines[5])
    spaced = [*lines[:5], json.dumps({**record, "enterprise": "X"}).encode(), *lines[6:]]
    problems = [(p.line, p.message) for p in verify_lines(spaced).problems]
    assert problems[0][0] == 6 and "content does not match its hash" in problems[0][1]
    same = [*lines[:5], json.dumps(record).encode(), *lines[6:]]
    (problem,) = verify_lines(same).problems
    assert problem.line == 6 and "edited without changing the JSON meaning" in problem.message


def test_replay_against_an_empty_log_says_where_the_log_ends(events, log, tmp_path):
    """An empty file was read as one empty line ('not valid JSON' at line 1) before 2026-12-02."""
    out = tmp_path / "out.jsonl"
    assert rectify("run", str(events), "--out", str(out)).returncode == 0
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    (tmp_path / "empty.jsonl.manifest.json").write_bytes((tmp_path / "out.jsonl.manifest.json").read_bytes())
    replayed = rectify("replay", str(events), "--verify", str(empty))
    assert replayed.returncode == 1 and replayed.stdout.startswith("first divergence at line 1 ")
    assert replayed.stdout.rstrip().endswith("the log ends here")
    assert "not valid JSON" not in replayed.stdout + replayed.stderr


def test_an_edit_with_a_recomputed_hash_is_caught_by_the_next_link(log):
    lines = lines_of(log)
    record = json.loads(lines[3])
    record["time"] = "2030-01-01T00:00:00+08:00"
    record["hash"] = record_hash(record)  # a careful forger
    edited = list(lines)
    edited[3] = orjson.dumps(record)
    verdict = verify_lines(edited)
    # indistinguishable from removing a record after line 4: both are named
    (problem,) = verdict.problems
    assert (problem.line, problem.kind) == (5, "removed")
    assert "line 4 was edited" in problem.message and "between line 4 and line 5" in problem.message


def test_a_removed_record_is_named(log):
    lines = lines_of(log)
    removed = lines[:9] + lines[10:]
    verdict = verify_lines(removed)
    (problem,) = verdict.problems
    assert problem.kind == "removed" and problem.line == 10
    assert problem.id == json.loads(lines[10])["id"]


def test_an_inserted_record_is_named(log):
    lines = lines_of(log)
    foreign = dict(json.loads(lines[4]), id="F-forged")
    foreign["prev"] = json.loads(lines[6])["hash"]  # chained onto its new neighbour
    foreign["hash"] = record_hash(foreign)
    inserted = lines[:7] + [orjson.dumps(foreign)] + lines[7:]
    verdict = verify_lines(inserted)
    assert [(p.line, p.kind, p.id) for p in verdict.problems] == [(8, "inserted", "F-forged")]


def test_reordered_records_are_named(log):
    lines = lines_of(log)
    swapped = lines[:10] + [lines[11], lines[10]] + lines[12:]
    verdict = verify_lines(swapped)
    kinds = {(p.line, p.kind) for p in verdict.problems}
    assert (11, "reordered") in kinds
    moved = lines[:3] + lines[4:] + [lines[3]]
    verdict = verify_lines(moved)
    assert not verdict.ok and any(p.kind == "reordered" for p in verdict.problems)


def test_a_cut_tail_is_detected_against_the_published_head(log):
    lines = lines_of(log)
    head = json.loads(lines[-1])["hash"]
    assert verify_lines(lines, head).ok
    verdict = verify_lines(lines[:-2], head)
    assert [p.kind for p in verdict.problems] == ["truncated"]


def test_first_divergence_names_line_and_field(log):
    lines = lines_of(log)
    replayed = [json.loads(x) for x in lines]
    assert first_divergence(lines, replayed) is None
    replayed[7] = dict(replayed[7], time="2099-01-01T00:00:00+08:00")
    divergence = first_divergence(lines, replayed)
    assert (divergence.line, divergence.field) == (8, "time")
    assert first_divergence(lines, [json.loads(x) for x in lines][:-1]).line == len(lines)


# ---- the CLI ------------------------------------------------------------------------------


def test_run_out_is_chained_verify_and_replay_agree(events, log, tmp_path):
    out = tmp_path / "out.jsonl"
    result = rectify("run", str(events), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == log
    head = json.loads(lines_of(log)[-1])["hash"]
    assert f"chain head {head}" in result.stderr
    checked = rectify("verify", str(out), "--head", head)
    assert checked.returncode == 0 and "chain intact" in checked.stderr
    replayed = rectify("replay", str(events), "--verify", str(out))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replay matches" in replayed.stdout
    # an edited log: verify names the line and id; replay reports the first divergence
    lines = lines_of(log)
    record = json.loads(lines[2])
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(b"".join(x + b"\n" for x in lines[:2] + [orjson.dumps({**record, "enterprise": "X"})] + lines[3:]))
    checked = rectify("verify", str(edited), "--json")
    assert checked.returncode == 1
    verdict = json.loads(checked.stdout)
    assert [(p["line"], p["id"], p["kind"]) for p in verdict["problems"]] == [(3, record["id"], "edited")]
    replayed = rectify("replay", str(events), "--verify", str(edited))
    assert replayed.returncode == 1
    assert f"first divergence at line 3 (id {record['id']}): field 'enterprise'" in replayed.stdout
    other = rectify("replay", str(events), "--verify", str(out), "--ignore-manifest", "--option", "dyeing.gb4287.table3")
    assert other.returncode == 1 and "field 'ruleset'" in other.stdout
    pinned = rectify("replay", str(events), "--verify", str(out), "--option", "dyeing.gb4287.table3")
    assert pinned.returncode == 2 and "the log's manifest names its rule set; --options would change it" in pinned.stderr


def test_replay_of_the_demo_log_verifies(tmp_path):
    folder = tmp_path / "demo"
    assert rectify("demo", "--enterprises", "200", "--days", "1", "--out-dir", str(folder), "--no-progress").returncode == 0
    result = rectify("replay", str(folder / "events.jsonl"), "--verify", str(folder / "findings.jsonl"), "--quarantine-separate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert rectify("verify", str(folder / "findings.jsonl")).returncode == 0


def test_store_run_query_export_and_verify(events, log, tmp_path):
    db = tmp_path / "decisions.db"
    result = rectify("run", str(events), "--store", str(db))
    assert result.returncode == 0, result.stderr
    with Store(db) as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert b"".join(line + b"\n" for line in store.lines()) == log
        decisions = list(store.query(record="decision"))
        assert decisions
        some = decisions[0]
        by_enterprise = list(store.query(enterprise=some["enterprise"]))
        assert some in by_enterprise and all(r["enterprise"] == some["enterprise"] for r in by_enterprise)
        assert all(r["list"] == some["list"] for r in store.query(list=some["list"], action=some["action"]))
        assert list(store.query(since="2099-01-01T00:00:00+08:00")) == []
    exported = tmp_path / "export.jsonl"
    assert rectify("decisions", "--store", str(db), "--export", str(exported)).returncode == 0
    assert exported.read_bytes() == log
    listed = rectify("decisions", "--store", str(db), "--enterprise", some["enterprise"], "--action", some["action"], "--json")
    assert listed.returncode == 0 and some["id"] in listed.stdout
    table = rectify("decisions", "--store", str(db), "--rule", some["rule"])
    assert some["id"] in table.stdout
    assert rectify("verify", "--store", str(db)).returncode == 0
    again = rectify("run", str(events), "--store", str(db))
    assert again.returncode == 2 and "already holds a complete run" in again.stderr


# ---- explain and what-if ----------------------------------------------------------------------


def test_explain_a_finding_and_a_decision(events, log, plugins, tmp_path):
    from engine import Engine
    from engine.audit import explain, explain_text

    records = [json.loads(x) for x in lines_of(log)]
    corrected = next(r for r in records if r["record"] == "finding" and any(c["kind"] == "o2" for c in r["corrections"]))
    report = explain(Engine(plugins=plugins), lambda: read_jsonl([events]), corrected["id"])
    assert report["rule"]["id"] == corrected["rule"] and report["rule"]["version"] == corrected["rule_version"]
    assert report["condition"]["holds"] is True
    assert report["condition"]["values"]["judged"] == corrected["judged"]
    assert report["corrections"] == corrected["corrections"] and report["basis"] == corrected["basis"]
    assert [e["id"] for e in report["evidence"]["events"]] == corrected["event"]
    assert "condition: judged > limit" in explain_text(report)
    decision = next(r for r in records if r["record"] == "decision" and r["evidence"]["findings"])
    report = explain(Engine(plugins=plugins), lambda: read_jsonl([events]), decision["id"])
    assert report["rule"]["id"] == decision["rule"] and report["action"] == decision["action"]
    assert [f["id"] for f in report["evidence"]["findings"]] == decision["evidence"]["findings"]
    assert all("rule" in f for f in report["evidence"]["findings"])
    out = tmp_path / "out.jsonl"
    out.write_bytes(log)
    result = rectify("explain", decision["id"], "--events", str(events), "--log", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["logged"]["matches"] is True
    assert rectify("explain", "F-nope", "--events", str(events)).returncode == 1


def _gap_log(make_event, tmp_path, *readings, industry="foundry", **extra) -> tuple[Path, list[dict]]:
    from conftest import registration

    events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration(industry, **extra)), *readings]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path, events


def test_explain_a_data_gap_without_oxygen_in_text_and_json_and_an_event_id_is_no_record(plugins, make_event, tmp_path):
    """A cupola's particulate limit is referenced to 15 % O2 and the reading has none: explain
    names the rule, the reason, the missing input, what would let it be judged, the value and the
    event; in English, Chinese and JSON; an input event's id is refused in words, exit 1."""
    from click.testing import CliRunner

    from engine import Engine
    from engine.cli import cli

    reading = make_event("emission.measured", "2024-03-01T10:00:00+08:00",
                         {"outlet": "DA001", "process": "melting.cupola.cold_blast", "pollutant": "a34013", "value": 35,
                          "unit": "mg/m3", "period": "hour"}, id="m-1")
    path, events = _gap_log(make_event, tmp_path, reading)
    (gap,) = [r for r in Engine(plugins=plugins).run(events) if getattr(r, "reason", None) == "o2_missing"]
    runner = CliRunner()
    as_json = runner.invoke(cli, ["explain", gap.id, "--events", str(path), "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert report["record"] == "data_gap" and report["replayed"] == gap.to_dict()
    assert report["rule"]["id"] == "foundry.gb39726.t1.cupola.pm" and report["basis"] == dict(gap.basis)
    assert report["gap"] == {"reason": "o2_missing", "detail": gap.detail, "inputs": ["data.o2_percent"],
                             "process": "melting.cupola.cold_blast", "o2_reference_percent": 15, "events_without": ["m-1"]}
    assert report["measured"] == {"value": 35.0, "unit": "mg/m3"} and [e["id"] for e in report["evidence"]["events"]] == ["m-1"]
    en = runner.invoke(cli, ["explain", gap.id, "--events", str(path), "--lang", "en"]).stdout
    assert en.startswith(f"data_gap {gap.id}  enterprise ")
    assert "reason: o2_missing — no O2 measured for an O2-referenced limit" in en
    assert "missing: data.o2_percent: the limit is referenced to 15 % O2 for process melting.cupola.cold_blast" in en
    assert "to judge it the engine needs the O2 content measured with the value (o2_percent)" in en
    assert 'measured {"value":35.0,"unit":"mg/m3"}' in en and "evidence event m-1 emission.measured" in en
    zh = runner.invoke(cli, ["explain", gap.id, "--events", str(path), "--lang", "zh"]).stdout
    assert zh.startswith(f"数据缺失 {gap.id}")
    assert "原因：缺少含氧量，无法折算（o2_missing）" in zh and "依据：GB 39726-2020" in zh
    assert "缺少：data.o2_percent：工序 melting.cupola.cold_blast 的限值以基准含氧量 15% 计" in zh
    assert "评判所需：与监测值同时测得的含氧量（o2_percent），以便折算至基准含氧量 15%" in zh
    refused = runner.invoke(cli, ["explain", "m-1", "--events", str(path)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.stderr.splitlines()[-1] == ("rectify: 'm-1' is an input event (emission.measured), not a record: "
                                               "explain takes the id of a finding, a decision or a data gap")


def test_explain_a_daily_value_without_benchmark_inputs_and_a_mean_of_too_few_values(plugins, make_event, tmp_path):
    from engine import Engine
    from engine.audit import explain, explain_text

    def water(time, value, period, **extra):
        return make_event("discharge.measured", time, {"outlet": "DW001", "point": "plant", "destination": "direct",
                                                       "pollutant": "w01018", "value": value, "unit": "mg/L", "period": period,
                                                       **extra})

    _, events = _gap_log(make_event, tmp_path, water("2024-03-01T00:00:00+08:00", 60, "day"),
                         industry="dyeing", sub_sector="cotton_woven")
    (gap,) = [r for r in Engine(plugins=plugins).run(events) if getattr(r, "reason", None) == "benchmark_inputs_missing"]
    report = explain(Engine(plugins=plugins), lambda: iter(events), gap.id)
    facts = report["gap"]
    assert facts["inputs"] == ["data.volume_m3", "data.production"]
    assert facts["values"] == {"data.volume_m3": None, "data.production": None} and "cotton_woven" in facts["benchmark"]["categories"]
    en, zh = explain_text(report), explain_text(report, "zh")
    assert "missing: data.volume_m3, data.production: the daily benchmark-volume correction needs" in en
    assert "to judge it the engine needs the day's discharge volume (volume_m3) and production" in en
    assert "缺少：data.volume_m3, data.production：按基准排水量折算日均浓度需要当日排水量和产量" in zh

    parameters = {"programme": {"min_valid_hours_per_day": 20}}
    _, events = _gap_log(make_event, tmp_path, water("2024-03-01T10:00:00+08:00", 480, "hour"),
                         water("2024-03-01T11:00:00+08:00", 520, "hour"), industry="dyeing", sub_sector="cotton_woven")
    gap = next(r for r in Engine(plugins=plugins, parameters=parameters).run(events)
               if getattr(r, "reason", None) == "too_few_values")
    report = explain(Engine(plugins=plugins, parameters=parameters), lambda: iter(events), gap.id)
    assert (report["gap"]["values"], report["gap"]["minimum"], report["period"]) == (2, 20, "day")
    assert len(report["evidence"]["events"]) == 2
    assert "to judge it the engine needs a daily mean of at least 20 valid values" in explain_text(report)
    assert "评判所需：日均值至少有 20 个有效值" in explain_text(report, "zh")


def test_diff_between_table_2_and_table_3(events, plugins):
    from engine import Engine
    from engine.audit import compare, diff_text

    def build(config):
        return Engine(plugins=plugins, options=config.options, parameters=config.parameters)

    result = compare(build, "default", "option:dyeing.gb4287.table3", lambda: read_jsonl([events]))
    assert result["a"]["ruleset"] != result["b"]["ruleset"] and result["enterprises_changed"] > 0
    changed = {r for row in result["findings_by_rule"] for r in [row]}
    assert any(".t3." in rule for rule in changed)
    for row in result["decisions_by_list_action"].values():
        assert row["change"] == row["b"] - row["a"]
    assert "list/action" in diff_text(result)
    same = compare(build, "default", "default", lambda: read_jsonl([events]))
    assert same["enterprises_changed"] == 0 and same["findings_by_rule"] == {}
    # B replayed in a forked process beside A (what `rectify diff` does on two cores): the same result
    assert compare(build, "default", "option:dyeing.gb4287.table3", lambda: read_jsonl([events]),
                   concurrent=True) == result


def test_a_concurrent_what_if_s_child_ends_when_its_parent_is_killed(events):
    """The parent killed (SIGKILL) while B is replayed beside it: B's records have nowhere to go,
    so the child ends when it tries to send them, instead of waiting forever."""
    from test_fastlane import killed_midway

    script = ("import multiprocessing, os, sys, time\n"
              "from engine import Engine, load_plugins\n"
              "from engine.audit import compare\n"
              "from engine.ingest import read_jsonl\n"
              "parent, plugins = os.getpid(), load_plugins()\n"
              "def lines():\n"
              "    if os.getpid() == parent:  # A waits, B is replayed\n"
              "        print(multiprocessing.active_children()[0].pid, flush=True)\n"
              "        time.sleep(120)\n"
              "    return read_jsonl([sys.argv[1]])\n"
              "compare(lambda config: Engine(plugins=plugins), 'default', 'default', lines, concurrent=True)\n")
    helpers, left = killed_midway(script, str(events))
    assert len(helpers) == 1 and not left


def test_a_concurrent_what_if_raises_what_the_replay_of_b_raised(events, plugins):
    """An error in B's forked replay is raised here, as a sequential run raises it; a replay that
    dies says so with its exit code; an error that cannot be sent says what it was, its traceback
    kept in `detail`."""
    import os

    from engine import Engine
    from engine.audit import compare
    from engine.fast import HelperFailed

    parent = os.getpid()

    def build(config):
        return Engine(plugins=plugins, options=config.options, parameters=config.parameters)

    def failing():
        if os.getpid() != parent:
            raise ValueError("the log of B is unreadable")
        return read_jsonl([events])

    def dying():
        if os.getpid() != parent:
            os._exit(3)
        return read_jsonl([events])

    with pytest.raises(ValueError, match="the log of B is unreadable"):
        compare(build, "default", "default", failing, concurrent=True)
    with pytest.raises(HelperFailed, match="rectify-diff-b ended before it handed over the records of configuration B "
                                           "\\(exit code 3\\)"):
        compare(build, "default", "default", dying, concurrent=True)

    class Unsendable(Exception):  # an exception that does not pickle: its traceback comes instead
        def __reduce__(self):
            raise TypeError("cannot pickle")

    def unsendable():
        if os.getpid() != parent:
            raise Unsendable("B's own problem")
        return read_jsonl([events])

    with pytest.raises(HelperFailed, match="rectify-diff-b failed on the replay of configuration B: .*Unsendable: "
                                           "B's own problem") as caught:
        compare(build, "default", "default", unsendable, concurrent=True)
    assert "Traceback (most recent call last)" in caught.value.detail
