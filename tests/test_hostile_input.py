"""Hostile and odd input (issue 15, items 4 and 7): readings that cannot be data are quarantined
with their reason on every path, and the small things a user meets first are right.

What main (69b045b) did (the issue's probe, re-run with these tests against it):
- `"value":1,"value":99999` gave a finding judged 99999 (orjson keeps the last key);
- negative concentrations were judged; `1e308` gave findings judged 1e308 or `judged: null`,
  and an hourly finding with `measured.value: null` that fails schemas/finding.schema.json;
- `verify` on an empty log said CHAIN BROKEN; a UTF-8 BOM quarantined a valid first line;
  invalid UTF-8 was reported as "surrogates not allowed"; a 1 MB bad value was repeated whole
  in the error; `decisions --list bogus` answered "0 record(s)" with exit 0.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SUBJECT, registration
from engine import Engine, Finding, InputLine, JsonlFiles, Quarantined
from engine.devtools.demo import generate_city
from engine.ingest.jsonl import MAX_LINE_BYTES, may_repeat_keys, repeated_key

RECTIFY = [sys.executable, "-c", "from engine.cli import main; main()"]


def event(id: str, value, *, unit: str = "mg/m3", period: str = "hour", time: str = "2024-03-01T10:00:00+08:00",
          **data) -> dict:
    return {"specversion": "1.0", "id": id, "source": "cems", "type": "emission.measured", "subject": SUBJECT, "time": time,
            "data": {"outlet": "DA001", "process": "melting.cupola.cold_blast", "pollutant": "a34013", "value": value,
                     "unit": unit, "period": period, "o2_percent": 18.0, **data}}


WATER = {"specversion": "1.0", "id": "w-1", "source": "cems", "type": "discharge.measured", "subject": SUBJECT,
         "time": "2024-03-01T10:00:00+08:00",
         "data": {"outlet": "DW001", "point": "plant", "destination": "direct", "pollutant": "w01018", "value": 20,
                  "unit": "mg/L", "period": "hour", "volume_m3": 5, "production": {"quantity": 2, "unit": "t"}}}
REG = json.dumps({"specversion": "1.0", "id": "r-1", "source": "registry", "type": "enterprise.registered", "subject": SUBJECT,
                  "time": "2024-01-01T08:00:00+08:00", "data": registration("foundry")})


def run_all_paths(plugins, lines: list[str | bytes], tmp_path) -> list[bytes]:
    """The records of `lines` on the per-event path, the batch path and the batch path with a worker
    process: asserted byte-identical, returned as JSON lines."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(x.encode() if isinstance(x, str) else x for x in lines) + b"\n")
    outputs = []
    for how in ("run", "batch", "jobs"):
        engine = Engine(plugins=plugins)
        if how == "run":
            records = list(engine.run(JsonlFiles([path])))
        else:
            records = list(engine.run_batch(JsonlFiles([path]), workers=1 if how == "jobs" else 0, batch_size=8))
        outputs.append([orjson.dumps(r.to_dict()) for r in records])
        assert engine.summary.balanced()
    assert outputs[0] == outputs[1] == outputs[2]
    return outputs[0]


def quarantines(lines: list[bytes]) -> dict[int, str]:
    return {r["line"]: r["error"] for r in map(orjson.loads, lines) if r["record"] == "quarantine"}


# ---- item 4: readings that cannot be data --------------------------------------------------------


