"""The JSON Schema files under schemas/: valid 2020-12 schemas, unique ids, and samples.

Formats (`uscc`, `date-time`, `date`) are not checked here: the engine enforces them with
its own format checkers. These tests only pin the structure of the schemas.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
SCHEMA_FILES = sorted(SCHEMAS.rglob("*.json"))

SUBJECT = "91330200MA2AAAAAAF"
RULESET = "sha256:" + "0" * 64


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _registry() -> Registry:
    resources = [
        (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012))
        for doc in map(_load, SCHEMA_FILES)
    ]
    return Registry().with_resources(resources)


REGISTRY = _registry()


def _validator(schema_id: str) -> Draft202012Validator:
    schema = REGISTRY.contents(schema_id)
    return Draft202012Validator(schema, registry=REGISTRY)


def test_schema_files_exist():
    names = {p.relative_to(SCHEMAS).as_posix() for p in SCHEMA_FILES}
    for name in ("envelope.schema.json", "vocabulary.schema.json", "finding.schema.json",
                 "decision.schema.json", "quarantine.schema.json"):
        assert name in names
    assert {f"events/{t}.schema.json" for t in EVENTS} <= names


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.relative_to(SCHEMAS).as_posix())
def test_is_valid_2020_12_schema(path):
    doc = _load(path)
    assert doc.get("$schema") == "https://json-schema.org/draft/2020-12/schema"
    assert isinstance(doc.get("$id"), str) and doc["$id"].startswith("urn:rectify:schema:")
    Draft202012Validator.check_schema(doc)


def test_ids_are_unique():
    ids = [_load(p)["$id"] for p in SCHEMA_FILES]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"duplicate $id: {duplicates}"


def test_every_ref_resolves():
    for path in SCHEMA_FILES:
        doc = _load(path)
        resolver = REGISTRY.resolver(base_uri=doc["$id"])
        for ref in _refs(doc):
            resolver.lookup(ref)  # raises when unresolvable


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


# One valid and one invalid `data` per core event type.
EVENTS = {
    "enterprise.registered": (
        {"name": "Ningbo Example Foundry Co.", "industry": "foundry", "district": "Beilun",
         "in_park": False, "land_area_mu": 12.5, "eia_approved_on": "2019-05-20",
         "permits": {"emission_permit": True}, "scale": "above", "annual_capacity_t": 3500,
         "metal": "iron"},
        {"name": "X", "industry": "Foundry", "district": "Beilun", "in_park": False},
    ),
    "equipment.declared": (
        {"equipment_id": "C1", "kind": "cupola", "status": "active",
         "attributes": {"melt_rate_t_h": 2.5, "blast": "cold", "yoke": False}},
        {"equipment_id": "C1", "kind": "cupola", "status": "active",
         "attributes": {"melt_rate_t_h": [2.5]}},
    ),
    "emission.measured": (
        # standards.md: cold-blast cupola, 35 mg/m3 PM at 18 % O2 (judged at 70).
        {"outlet": "DA001", "process": "melting.cupola.cold_blast", "pollutant": "a34013",
         "value": 35, "unit": "mg/m3", "period": "hour", "o2_percent": 18, "flag": "N"},
        {"outlet": "DA001", "process": "melting.cupola.cold_blast", "pollutant": "a34013",
         "value": 35, "unit": "mg/m3", "period": "hour", "o2_percent": 21},
    ),
    "discharge.measured": (
        {"outlet": "DW001", "point": "plant", "destination": "park_plant", "pollutant": "w01018",
         "value": 180.0, "unit": "mg/L", "period": "day", "flag": "N", "volume_m3": 1500,
         "production": {"quantity": 10, "unit": "t", "category": "cotton_woven"}},
        {"outlet": "DW001", "point": "plant", "destination": "park_plant", "pollutant": "w01018",
         "value": 180.0, "unit": "mg/L", "period": "day", "volume_m3": 1500},
    ),
    "energy.reported": (
        {"period": "2024-03", "energy_tce": 120.5, "electricity_kwh": 350000,
         "value_added_yuan": 2.1e6, "water_t": 800, "water_reused_t": 320,
         "output": {"quantity": 400, "unit": "t_castings"}},
        {"period": "2024-13"},
    ),
    "finance.reported": (
        {"year": 2024, "tax_yuan": -5000, "value_added_yuan": 8e6, "revenue_yuan": 3e7,
         "rd_expense_yuan": 9e5, "employees_fte": 85, "energy_tce": 1400,
         "electricity_kwh": 4.2e6, "emissions_kg": 2300},
        {"year": 2024, "revenue_yuan": -1},
    ),
    "inspection.recorded": (
        {"result": "fail", "violations": ["no_permit", "open_burning"], "notes": "yard"},
        {"result": "fail", "violations": ["no_permit", "no_permit"]},
    ),
    "rectification.verified": (
        {"decision": "d-0001", "passed": True},
        {"decision": "", "passed": True},
    ),
    "evaluation.closed": (
        {"year": 2024},
        {"year": "2024"},
    ),
    "land.parcel.registered": (
        {"parcel": "330206-2019-017", "area_mu": 50, "use": "industrial",
         "contract": {"signed_on": "2019-03-01", "start_by": "2019-09-01", "complete_by": "2021-03-01",
                      "expires_on": "2069-02-28", "price_yuan": 2.1e7, "remedies": ["penalty", "no_renewal"]},
         "started_on": "2019-08-20", "commitments": {"investment_yuan_per_mu": 3e6, "tax_yuan_per_mu": 3e5, "floor_area_ratio": 1.2}},
        {"parcel": "P1", "area_mu": 0, "use": "industrial",
         "contract": {"signed_on": "2019-03-01", "start_by": "2019-09-01", "complete_by": "2021-03-01", "expires_on": "2069-02-28"}},
    ),
    "land.parcel.inspected": (
        {"parcel": "P1", "stage": "not_started", "on": "2022-11-18",
         "delay": {"cause": "delivery_late", "verified": True, "document": "甬自然资规〔2022〕31号"}},
        {"parcel": "P1", "stage": "built", "on": "2022-11-18"},
    ),
    "land.parcel.recovered": (
        {"parcel": "P1", "basis": "慈政发〔2024〕5号", "decision": "D-x", "compensated": False},
        {"parcel": "P1"},
    ),
    "land.parcel.transferred": (
        {"parcel": "P1", "to": SUBJECT, "basis": "转让合同 2024-17"},
        {"parcel": "P1", "basis": "x"},
    ),
}


@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_valid_event_data_passes(event_type):
    good, _ = EVENTS[event_type]
    errors = list(_validator(f"urn:rectify:schema:event:{event_type}").iter_errors(good))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_invalid_event_data_fails(event_type):
    _, bad = EVENTS[event_type]
    assert not _validator(f"urn:rectify:schema:event:{event_type}").is_valid(bad)


@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_core_data_schemas_are_closed(event_type):
    good, _ = EVENTS[event_type]
    assert not _validator(f"urn:rectify:schema:event:{event_type}").is_valid(
        {**good, "unexpected": 1})


ENVELOPE = {
    "specversion": "1.0", "id": "e-1", "source": "hj212-gateway", "type": "emission.measured",
    "subject": SUBJECT, "time": "2024-03-01T10:00:00+08:00", "data": {"anything": "goes"},
}


def test_envelope():
    v = _validator("urn:rectify:schema:envelope")
    assert v.is_valid(ENVELOPE)
    assert v.is_valid({**ENVELOPE, "datacontenttype": "application/json", "traceparent": "x"})
    assert not v.is_valid({**ENVELOPE, "specversion": "0.3"})
    assert not v.is_valid({**ENVELOPE, "type": "emission"})
    assert not v.is_valid({**ENVELOPE, "Unknown-Attr": 1})
    assert not v.is_valid({k: val for k, val in ENVELOPE.items() if k != "data"})


FINDING = {
    "record": "finding", "id": "f-1", "rule": "foundry.gb39726.t1.pm", "rule_version": 1,
    "plugin": "foundry", "enterprise": SUBJECT, "time": "2024-03-01T10:00:00+08:00",
    "event": ["e-1"], "pollutant": "a34013", "measured": {"value": 35, "unit": "mg/m3"},
    "judged": 70.0, "limit": {"value": 40, "unit": "mg/m3"},
    "basis": {"standard": "GB 39726-2020", "table": "1"}, "verified": True, "ruleset": RULESET,
    "corrections": [{"kind": "o2_reference", "o2_ref": 15, "o2_measured": 18}],
}

DECISION = {
    "record": "decision", "id": "d-1", "rule": "programme.scattered.repeat_exceedance", "rule_version": 1, "enterprise": SUBJECT,
    "time": "2024-03-01T10:00:00+08:00", "list": "scattered_polluted", "action": "rectify",
    "deadline": "2024-06-01T00:00:00+08:00",
    "basis": {"standard": "GB 39726-2020", "clause": "8.3"},
    "evidence": {"findings": ["f-1"], "events": ["e-1"]}, "supersedes": None, "status": "effective", "ruleset": RULESET,
}


def test_output_records():
    finding = _validator("urn:rectify:schema:finding")
    assert finding.is_valid(FINDING)
    assert finding.is_valid({**FINDING, "limit": {"min": 6, "max": 9, "unit": "-"}})
    assert finding.is_valid({**FINDING, "pollutant": None, "measured": None, "judged": None,
                             "limit": None})
    assert not finding.is_valid({**FINDING, "limit": {"value": 40, "max": 9, "unit": "mg/m3"}})
    assert not finding.is_valid({**FINDING, "event": []})
    assert not finding.is_valid({**FINDING, "ruleset": "md5:abc"})

    decision = _validator("urn:rectify:schema:decision")
    assert decision.is_valid(DECISION)
    assert decision.is_valid({**DECISION, "list": None, "deadline": None,
                              "action": "close_by_law", "supersedes": "d-0"})
    assert not decision.is_valid({**DECISION, "action": "warn"})
    assert decision.is_valid({**DECISION, "action": "close_by_law", "status": "proposed", "supersedes": "d-0", "deadline": None})
    assert not decision.is_valid({**DECISION, "status": "pending"})
    assert not decision.is_valid({k: v for k, v in DECISION.items() if k != "status"})

    gap = _validator("urn:rectify:schema:data_gap")
    record = {"record": "data_gap", "id": "G-" + "0" * 24, "rule": FINDING["rule"], "rule_version": 1, "plugin": "foundry",
              "enterprise": SUBJECT, "time": FINDING["time"], "event": ["e-1"], "pollutant": "a34013", "period": "hour",
              "reason": "o2_missing", "detail": "the limit is referenced to 15 % O2", "measured": {"value": 35.0, "unit": "mg/m3"},
              "basis": {"standard": "GB 39726-2020"}, "ruleset": RULESET}
    assert gap.is_valid(record)
    assert not gap.is_valid({**record, "reason": "unknown"})
    assert not gap.is_valid({**record, "id": "F-" + "0" * 24})

    quarantine = _validator("urn:rectify:schema:quarantine")
    record = {"record": "quarantine", "line": 3, "source": "events.jsonl", "raw": "{",
              "error": "line 3: not JSON"}
    assert quarantine.is_valid(record)
    assert not quarantine.is_valid({**record, "line": 0})
