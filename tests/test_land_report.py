"""The report's land figures on a small city computed by hand (issue 18): parcels, idle land,
standard-land commitments met or missed, land recovered, low-efficiency land, land freed (counted
when a parcel is recovered or an order is verified as carried out, preferring parcel areas to the
registered land area), per district and in total, against the 45,000 mu target."""

from __future__ import annotations

import re

import pytest

from conftest import registration
from engine import Decision, Engine
from engine.report import ReportData, collect, render_html, report_text, summary_of
from engine.validate import make_uscc

A, B, C, D = (make_uscc(f"91330200MA2L{n:05d}") for n in range(4))
AS_OF = "2024-06-30T00:00:00+08:00"
CUPOLA = {"equipment_id": "C1", "kind": "cupola", "status": "active", "attributes": {"melt_rate_t_h": 2, "blast": "cold"}}


def _parcel(make_event, subject, pid, area, time="2024-01-02T09:00:00+08:00", started=True, start_by="2010-03-01",
            **extra):
    contract = {"signed_on": "2009-09-01", "start_by": start_by, "complete_by": "2012-03-01", "expires_on": "2069-08-31",
                **extra.pop("contract", {})}
    data = {"parcel": pid, "area_mu": area, "use": "industrial", "contract": contract, **extra}
    if started:
        data["started_on"] = "2010-02-01"
    return make_event("land.parcel.registered", time, data, subject=subject)


def city(make_event):
    """Beilun: A (foundry, registered 32 mu) holds P1 (20 mu, standard land, tax short: missed) and P2
    (10 mu); its backward cupola is eliminated and verified, so A is listed (P1, P2 low-efficiency land)
    and its 30 mu of parcels are freed. D holds P4 (8 mu, standard land, met) and P7 (4 mu, standard
    land, not yet checked).
    Cixi: B holds P3 (15 mu, never started: fee, then recovery approved and carried out) and P6 (6 mu,
    a year past its start date: idle). C (foundry, 12.5 mu, no parcels known) eliminates its cupola,
    verified: its registered 12.5 mu are freed."""
    ev = make_event
    events = [
        ev("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry", land_area_mu=32), subject=A),
        ev("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("other", land_area_mu=21, district="Cixi"),
           subject=B),
        ev("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry", land_area_mu=12.5, district="Cixi"),
           subject=C),
        ev("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("surface_treatment", land_area_mu=12), subject=D),
        _parcel(ev, A, "P1", 20, commitments={"tax_yuan_per_mu": 300000}, contract={"remedies": ["penalty"]}),
        _parcel(ev, A, "P2", 10),
        _parcel(ev, B, "P3", 15, time="2021-12-01T09:00:00+08:00", started=False, start_by="2022-03-10"),
        _parcel(ev, B, "P6", 6, started=False, start_by="2023-01-15"),
        _parcel(ev, D, "P4", 8, commitments={"investment_yuan_per_mu": 3000000}),
        _parcel(ev, D, "P7", 4, commitments={"tax_yuan_per_mu": 200000}),
        ev("land.parcel.inspected", "2024-01-10T10:00:00+08:00",
           {"parcel": "P1", "stage": "in_production", "on": "2023-12-31", "figures": {"tax_yuan_per_mu": 100000}}, subject=A),
        ev("land.parcel.inspected", "2024-01-10T10:00:00+08:00",
           {"parcel": "P4", "stage": "completed", "on": "2023-12-20", "figures": {"investment_yuan_per_mu": 3200000}}, subject=D),
        ev("equipment.declared", "2024-01-15T08:00:00+08:00", CUPOLA, subject=A),
        ev("equipment.declared", "2024-01-15T08:00:00+08:00", CUPOLA, subject=C),
    ]
    return sorted(events, key=lambda e: e["time"])


def follow_up(make_event, made):
    """The bureau a few months on: both eliminations verified, the recovery of P3 approved and done."""
    eliminate = {d.enterprise: d.id for d in made if d.action == "eliminate"}
    recovery = next(d for d in made if d.action == "recover_land")
    return [
        make_event("rectification.verified", "2024-04-01T10:00:00+08:00", {"decision": eliminate[A], "passed": True}, subject=A),
        make_event("rectification.verified", "2024-04-02T10:00:00+08:00", {"decision": eliminate[C], "passed": True}, subject=C),
        make_event("approval.recorded", "2024-04-10T10:00:00+08:00",
                   {"decision": recovery.id, "approved": True, "authority": "慈溪市人民政府", "document": "慈政发〔2024〕5号"},
                   subject=B),
        make_event("land.parcel.recovered", "2024-05-01T10:00:00+08:00", {"parcel": "P3", "basis": "慈政发〔2024〕5号"}, subject=B),
    ]


