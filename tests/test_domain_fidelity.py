"""Domain fidelity (issue 14): closures need approval, every route has a deadline, discharging
without a permit is itself the violation, wastewater is judged on daily means and grab samples,
readings that cannot be judged are data gaps, the mu-average scores zero emissions as the best,
land counts as freed when it is vacated. Every scenario runs on both backends."""

from __future__ import annotations

import orjson
import pytest

from conftest import SUBJECT, registration
from engine import Decision, Engine, Finding, InputLine
from engine.records import DataGap
from engine.validate import make_uscc

OTHER = make_uscc("91330200MA2CD5678")


@pytest.fixture(params=["compiled", "rete"])
def engine(request, plugins) -> Engine:
    return Engine(plugins=plugins, backend=request.param)


def kinds(records, kind):
    return [r for r in records if isinstance(r, kind)]


def exceedance(make_event, day: str, subject: str = SUBJECT):
    return make_event("emission.measured", f"2024-03-{day}T10:00:00+08:00",
                      {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013", "value": 45,
                       "unit": "mg/m3", "period": "hour"}, subject=subject)


def ordered(make_event):
    return [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry")),
            make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("other"), subject=OTHER),
            exceedance(make_event, "01"), exceedance(make_event, "05"), exceedance(make_event, "09")]


# ---- closures are proposals; approval.recorded decides them ----------------------------------

def test_a_missed_deadline_proposes_a_closure_that_an_approval_makes_effective(engine, make_event):
    records = list(engine.run(ordered(make_event), as_of="2024-06-08T00:00:00+08:00"))
    order, proposal = kinds(records, Decision)
    assert (proposal.action, proposal.status, proposal.supersedes) == ("close_by_law", "proposed", order.id)
    approval = make_event("approval.recorded", "2024-06-20T09:00:00+08:00",
                          {"decision": proposal.id, "approved": True, "authority": "宁波市北仑区人民政府",
                           "document": "仑政发〔2024〕7号"})
    (effective,) = kinds(engine.process(approval), Decision)
    assert (effective.action, effective.status, effective.supersedes) == ("close_by_law", "effective", proposal.id)
    assert effective.events == (approval["id"],) and effective.findings == proposal.findings
    assert "仑政发〔2024〕7号" in effective.basis["note"] and effective.basis["standard"] == proposal.basis["standard"]
    # the enterprise stays closed: nothing more is decided for it
    assert kinds(engine.run([exceedance(make_event, "10")] * 0 + [
        make_event("emission.measured", f"2024-07-0{d}T10:00:00+08:00", exceedance(make_event, "01")["data"]) for d in range(1, 5)]),
        Decision) == []


def test_a_refused_approval_withdraws_the_proposal_and_the_enterprise_can_be_ordered_again(engine, make_event):
    records = list(engine.run(ordered(make_event), as_of="2024-06-08T00:00:00+08:00"))
    proposal = kinds(records, Decision)[-1]
    refusal = make_event("approval.recorded", "2024-06-20T09:00:00+08:00",
                         {"decision": proposal.id, "approved": False, "authority": "宁波市北仑区人民政府",
                          "document": "仑政发〔2024〕8号", "note": "整改已完成"})
    (withdrawn,) = kinds(engine.process(refusal), Decision)
    assert (withdrawn.status, withdrawn.supersedes) == ("withdrawn", proposal.id) and "整改已完成" in withdrawn.basis["note"]
    again = [make_event("emission.measured", f"2024-07-0{d}T10:00:00+08:00", exceedance(make_event, "01")["data"])
             for d in range(1, 4)]
    (order,) = kinds([r for e in again for r in engine.process(e)], Decision)
    assert (order.action, order.status) == ("rectify", "effective")


def test_an_approval_naming_no_open_proposal_is_counted_and_decides_nothing(engine, make_event):
    records = list(engine.run(ordered(make_event)))
    order = kinds(records, Decision)[0]
    for decision, subject in (("D-nothing", SUBJECT), (order.id, SUBJECT), (order.id, OTHER)):
        event = make_event("approval.recorded", "2024-04-01T00:00:00+08:00",
                           {"decision": decision, "approved": True, "authority": "x", "document": "y"}, subject=subject)
        assert kinds(engine.process(event), Decision) == []
    engine.flush()
    assert engine.summary.unmatched_approvals == 3


