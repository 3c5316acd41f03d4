"""The request side of the write path as plain functions: the binding's (lines, ids) and a
receipt's answer (engine/serve/binding.py, engine/serve/service.py `Receipt`)."""

from __future__ import annotations

import orjson
import pytest

from engine.serve import NotJson, Unsupported, events_from_http, lines_from_http
from engine.serve.service import Receipt

BATCHED = {"Content-Type": "application/cloudevents-batch+json"}


def test_lines_and_ids_of_a_batch_with_elements_that_are_not_events() -> None:
    values = [{"id": "a", "x": 1}, {"id": 7}, 5, "text", {"no": "id"}, [1, 2], {"id": "b"}]
    lines, ids = lines_from_http(BATCHED, orjson.dumps(values))
    assert lines == [orjson.dumps(v) for v in values]  # every element becomes a line, in order
    assert ids == ["a", None, None, None, None, None, "b"]  # a string id only
    assert [(p.line, p.id) for p in events_from_http(BATCHED, orjson.dumps(values))] == list(zip(lines, ids))


def test_lines_keep_the_events_bytes_in_every_mode() -> None:
    event = b'{"specversion":"1.0","id":"e1","time":"2026-01-01T10:00:00.000+08:00"}'
    assert lines_from_http({"content-type": "application/cloudevents+json"}, event) == ([event], ["e1"])
    assert lines_from_http({"content-type": "application/json"}, b"[" + event + b"]") == ([event], ["e1"])
    assert lines_from_http(BATCHED, b"[]") == ([], [])
    with pytest.raises(NotJson):
        lines_from_http(BATCHED, b"[{")
    with pytest.raises(Unsupported):
        lines_from_http({"content-type": "text/plain"}, event)


def test_a_receipts_answer_lists_every_line_and_the_counts_add_up() -> None:
    receipt = Receipt(first=41, ids=["a", None, "c", "d"],
                      exceptions={1: ("quarantined", "(event): 'id' is a required property"), 2: ("duplicate", None)},
                      records=[(9, "finding", "F-1")])
    answer = receipt.answer()
    assert answer["events"] == [o.to_dict() for o in receipt.outcomes]
    assert answer["events"] == [{"seq": 41, "id": "a", "status": "accepted"},
                                {"seq": 42, "id": None, "status": "quarantined",
                                 "reason": "(event): 'id' is a required property"},
                                {"seq": 43, "id": "c", "status": "duplicate"},
                                {"seq": 44, "id": "d", "status": "accepted"}]
    assert (answer["accepted"], answer["duplicate"], answer["quarantined"]) == (2, 1, 1)
    assert answer["records"] == [{"seq": 9, "record": "finding", "id": "F-1"}]