def _hand() -> dict:
    """The figures of `city`, counted by hand (see its docstring)."""
    beilun = {"parcels": 4, "area_mu": 42.0, "idle_parcels": 0, "idle_mu": 0.0, "commitments_met": 1, "commitments_missed": 1,
              "commitments_unchecked": 1, "remedies": 1, "recovered_parcels": 0, "recovered_mu": 0.0,
              "low_efficiency_parcels": 2, "low_efficiency_mu": 30.0, "decided_mu": 30.0, "freed_mu": 30.0}
    cixi = {"parcels": 2, "area_mu": 21.0, "idle_parcels": 1, "idle_mu": 6.0, "commitments_met": 0, "commitments_missed": 0,
            "commitments_unchecked": 0, "remedies": 0, "recovered_parcels": 1, "recovered_mu": 15.0,
            "low_efficiency_parcels": 0, "low_efficiency_mu": 0.0, "decided_mu": 27.5, "freed_mu": 27.5}
    total = {"parcels": 6, "area_mu": 63.0, "idle_parcels": 1, "idle_mu": 6.0, "commitments_met": 1, "commitments_missed": 1,
             "commitments_unchecked": 1, "remedies": 1, "recovered_parcels": 1, "recovered_mu": 15.0,
             "low_efficiency_parcels": 2, "low_efficiency_mu": 30.0, "decided_mu": 57.5, "freed_mu": 57.5}
    return {**total, "by_district": {"Beilun": beilun, "Cixi": cixi}}


@pytest.fixture(params=["compiled", "rete"])
def report_data(request, plugins, make_event, tmp_path):
    events = city(make_event)
    made = [r for r in Engine(plugins=plugins).run(events, as_of="2024-03-31T00:00:00+08:00") if isinstance(r, Decision)]
    log = tmp_path / "events.jsonl"
    import orjson

    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in [*events, *follow_up(make_event, made)]))
    return collect(Engine(plugins=plugins, backend=request.param), [str(log)], AS_OF)


def test_the_land_figures_match_the_hand_count(report_data):
    summary = summary_of(report_data)
    assert summary["land"] == _hand()
    assert (summary["land_freed_mu"], summary["land_decided_mu"]) == (57.5, 57.5)
    assert summary["progress"]["land_freed_mu"] == {"value": 57.5, "target": 45000, "percent": 0.13}
    # the land decisions are not on a list: counted per route, not by district and industry
    assert summary["by_list_action"]["unlisted/redevelop_land"] == 2
    assert summary["by_list_action"]["unlisted/contract_remedy (proposed)"] == 1
    assert summary["by_list_action"]["unlisted/idle_land_fee (proposed)"] == 2
    assert summary["by_list_action"]["unlisted/recover_land"] == 1
    assert all(not key.startswith("unlisted/") for counts in summary["by_district"].values() for key in counts)


def test_land_freed_is_never_counted_at_decision_time(report_data):
    decided_only = [d for d in report_data.decisions if d["status"] not in ("completed",)]
    without_recovery = {pid: {**p, "status": "held", "recovered": None} for pid, p in report_data.parcels.items()}
    data = ReportData(ruleset="", registry=report_data.registry, targets=report_data.targets, findings=report_data.findings,
                      decisions=decided_only, parcels=without_recovery)
    land = summary_of(data)["land"]
    assert land["freed_mu"] == 0.0 and land["decided_mu"] == 57.5 and land["recovered_mu"] == 0.0


def test_without_parcels_land_falls_back_to_the_registered_area(report_data):
    data = ReportData(ruleset="", registry=report_data.registry, targets=report_data.targets, findings=report_data.findings,
                      decisions=report_data.decisions)
    summary = summary_of(data)
    assert summary["land_freed_mu"] == 32 + 12.5  # A's and C's registered land; the recovery of P3 is unknown here
    assert summary["land"]["parcels"] == 0


def test_the_page_and_the_text_show_the_land_figures(report_data):
    html = render_html(report_data, "en")
    hand = _hand()
    for district, figures in [*hand["by_district"].items(), ("total", hand)]:
        for key in ("parcels", "idle_parcels", "idle_mu", "commitments_met", "commitments_missed", "remedies",
                    "recovered_mu", "low_efficiency_mu", "freed_mu"):
            found = re.search(rf'data-k="land/{district}/{key}" data-v="([^"]*)"', html)
            assert found and float(found.group(1)) == figures[key], (district, key)
    assert 'data-k="land_freed_mu" data-v="57.5"' in html
    zh = render_html(report_data, "zh")
    assert "低效用地" in zh and "闲置" in zh and "征缴土地闲置费" in zh
    text = report_text(summary_of(report_data))
    assert "parcels 6 (63.0 mu): idle 1 (6.0 mu); standard land: commitments met 1, missed 1, unchecked 1, remedies 1" in text
    assert "freed 57.5 mu" in text
