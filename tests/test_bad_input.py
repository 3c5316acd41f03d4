"""Bad input is quarantined with a reason that says what and where; the stream goes on;
every line ends up processed, duplicate or quarantined, and the counts add up."""

from __future__ import annotations

import json

import pytest

from conftest import SUBJECT, registration
from engine import InputLine, InvalidEvent, Quarantined

GOOD = {"specversion": "1.0", "id": "e-1", "source": "test", "type": "emission.measured", "subject": SUBJECT,
        "time": "2024-03-01T10:00:00+08:00",
        "data": {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013", "value": 45, "unit": "mg/m3", "period": "hour"}}


def line(**changes) -> str:
    event = json.loads(json.dumps(GOOD))
    data_changes = changes.pop("data", {})
    event.update(changes)
    event["data"].update(data_changes)
    return json.dumps(event)


REG = json.dumps({"specversion": "1.0", "id": "r-1", "source": "test", "type": "enterprise.registered", "subject": SUBJECT,
                  "time": "2024-01-01T08:00:00+08:00", "data": registration("foundry")})

CASES = [
    ("malformed JSON", '{"specversion": "1.0", "id": ', "invalid JSON"),
    ("not an object", "[1, 2, 3]", "(event): expected a JSON object"),
    ("bad check character", line(id="b-1", subject=SUBJECT[:17] + "0"), "subject: '91330200MA2AB12340' is not a valid uscc: check character is '0', expected 'Y'"),
    ("forbidden character", line(id="b-2", subject="91330200MA2AB1234I"), "subject:"),
    ("missing field", json.dumps({k: v for k, v in GOOD.items() if k != "time"} | {"id": "b-3"}), "(event): 'time' is a required property"),
    ("wrong type", line(id="b-4", data={"value": "45"}), "data.value: '45' is not of type 'number'"),
    ("time without offset", line(id="b-5", time="2024-03-01T10:00:00"), "time: '2024-03-01T10:00:00' is not a valid date-time"),
    ("NaN literal", line(id="b-6").replace("45", "NaN"), "invalid JSON"),
    ("infinity", line(id="b-7").replace("45", "1e999"), "invalid JSON"),
    ("unknown process", line(id="b-8", data={"process": "melting.cupla"}), "data.process: 'melting.cupla' is not one of"),
    ("extra field", line(id="b-9", data={"colour": "red"}), "data: Additional properties are not allowed ('colour' was unexpected)"),
    ("bad utf-8", b'{"id": "\xff\xfe"}', "(line): not valid UTF-8 at byte 9 of 12 (0xff): invalid start byte"),
    ("empty line", "", "invalid JSON"),
]


@pytest.mark.parametrize(("name", "raw", "reason"), CASES, ids=[c[0] for c in CASES])
def test_bad_line_is_quarantined_with_its_reason_and_the_stream_goes_on(engine, name, raw, reason):
    lines = [InputLine("events.jsonl", 1, REG), InputLine("events.jsonl", 2, raw), InputLine("events.jsonl", 3, line(id="ok-1"))]
    records = list(engine.run(lines))
    quarantined = [r for r in records if isinstance(r, Quarantined)]
    findings = [r for r in records if not isinstance(r, Quarantined)]
    assert len(quarantined) == 1
    q = quarantined[0]
    assert (q.source, q.line) == ("events.jsonl", 2)
    assert reason in q.error, q.error
    assert q.to_dict()["record"] == "quarantine"
    assert [f.event for f in findings] == [("ok-1",)]  # the next line is still judged
    s = engine.summary
    assert (s.read, s.processed, s.duplicate, s.quarantined) == (3, 2, 0, 1)


def test_duplicates_same_content_is_duplicate_different_content_is_quarantined(engine):
    records = list(engine.run([REG, line(), line(), line(data={"value": 46})]))
    assert engine.summary.duplicate == 1
    assert engine.summary.quarantined == 1
    error = next(r.error for r in records if isinstance(r, Quarantined))
    assert "id: 'e-1' was already used by a different event" in error
    assert sum(1 for r in records if not isinstance(r, Quarantined)) == 1
    assert engine.summary.balanced()


def test_unknown_type_is_counted_or_quarantined_in_strict_mode(plugins):
    from engine import Engine

    unknown = line(id="u-1", type="sensor.rebooted")
    lenient = Engine(plugins=plugins)
    assert list(lenient.run([unknown])) == []
    assert lenient.summary.unknown_types == {"sensor.rebooted": 1} and lenient.summary.processed == 1
    strict = Engine(plugins=plugins, strict=True)
    (record,) = list(strict.run([unknown]))
    assert "unknown event type 'sensor.rebooted'" in record.error
    assert strict.summary.quarantined == 1 and strict.summary.balanced()


def test_process_raises_for_embedders_and_counts(engine):
    bad = json.loads(line(id="x-1"))
    bad["data"]["value"] = float("nan")
    with pytest.raises(InvalidEvent, match=r"data.value: numbers must be finite"):
        engine.process(bad)
    assert engine.summary.quarantined == 1 and engine.summary.read == 1


def test_counts_add_up_on_a_mixed_file(engine):
    lines = [REG] + [line(id=f"m-{i}") for i in range(5)] + [line(id="m-1")] + [c[1] for c in CASES]
    list(engine.run(lines))
    s = engine.summary
    assert s.read == len(lines)
    assert (s.processed, s.duplicate, s.quarantined) == (6, 1, len(CASES))
    assert s.balanced()