def test_a_repeated_key_anywhere_in_an_event_is_quarantined_on_every_path(plugins, tmp_path):
    quiet = [json.dumps(event(f"q-{i}", 10)) for i in range(20)]  # a run the fast lane takes in bulk
    lines = [REG, *quiet,
             json.dumps(event("d-1", 1)).replace('"value": 1,', '"value": 1, "value": 99999,'),
             json.dumps(event("d-2", 1)).replace('"value": 1,', '"value": 1,"value":1,'),  # same value twice: still ambiguous
             json.dumps(event("d-3", 1)).replace('"id": "d-3",', '"id": "d-3", "id": "d-4",'),
             json.dumps(WATER | {"id": "d-5"}).replace('"quantity": 2,', '"quantity": 2, "quantity": 3,'),
             json.dumps(event("d-6", 1)).replace('"value": 1,', '"value" : 1, "value": 2,').replace('"DA001"', '"DA\\u003a1"'),
             json.dumps(event("ok-1", 1)).replace('"DA001"', '"DA:0\\u003a1"'),  # escapes and colons, no repeat
             *quiet[:3]]
    records = run_all_paths(plugins, lines, tmp_path)
    bad = quarantines(records)
    assert bad == {
        22: "data.value: the key appears twice in one object (JSON readers keep one silently: ambiguous)",
        23: "data.value: the key appears twice in one object (JSON readers keep one silently: ambiguous)",
        24: "id: the key appears twice in one object (JSON readers keep one silently: ambiguous)",
        25: "data.production.quantity: the key appears twice in one object (JSON readers keep one silently: ambiguous)",
        26: "data.value: the key appears twice in one object (JSON readers keep one silently: ambiguous)",
        # the last three lines repeat ids of the first run: duplicates, not quarantined
    }
    assert not any(b"99999" in r for r in records if b'"record":"finding"' in r)


def test_a_repeated_key_in_a_chunk_without_escapes_is_found_by_its_colon_count(plugins, tmp_path):
    """A demo city's log with one quiet reading's key repeated: no line of its chunk has a
    backslash, so only the chunk's colon totals (the lines' against their sorted-key JSON's,
    engine/fast/lane.py) tell the fast lane to look line by line."""
    lines = [orjson.dumps(e) for e in generate_city(enterprises=40, days=2, seed=11).events]
    readings = [n for n, line in enumerate(lines) if b'"emission.measured"' in line]
    target = readings[len(readings) // 2]
    lines[target] = lines[target].replace(b'"period":"hour"', b'"period":"hour","period":"hour"', 1)
    assert lines[target].count(b'"period"') == 2 and not any(b"\\" in line for line in lines)
    records = run_all_paths(plugins, lines, tmp_path)
    assert quarantines(records) == {
        target + 1: "data.period: the key appears twice in one object (JSON readers keep one silently: ambiguous)"}


@st.composite
def json_objects(draw):
    """A JSON object text, sometimes with one key repeated at some depth, written with random
    spacing and with or without escapes."""
    keys = st.sampled_from(["a", "b", "value", "k:1", 'q"', "\u6c61"])
    scalars = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                        st.booleans(), st.none())
    tree = draw(st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                               st.dictionaries(keys, inner, max_size=4)), max_leaves=12))
    if not isinstance(tree, dict):
        tree = {"a": tree}
    repeat = draw(st.booleans()) and bool(tree)
    ascii_only = draw(st.booleans())
    space = draw(st.sampled_from(["", " ", "\n "]))

    def write(node, top=False) -> str:
        if isinstance(node, dict):
            parts = [json.dumps(k, ensure_ascii=ascii_only) + space + ":" + space + write(v) for k, v in node.items()]
            if (repeat and top) and node:
                key = next(iter(node))
                parts.append(json.dumps(key, ensure_ascii=ascii_only) + ":" + write(node[key]))
            return "{" + ",".join(parts) + "}"
        if isinstance(node, list):
            return "[" + ",".join(write(v) for v in node) + "]"
        return json.dumps(node, ensure_ascii=ascii_only)

    return write(tree, top=True), repeat


@settings(max_examples=300, deadline=None)
@given(json_objects())
def test_the_cheap_screen_never_misses_a_repeated_key(case):
    text, repeated = case
    canonical = orjson.dumps(orjson.loads(text), option=orjson.OPT_SORT_KEYS)
    if repeated:
        assert may_repeat_keys(text, canonical) and may_repeat_keys(text.encode(), canonical)
        assert repeated_key(text) is not None
    else:
        assert repeated_key(text) is None


@pytest.mark.parametrize("value, unit, reason", [
    (-5, "mg/m3", "data.value: -5 is less than the minimum of 0"),
    (1e308, "mg/m3", "data.value: 1e+308 is greater than the maximum of 1000000"),
    (2e6, "mg/m3", "data.value: 2000000.0 is greater than the maximum of 1000000"),
    (1.5e9, "ug/m3", "data.value: 1500000000.0 is greater than the maximum of 1000000000"),
    (101, "%", "data.value: 101 is greater than the maximum of 100"),
])
def test_values_outside_physical_bounds_are_quarantined_on_every_path(plugins, tmp_path, value, unit, reason):
    lines = [REG, *(json.dumps(event(f"q-{i}", 10)) for i in range(12)), json.dumps(event("x-1", value, unit=unit)),
             json.dumps(event("ok-1", 45))]
    records = run_all_paths(plugins, lines, tmp_path)
    assert quarantines(records) == {14: reason}
    findings = [r for r in map(orjson.loads, records) if r["record"] == "finding"]
    assert [f["event"] for f in findings] == [["ok-1"]]