def test_a_verification_failing_at_the_deadline_proposes_a_closure_then(engine, make_event):
    records = list(engine.run(ordered(make_event)))
    order = kinds(records, Decision)[0]
    failing = make_event("rectification.verified", order.deadline, {"decision": order.id, "passed": False})
    (proposal,) = kinds(engine.process(failing), Decision)
    assert (proposal.status, proposal.time, proposal.events) == ("proposed", order.deadline, (failing["id"],))


def test_every_route_has_a_deadline_and_escalates_when_missed(engine, make_event):
    """Backward equipment: eliminate within the programme's eliminate_deadline_days (180)."""
    events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry")),
              make_event("equipment.declared", "2024-01-02T08:00:00+08:00",
                         {"equipment_id": "C1", "kind": "cupola", "status": "active",
                          "attributes": {"melt_rate_t_h": 2, "blast": "cold"}})]
    eliminate, proposal = kinds(engine.run(events, as_of="2024-12-31T00:00:00+08:00"), Decision)
    assert (eliminate.action, eliminate.deadline) == ("eliminate", "2024-06-30T08:00:00+08:00")
    assert (proposal.action, proposal.status, proposal.time) == ("close_by_law", "proposed", eliminate.deadline)


def test_deadlines_of_routes_are_the_authoritys_parameters(plugins, make_event):
    engine = Engine(plugins=plugins, parameters={"programme": {"eliminate_deadline_days": 30}})
    events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry")),
              make_event("equipment.declared", "2024-01-02T08:00:00+08:00",
                         {"equipment_id": "C1", "kind": "cupola", "status": "active",
                          "attributes": {"melt_rate_t_h": 2, "blast": "cold"}})]
    (eliminate,) = kinds(engine.run(events), Decision)
    assert eliminate.deadline == "2024-02-01T08:00:00+08:00"


# ---- discharging without a permit ------------------------------------------------------------

def test_discharging_without_a_permit_is_listed_at_the_first_measurement(engine, make_event):
    reg = registration("foundry")
    reg["permits"] = {"emission_permit": False}
    quiet = make_event("emission.measured", "2024-03-01T10:00:00+08:00",
                       {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013", "value": 5,
                        "unit": "mg/m3", "period": "hour"})
    records = list(engine.run([make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", reg), quiet,
                               make_event("emission.measured", "2024-03-01T11:00:00+08:00", quiet["data"])]))
    assert kinds(records, Finding) == []
    (order,) = kinds(records, Decision)
    assert (order.rule, order.action, order.events) == ("programme.scattered.no_permit", "rectify", (quiet["id"],))
    assert "Art. 2" in order.basis["clause"]


def test_the_batch_path_lists_a_permitless_enterprise_like_the_per_event_path(plugins, make_event):
    reg = registration("foundry")
    reg["permits"] = {"emission_permit": False}
    events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry"), subject=OTHER)]
    events.append(make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", reg))
    for hour in range(40):
        for subject in (OTHER, SUBJECT):
            events.append(make_event("emission.measured", f"2024-03-01T{hour % 24:02d}:00:00+08:00",
                                     {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013",
                                      "value": 5 + hour % 7, "unit": "mg/m3", "period": "hour"}, subject=subject))
    lines = [InputLine("log", n, orjson.dumps(e)) for n, e in enumerate(events, start=1)]
    per_event, batch = Engine(plugins=plugins), Engine(plugins=plugins)
    a = [r.to_dict() for r in per_event.run(lines)]
    b = [r.to_dict() for r in batch.run_batch(lines, batch_size=16)]
    assert a == b and [d["rule"] for d in a if d["record"] == "decision"] == ["programme.scattered.no_permit"]
    assert batch.lane_stats["quiet"] > 30


# ---- wastewater: daily means, grab samples, data gaps ------------------------------------------

def dyeing(make_event, *readings):
    return [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("dyeing", sub_sector="cotton_woven")),
            *readings]


