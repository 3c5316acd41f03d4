"""Shared fixtures: a real Engine with the installed plugins, and an event builder."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings

# Randomised tests run the same examples every time (CI, and by default here): derandomized,
# no example database. HYPOTHESIS_PROFILE=explore searches afresh.
settings.register_profile("rectify", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "rectify"))

from engine import Engine

SUBJECT = "91330200MA2AB1234Y"  # a valid unified social credit code (check character Y)


@pytest.fixture(scope="session")
def plugins():
    from engine import load_plugins

    return load_plugins()


@pytest.fixture
def engine(plugins) -> Engine:
    return Engine(plugins=plugins)


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    counter = iter(range(1, 1_000_000))

    def build(type: str, time: str, data: dict[str, Any], subject: str = SUBJECT, id: str | None = None) -> dict[str, Any]:
        return {"specversion": "1.0", "id": id or f"t-{next(counter)}", "source": "test", "type": type,
                "subject": subject, "time": time, "data": data}

    return build


def registration(industry: str, *, in_park: bool = True, eia: str = "2010-01-01", **extra: Any) -> dict[str, Any]:
    data = {"name": f"Test {industry}", "industry": industry, "district": "Beilun", "in_park": in_park,
            "eia_approved_on": eia, "permits": {"emission_permit": True}, "scale": "above"}
    data.update(extra)
    return data


@pytest.fixture(autouse=True)
def english_locale(monkeypatch):
    """Every test starts in an English locale (the CLI's --lang default comes from LANG); a test
    that wants Chinese says so with --lang zh or its own LANG."""
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
# ---- every record any test makes is checked against its schema (issue 15, item 4) -------------
#
# Records reach a file only through their `to_dict` (engine/records.py; the sinks, the store and
# the CLI write what it returns), so wrapping it checks every record made in this process. Files
# written by CLI subprocesses under the session's temporary folder are checked at the end: every
# JSON line (or SQLite store record) with a "record" field. A record kind must have a schema file
# schemas/KIND.schema.json; jsonschema-rs checks (fast), jsonschema names the problem.

import json as _json
import sqlite3 as _sqlite3
from pathlib import Path as _Path

_SCHEMAS = _Path(__file__).resolve().parent.parent / "schemas"
_validators: dict[str, Any] = {}
_bad_records: list[str] = []


def _record_problem(record: Any) -> str | None:
    import jsonschema
    import jsonschema_rs

    import orjson

    if not isinstance(record, dict) or not isinstance(record.get("record"), str):
        return f"not a record: {str(record)[:200]}"
    try:
        record = orjson.loads(orjson.dumps(record))  # as written: orjson writes NaN and infinity as null
    except TypeError as exc:
        return f"{record['record']} {record.get('id')!r} cannot be written as JSON: {exc}"
    kind = record["record"]
    validator = _validators.get(kind)
    if validator is None:
        path = _SCHEMAS / f"{kind.replace('_', '-')}.schema.json"
        path = path if path.exists() else _SCHEMAS / f"{kind}.schema.json"
        if not path.exists():
            return f"record kind {kind!r} has no schema in schemas/"
        schema = _json.loads(path.read_text(encoding="utf-8"))
        validator = _validators[kind] = (jsonschema_rs.Draft202012Validator(schema), jsonschema.Draft202012Validator(schema))
    try:
        if validator[0].is_valid(record):
            return None
    except (ValueError, OverflowError):
        pass
    error = jsonschema.exceptions.best_match(validator[1].iter_errors(record))
    where = "/".join(map(str, error.absolute_path)) if error is not None else "?"
    return f"{kind} {record.get('id')!r} fails its schema at {where}: {error.message if error else 'unrepresentable value'}"


@pytest.fixture(scope="session", autouse=True)
def _records_checked_against_their_schemas(tmp_path_factory):
    from engine import records

    originals = {}
    for name in ("Finding", "Decision", "Quarantined", "DataGap"):
        cls = getattr(records, name, None)
        if cls is None or not hasattr(cls, "to_dict"):
            continue
        originals[cls] = cls.to_dict

        def checked(self, _original=cls.to_dict):
            record = _original(self)
            problem = _record_problem(record)
            if problem is not None:
                _bad_records.append(problem)
            return record

        cls.to_dict = checked
    yield
    for cls, original in originals.items():
        cls.to_dict = original
    files = 0
    for path in sorted(tmp_path_factory.getbasetemp().rglob("*")):
        if not path.is_file() or path.suffix not in (".jsonl", ".db", ".json"):
            continue
        files += 1
        for problem in _file_problems(path):
            _bad_records.append(f"{path}: {problem}")
    assert not _bad_records, "records that fail their schema:\n" + "\n".join(_bad_records[:20])


def _file_problems(path: _Path) -> list[str]:
    with open(path, "rb") as handle:
        head = handle.read(16)
    lines: list[bytes]
    if head == b"SQLite format 3\x00":
        try:
            db = _sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                lines = [bytes(row[0]) for row in db.execute("SELECT line FROM records")]
            finally:
                db.close()
        except _sqlite3.Error:
            return []  # not a store, or damaged on purpose (tests of damaged stores)
    else:
        lines = path.read_bytes().split(b"\n")
    from engine.output.chain import record_hash

    problems = []
    for line in lines:
        if not line.startswith(b'{"record":'):
            continue  # events, summaries, damaged lines written on purpose: not records made by rectify
        try:
            record = _json.loads(line)
        except ValueError:
            continue
        if "hash" in record and record_hash(record) != record["hash"]:
            continue  # edited after rectify wrote it (the tests of tamper detection do that on purpose)
        problem = _record_problem(record)
        if problem is not None:
            problems.append(problem)
    return problems


@pytest.fixture(autouse=True)
def _no_record_fails_its_schema():
    before = len(_bad_records)
    yield
    assert len(_bad_records) == before, "records that fail their schema:\n" + "\n".join(_bad_records[before:before + 10])


def pytest_collection_modifyitems(items):
    """The browser tests run first, in a pytest process nothing else has run in yet. On the
    development machine, after some hundreds of tests in the same process, Playwright's driver
    sometimes could not start Chromium at all (`spawn /usr/bin/chromium ENOENT`, before any process
    started; three launches in a row failed, and the module on its own always passed). The tests
    and what they check are unchanged; only their place in the run."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/test_report_browser.py") else 1)