def test_huge_minute_readings_cannot_make_an_hourly_finding_without_a_value(plugins, tmp_path):
    """main: minute readings of 1e308 averaged to an hourly finding with measured.value null."""
    lines = [REG] + [json.dumps(event(f"m-{i}", 1e308 if i % 2 else 900_000, period="minute",
                                      time=f"2024-03-01T10:{i:02d}:00+08:00")) for i in range(60)]
    records = run_all_paths(plugins, lines, tmp_path)
    assert len(quarantines(records)) == 30
    for record in map(orjson.loads, records):
        if record["record"] == "finding":
            assert record["measured"]["value"] is not None and record["judged"] is not None


@settings(max_examples=60, deadline=None)
@given(value=st.floats(0, 1e6), o2=st.floats(0, 20.999), period=st.sampled_from(["hour", "minute", "instant"]),
       volume=st.one_of(st.none(), st.floats(0, 1e9)), quantity=st.floats(1e-9, 1e12))
def test_readings_within_the_bounds_always_give_finite_valid_records(plugins, value, o2, period, volume, quantity):
    """Corrections (O2 reference, benchmark volume) of any value inside the bounds stay finite;
    every record is checked against its schema by the suite's record check (conftest)."""
    engine = Engine(plugins=plugins)
    lines = [REG, json.dumps(event("e-1", value, period=period, o2_percent=o2)),
             json.dumps({"specversion": "1.0", "id": "w-1", "source": "cems", "type": "discharge.measured",
                         "subject": SUBJECT, "time": "2024-03-01T10:00:00+08:00",
                         "data": {"outlet": "DW001", "point": "plant", "destination": "direct", "pollutant": "w01018",
                                  "value": value, "unit": "mg/L", "period": period,
                                  **({"volume_m3": volume, "production": {"quantity": quantity, "unit": "t",
                                                                          "category": "cotton_woven"}}
                                     if volume is not None else {})}})]
    for record in engine.run(lines):
        assert not isinstance(record, Quarantined), record.error
        if isinstance(record, Finding):
            assert record.judged is not None and record.measured["value"] is not None
            record.to_dict()


# ---- item 7: the small things -----------------------------------------------------------------------


def rectify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RECTIFY, *args], capture_output=True, text=True, timeout=120)