def water(make_event, time, value, period, **extra):
    return make_event("discharge.measured", time, {"outlet": "DW001", "point": "plant", "destination": "direct",
                                                   "pollutant": "w01018", "value": value, "unit": "mg/L",
                                                   "period": period, **extra})


def test_hourly_wastewater_values_are_judged_as_their_daily_mean(engine, make_event):
    """HJ 212 CN 2061 hourly packets of COD 480 and 520 mg/L against 80: the day's mean, 500."""
    records = list(engine.run(dyeing(make_event, water(make_event, "2024-03-01T10:00:00+08:00", 480, "hour"),
                                     water(make_event, "2024-03-01T11:00:00+08:00", 520, "hour"))))
    (finding,) = kinds(records, Finding)
    assert (finding.rule, finding.time, finding.judged) == ("dyeing.gb4287.t2.direct.cod", "2024-03-01T00:00:00+08:00", 500.0)
    assert len(finding.event) == 2
    assert finding.corrections[-1]["kind"] == "benchmark_volume" and finding.corrections[-1]["applied"] is False


def test_a_daily_mean_closes_when_the_next_day_begins(engine, make_event):
    events = dyeing(make_event, water(make_event, "2024-03-01T23:00:00+08:00", 100, "hour"),
                    water(make_event, "2024-03-02T00:00:00+08:00", 10, "hour"))
    first = [r for e in events for r in engine.process(e)]
    assert [f.time for f in kinds(first, Finding)] == ["2024-03-01T00:00:00+08:00"]  # at the next day's first value
    assert kinds(engine.flush(), Finding) == []  # 10 mg/L is inside the limit... and has no benchmark inputs:
    assert engine.summary.data_gaps["benchmark_inputs_missing"] == 1


def test_a_supervisory_grab_sample_is_judged(engine, make_event):
    records = list(engine.run(dyeing(make_event, water(make_event, "2024-03-01T10:20:00+08:00", 95, "instant"))))
    (finding,) = kinds(records, Finding)
    assert finding.judged == 95.0 and not any(c["kind"] == "benchmark_volume" for c in finding.corrections)


def test_too_few_hourly_values_for_a_daily_mean_is_a_data_gap_once_the_authority_sets_the_minimum(plugins, make_event):
    engine = Engine(plugins=plugins, parameters={"programme": {"min_valid_hours_per_day": 20}})
    records = list(engine.run(dyeing(make_event, water(make_event, "2024-03-01T10:00:00+08:00", 480, "hour"),
                                     water(make_event, "2024-03-01T11:00:00+08:00", 520, "hour"))))
    assert kinds(records, Finding) == []
    (gap,) = [g for g in kinds(records, DataGap) if g.rule == "dyeing.gb4287.t2.direct.cod"]
    assert (gap.reason, gap.period) == ("too_few_values", "day") and "2 valid value(s)" in gap.detail


def test_a_compliant_daily_value_without_volume_or_production_is_a_data_gap(engine, make_event):
    records = list(engine.run(dyeing(make_event, water(make_event, "2024-03-01T00:00:00+08:00", 60, "day"))))
    (gap,) = kinds(records, DataGap)
    assert gap.reason == "benchmark_inputs_missing" and "volume_m3 and production" in gap.detail
    assert engine.summary.to_dict()["data_gaps"] == {"benchmark_inputs_missing": 1}


def test_several_product_categories_add_up_to_the_benchmark_volume(engine, make_event):
    """Σ Yᵢ·Qᵢ: 5 t cotton woven (140) + 4 t knitted (85) = 1040 m3; 2080 m3 discharged doubles 50 to 100."""
    production = [{"quantity": 5, "unit": "t", "category": "cotton_woven"}, {"quantity": 4, "unit": "t", "category": "knitted"}]
    records = list(engine.run(dyeing(make_event, water(make_event, "2024-03-01T00:00:00+08:00", 50, "day",
                                                       volume_m3=2080, production=production))))
    (finding,) = kinds(records, Finding)
    assert finding.judged == 100.0 and finding.corrections[-1]["benchmark_m3"] == 1040.0


def test_missing_oxygen_at_a_cupola_is_a_data_gap_not_an_uncorrected_judgement(engine, make_event):
    records = list(engine.run([
        make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry")),
        make_event("emission.measured", "2024-03-01T10:00:00+08:00",
                   {"outlet": "DA001", "process": "melting.cupola.cold_blast", "pollutant": "a34013", "value": 35,
                    "unit": "mg/m3", "period": "hour"})]))
    assert kinds(records, Finding) == []
    (gap,) = kinds(records, DataGap)
    assert (gap.reason, gap.rule, gap.measured) == ("o2_missing", "foundry.gb39726.t1.cupola.pm", {"value": 35.0, "unit": "mg/m3"})
    assert "15 % O2" in gap.detail


def test_electroplating_discharge_to_a_municipal_plant_is_judged_on_first_class_pollutants_only(engine, make_event):
    """GB 21900-2008 §1: COD at the plant outlet into a municipal sewer is agreed with the plant."""
    reg = make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("surface_treatment"))
    day = {"volume_m3": 1, "production": {"quantity": 10, "unit": "m2", "category": "single"}, "period": "day"}
    records = list(engine.run([reg,
        make_event("discharge.measured", "2024-03-01T00:00:00+08:00",
                   {"outlet": "DW001", "point": "plant", "destination": "municipal", "pollutant": "w01018", "value": 300,
                    "unit": "mg/L", **day}),
        make_event("discharge.measured", "2024-03-01T00:00:00+08:00",
                   {"outlet": "DW002", "point": "workshop", "destination": "municipal", "pollutant": "w20111", "value": 15,
                    "unit": "ug/L", **day})]))
    assert [f.rule for f in kinds(records, Finding)] == ["surface_treatment.gb21900.t2.workshop.hg"]


# ---- land freed when vacated -------------------------------------------------------------------

def test_land_counts_as_freed_when_the_order_is_verified(engine, make_event):
    from engine.report import programme_report

    events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry", land_area_mu=12.5)),
              make_event("equipment.declared", "2024-01-02T08:00:00+08:00",
                         {"equipment_id": "C1", "kind": "cupola", "status": "active",
                          "attributes": {"melt_rate_t_h": 2, "blast": "cold"}})]
    decided = [r.to_dict() for r in engine.run(events) if isinstance(r, Decision)]
    report = programme_report(decided, engine.registry, engine.targets())
    assert (report["land_decided_mu"], report["land_freed_mu"]) == (12.5, 0.0)
    order = next(d for d in decided if d["record"] == "decision")
    done = [r.to_dict() for r in engine.run([make_event("rectification.verified", "2024-05-01T00:00:00+08:00",
                                                          {"decision": order["id"], "passed": True})])
            if isinstance(r, Decision)]
    assert [d["status"] for d in done] == ["completed"]
    report = programme_report(decided + done, engine.registry, engine.targets())
    assert (report["land_decided_mu"], report["land_freed_mu"]) == (12.5, 12.5)
    assert report["progress"]["land_freed_mu"]["value"] == 12.5


# ---- the mu-average method -----------------------------------------------------------------------

def _city(make_event, firms):
    """(code, scale, land, finance data) -> registrations, finance for 2023, the close."""
    events = []
    for n, (scale, land, data) in enumerate(firms):
        subject = make_uscc(f"91330200MA2K{n:05d}")
        events.append(make_event("enterprise.registered", "2024-01-01T08:00:00+08:00",
                                 {"name": f"f{n}", "industry": "other", "district": "Beilun", "in_park": True,
                                  "land_area_mu": land, "scale": scale}, subject=subject))
        events.append(make_event("finance.reported", "2024-02-01T08:00:00+08:00", {"year": 2023, **data}, subject=subject))
    events.append(make_event("evaluation.closed", "2024-03-01T00:00:00+08:00", {"year": 2023},
                             subject=make_uscc("11330200MB0000001")))
    return events