def test_verify_on_an_empty_log_is_an_intact_empty_chain(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = rectify("verify", str(empty))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 records, chain intact" in result.stderr


def test_a_byte_order_mark_is_not_part_of_the_first_line(plugins, tmp_path):
    lines = [REG, json.dumps(event("e-1", 45))]
    records = run_all_paths(plugins, [b"\xef\xbb\xbf" + lines[0].encode(), lines[1]], tmp_path)
    assert quarantines(records) == {}
    assert [r["event"] for r in map(orjson.loads, records) if r["record"] == "finding"] == [["e-1"]]
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    small = JsonlFiles([path], block_bytes=2)  # reads shorter than the mark itself
    assert [line for _, _, chunk in small.chunks(10) for line in chunk] == [x.encode() for x in lines]


def test_invalid_utf8_is_named_by_byte(plugins, tmp_path):
    records = run_all_paths(plugins, [REG, b'{"id": "caf\xe9"}', json.dumps(event("e-1", 45))], tmp_path)
    assert quarantines(records) == {2: "(line): not valid UTF-8 at byte 12 of 14 (0xe9): invalid continuation byte"}


def test_a_line_past_the_limit_is_quarantined_by_its_start_and_length_on_every_path(plugins, tmp_path):
    """A line longer than `max_line_bytes` (16 MiB) is never read whole (engine/ingest/jsonl.py):
    its record keeps its first 4,096 bytes and says how long it was, on the per-event path, the
    batch path, with a sorting process, and from an archive made of the log; the lines after it
    are read as before. On d62715f every reader held the whole line (a 256 MiB line: 1.17 GB
    resident), and a file with no newline at all was one line of its size."""
    long = b'{"id":"' + b"x" * MAX_LINE_BYTES + b'"}'
    records = run_all_paths(plugins, [REG, long, json.dumps(event("e-1", 45))], tmp_path)
    assert quarantines(records) == {2: f"(line): {len(long)} bytes, longer than the limit of {MAX_LINE_BYTES} "
                                       "(max_line_bytes): not read; the record keeps its first 4096"}
    (record,) = [r for r in map(orjson.loads, records) if r["record"] == "quarantine"]
    assert record["raw"] == long[:4096].decode()
    assert [r["event"] for r in map(orjson.loads, records) if r["record"] == "finding"] == [["e-1"]]
    log, archive = tmp_path / "events.jsonl", tmp_path / "archive"
    for args in (("archive", str(log), "--out", str(archive)), ("run", str(log), "--out", str(tmp_path / "a.jsonl")),
                 ("run", str(archive), "--out", str(tmp_path / "b.jsonl"))):
        result = rectify(*args)
        assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert b"longer than the limit" in (tmp_path / "b.jsonl").read_bytes()


def test_a_huge_bad_value_is_not_repeated_whole_in_the_error(engine):
    outlet = "X" * 1_000_000
    line = json.dumps(event("big-1", 45, outlet=outlet))
    (record,) = [r for r in engine.run([InputLine("events.jsonl", 1, line)]) if isinstance(r, Quarantined)]
    assert record.error.startswith("data.outlet: 'XXXXXXXX") and "… (1000000 characters) is too long" in record.error
    assert len(record.error) < 200 and record.raw == line  # the line itself is kept whole: nothing lost


def test_decisions_refuses_an_unknown_list_or_action(tmp_path):
    from engine.output import Store

    with Store(tmp_path / "d.db"):
        pass
    result = rectify("decisions", "--store", str(tmp_path / "d.db"), "--list", "bogus")
    assert result.returncode == 2 and "'bogus' is not one of 'backward_capacity'" in result.stderr
    result = rectify("decisions", "--store", str(tmp_path / "d.db"), "--action", "close")
    assert result.returncode == 2 and "'close' is not one of" in result.stderr
    ok = rectify("decisions", "--store", str(tmp_path / "d.db"), "--list", "scattered_polluted")
    assert ok.returncode == 0 and "0 record(s)" in ok.stderr


# ---- the calendar's edges -------------------------------------------------------------------------


def test_valid_events_at_the_calendar_end_give_records_with_deadlines_on_its_last_second(plugins, tmp_path):
    """Dates the engine derives (an order's deadline, a watch's) may fall past 9999-12-31 or
    before 0001-01-01 from valid events: they are that calendar's last or first day. Before
    2026-12-02 a reading at 9999-12-30 that made an order, or a parcel due to start in 9999,
    raised out of the engine (a traceback on the command line)."""

    def of(id: str, type: str, time: str, data: dict) -> dict:
        return {"specversion": "1.0", "id": id, "source": "t", "type": type, "subject": SUBJECT, "time": time,
                "data": data}

    def parcel(pid: str, expires_on: str) -> dict:
        return of(pid, "land.parcel.registered", "9999-12-02T00:00:00+08:00",
                  {"parcel": pid, "area_mu": 25, "use": "industrial",
                   "contract": {"signed_on": "2021-09-10", "start_by": "9999-06-01", "complete_by": "2023-09-10",
                                "expires_on": expires_on}})

    events = [of("r", "enterprise.registered", "9999-12-01T00:00:00+08:00", registration("foundry")),
              parcel("P1", "9999-12-31"), parcel("P2", "0001-06-01")]
    events += [event(f"m{hour}", 500.0, time=f"9999-12-30T{hour:02d}:00:00+08:00") for hour in range(24)]
    lines = [orjson.dumps(e) for e in events]
    records = [orjson.loads(line) for line in run_all_paths(plugins, lines, tmp_path)]
    orders = [r for r in records if r["record"] == "decision" and r["action"] == "rectify"]
    assert [o["deadline"] for o in orders] == ["9999-12-31T23:59:59+08:00"]
    assert not [r for r in records if r["record"] == "quarantine"]
    rete = Engine(plugins=plugins, backend="rete")
    assert [orjson.dumps(r.to_dict()) for r in rete.run(lines)] == [orjson.dumps(r) for r in records]


def test_a_code_that_ends_in_a_newline_is_quarantined_on_every_path(plugins, tmp_path):
    lines = [REG, orjson.dumps(event("m-1", 50.0, pollutant="a34013\n")), orjson.dumps(WATER)]
    out = run_all_paths(plugins, lines, tmp_path)
    assert quarantines(out) == {2: "data.pollutant: 'a34013\\n' does not match '^[aw][0-9]{5}$'"}


def test_integers_past_64_bits_in_event_mappings_are_quarantined_with_their_path(plugins):
    """Python's json module reads integers of any length; orjson and the compiled validator hold
    none past 64 bits. Before 2026-12-02 a valid parcel priced 10**20 raised TypeError out of
    `Engine.run`, and an invalid event with one raised while its quarantine record was made."""
    parcel = {"specversion": "1.0", "id": "p-1", "source": "t", "type": "land.parcel.registered", "subject": SUBJECT,
              "time": "2021-12-01T09:00:00+08:00",
              "data": {"parcel": "P1", "area_mu": 25, "use": "industrial",
                       "contract": {"signed_on": "2021-09-10", "start_by": "2022-03-10", "complete_by": "2023-09-10",
                                    "expires_on": "2071-09-09", "price_yuan": 10**20}}}
    reading = {**event("m-1", 10**5000), "id": 10**30}
    engine = Engine(plugins=plugins)
    records = [r.to_dict() for r in engine.run([parcel, reading, {**event("m-2", 5.0), "id": -(10**30)}])]
    why = "integers must lie between -2**63 and 2**64 - 1 (JSON tools hold no wider ones)"
    assert [(r["record"], r["error"]) for r in records] == [
        ("quarantine", f"data.contract.price_yuan: {why}"), ("quarantine", f"data.value: {why}"), ("quarantine", f"id: {why}")]
    assert '"value":"<an integer of 16610 bits>"' in records[1]["raw"] and '"id":"<an integer of 100 bits>"' in records[2]["raw"]
    assert engine.summary.quarantined == 3 and engine.summary.balanced()


def test_lone_surrogates_in_event_mappings_and_text_lines_are_quarantined_on_every_path(plugins):
    """Python's json module reads '"\\ud800"' as a lone surrogate, which orjson cannot write. Before
    2026-12-03 such a mapping raised TypeError out of `Engine.process` (not InvalidEvent), `run` and
    `run_batch` (the content digest's JSON); a str line holding one was quarantined by `run` but
    raised UnicodeEncodeError out of `run_batch`, and its record could not be written. Found by the
    differential fuzzer (fz4)."""
    from engine import InvalidEvent
    from engine.output import JsonlSink
    from engine.run import Outputs

    text = json.dumps(event("m-1", 35.0)).replace('"m-1"', '"\\ud800m-1"')  # escaped, as JSON writers do
    parsed = json.loads(text)
    assert parsed["id"] == "\ud800m-1"
    named = {**event("m-2", 35.0), "data": {**event("m-2", 35.0)["data"], "outlet": "DA\udfff1"}}
    keyed = {**event("m-3", 35.0), "data": {**event("m-3", 35.0)["data"], "\udc00": 1}}
    source = {**event("m-4", 35.0), "source": "cems/\ud83d"}
    raw_line = json.dumps(event("m-5", 35.0), ensure_ascii=False).replace('"m-5"', '"\ud800m-5"')  # a str line
    items = [REG, parsed, named, keyed, source, raw_line]
    outputs = []
    for path in ("run", "run_batch"):
        engine, written = Engine(plugins=plugins), io.BytesIO()
        Outputs(JsonlSink(written)).write_all(getattr(engine, path)(items))  # every record writable, chained
        assert engine.summary.quarantined == 5 and engine.summary.balanced()
        outputs.append(written.getvalue())
    assert outputs[0] == outputs[1]
    records = [orjson.loads(line) for line in outputs[0].splitlines()]
    errors = [r["error"] for r in records if r["record"] == "quarantine"]
    assert errors[:4] == ["id: text with a lone surrogate ('\\\\ud800m-1') is not Unicode text (no UTF-8)",
                          "data.outlet: text with a lone surrogate ('DA\\\\udfff1') is not Unicode text (no UTF-8)",
                          "data: Additional properties are not allowed ('\\udc00' was unexpected)",  # the schema's
                          "source: text with a lone surrogate ('cems/\\\\ud83d') is not Unicode text (no UTF-8)"]
    assert errors[4].startswith("(line): not valid UTF-8 at byte")  # its bytes, as on the batch path
    assert '"id":"\\\\ud800m-1"' in records[0]["raw"]
    engine = Engine(plugins=plugins)
    for item in (parsed, named, keyed, source):
        with pytest.raises(InvalidEvent):
            engine.process(item)
    assert engine.summary.quarantined == 4 and engine.summary.balanced()


def test_numbers_of_no_json_type_in_event_mappings_are_quarantined_with_their_path(plugins):
    """JSON Schema's `number` takes a Decimal (and a complex reaches its comparisons), so before
    2026-12-03 a reading with `value: Decimal('35.5')` raised TypeError out of `Engine.process`,
    `run` and `run_batch` (the unit conversion), a registration with one raised in the content
    digest's JSON, and a complex equipment attribute raised inside jsonschema. Tuples are still
    arrays. Found by the differential fuzzer (fz4)."""
    from decimal import Decimal

    from engine import InvalidEvent

    reading = {**event("m-1", 35.0), "data": {**event("m-1", 35.0)["data"], "value": Decimal("35.5")}}
    land = {**json.loads(REG), "id": "r-2", "data": {**json.loads(REG)["data"], "land_area_mu": Decimal("1.5")}}
    furnace = {"specversion": "1.0", "id": "q-1", "source": "registry", "type": "equipment.declared", "subject": SUBJECT,
               "time": "2024-03-01T09:00:00+08:00",
               "data": {"equipment_id": "IF01", "kind": "induction_furnace", "status": "active",
                        "attributes": {"capacity_t": 1 + 2j}}}
    listed = {"specversion": "1.0", "id": "i-1", "source": "inspect", "type": "inspection.recorded", "subject": SUBJECT,
              "time": "2024-03-02T10:00:00+08:00", "data": {"result": "fail", "violations": ("x", Decimal("1"))}}
    why = {"data.value": "Decimal", "data.land_area_mu": "Decimal", "data.attributes.capacity_t": "complex",
           "data.violations[1]": "Decimal"}
    expected = [("quarantine", f"{path}: a {kind} is not a JSON value") for path, kind in why.items()]
    for path in ("run", "run_batch"):
        engine = Engine(plugins=plugins)
        records = [r.to_dict() for r in getattr(engine, path)([REG, reading, land, furnace, listed])]
        assert [(r["record"], r["error"]) for r in records if r["record"] == "quarantine"] == expected
        assert engine.summary.quarantined == 4 and engine.summary.balanced()
    engine = Engine(plugins=plugins)
    engine.process(json.loads(REG))
    for item in (reading, land, furnace, listed):
        with pytest.raises(InvalidEvent):
            engine.process(item)
    assert engine.process({**listed, "data": {"result": "fail", "violations": ("x", "y")}}) == []  # a tuple is an array


def test_a_caller_that_refills_one_mapping_for_every_event_gets_the_records_of_the_jsonl(plugins):
    """Engine.process kept the caller's registration and finance data by reference: a caller that
    refills one buffer per event (its `data` too) changed what the engine knew (a 40-enterprise, 2-day
    demo city gave 11 records instead of 85; found by the differential fuzzer). Every event type of the demo."""
    events = generate_city(enterprises=60, days=3, seed=5).events
    assert {"enterprise.registered", "equipment.declared", "finance.reported", "land.parcel.registered",
            "evaluation.closed"} <= {event["type"] for event in events}
    lines = [orjson.dumps(event) for event in events]
    expected = [record.to_dict() for record in Engine(plugins=plugins).run(lines)]
    engine, buffer, got = Engine(plugins=plugins), {"data": {}}, []
    for line in lines:
        event = orjson.loads(line)
        buffer["data"].clear()
        buffer["data"].update(event.pop("data"))
        for key in [key for key in buffer if key != "data" and key not in event]:
            del buffer[key]
        buffer.update(event)
        got += [record.to_dict() for record in engine.process(buffer)]
    got += [record.to_dict() for record in engine.flush()]
    assert len(expected) > 50 and got == expected