def _above(n, emissions=50):
    data = {"tax_yuan": 1_000_000 * n, "value_added_yuan": 4_000_000 * n, "revenue_yuan": 20_000_000, "rd_expense_yuan": 100_000,
            "employees_fte": 20, "energy_tce": 100}
    if emissions is not None:
        data["emissions_kg"] = emissions
    return data


def _ranked(engine, events):
    engine.evaluation.keep.add(2023)
    list(engine.run(events))
    return {row.enterprise[-6:-1]: row for row in engine.evaluation.rankings[2023]}


def test_an_enterprise_with_no_emissions_scores_the_best_on_value_added_per_emissions(plugins, make_event):
    events = _city(make_event, [("above", 10, _above(n + 1)) for n in range(4)] + [("above", 10, _above(2, emissions=0))])
    rows = _ranked(Engine(plugins=plugins), events)
    cells = {k: r.indicators["value_added_per_kg_pollutant"] for k, r in rows.items()}
    clean = next(c for c in cells.values() if c["flag"] == "zero_denominator")
    assert clean["score"] == max(c["score"] for c in cells.values()) > 0


def test_missing_values_score_zero_or_the_population_mean_as_the_method_says(plugins, make_event):
    import yaml

    from engine.decide.evaluation import DEFAULT_METHOD

    firms = [("above", 10, _above(n + 1)) for n in range(4)] + [("above", 10, _above(2, emissions=None))]
    rows = _ranked(Engine(plugins=plugins), _city(make_event, firms))
    cells = [r.indicators["value_added_per_kg_pollutant"] for r in rows.values()]
    assert [c["score"] for c in cells if c["flag"] == "missing"] == [0.0]
    from importlib import resources

    document = yaml.safe_load(resources.files(DEFAULT_METHOD[0]).joinpath(DEFAULT_METHOD[1]).read_text(encoding="utf-8"))
    rows = _ranked(Engine(plugins=plugins, evaluation_method={**document, "missing_scores": "mean"}), _city(make_event, firms))
    cells = [r.indicators["value_added_per_kg_pollutant"] for r in rows.values()]
    defined = [c["score"] for c in cells if c["flag"] is None]
    assert [c["score"] for c in cells if c["flag"] == "missing"] == [pytest.approx(sum(defined) / len(defined), abs=1e-6)]


def test_classes_by_score_thresholds(plugins, make_event):
    import yaml
    from importlib import resources

    from engine.decide.evaluation import DEFAULT_METHOD

    document = yaml.safe_load(resources.files(DEFAULT_METHOD[0]).joinpath(DEFAULT_METHOD[1]).read_text(encoding="utf-8"))
    document["classes"] = [{"class": "A", "min_score": 120}, {"class": "B", "min_score": 100}, {"class": "C", "min_score": 60},
                           {"class": "D"}]
    rows = _ranked(Engine(plugins=plugins, evaluation_method=document),
                   _city(make_event, [("above", 10, _above(n + 1)) for n in range(6)]))
    for row in rows.values():
        expected = "A" if row.score >= 120 else "B" if row.score >= 100 else "C" if row.score >= 60 else "D"
        assert row.klass == expected, (row.score, row.klass)
    assert len({r.klass for r in rows.values()}) >= 3


def test_below_size_firms_on_small_plots_are_not_evaluated(plugins, make_event):
    below = {"tax_yuan": 300_000, "electricity_kwh": 100_000}
    rows = _ranked(Engine(plugins=plugins), _city(make_event, [("below", 2, below), ("below", 3, below), ("below", 8, below)]))
    assert sorted(str(r.excluded) for r in rows.values()) == ["None", "None", "below_size_small_plot"]
    small = Engine(plugins=plugins, parameters={"mu_average": {"below_size_min_land_mu": 5}})
    rows = _ranked(small, _city(make_event, [("below", 2, below), ("below", 3, below), ("below", 8, below)]))
    assert sum(r.excluded == "below_size_small_plot" for r in rows.values()) == 2
