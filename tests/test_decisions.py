"""Rectification decisions: lists, routes, deadlines and escalation, in event time."""

from __future__ import annotations

import pytest

from conftest import SUBJECT, registration
from engine import Decision, Engine, Finding
from engine.validate import make_uscc

OTHER = make_uscc("91330200MA2CD5678")


@pytest.fixture(params=["compiled", "rete"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def engine(plugins, backend) -> Engine:
    """Every scenario runs on both backends."""
    return Engine(plugins=plugins, backend=backend)


def exceedance(make_event, day: str, subject: str = SUBJECT, value: float = 45):
    return make_event("emission.measured", f"2024-03-{day}T10:00:00+08:00",
                      {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013", "value": value,
                       "unit": "mg/m3", "period": "hour"}, subject=subject)


def decisions(records):
    return [r for r in records if isinstance(r, Decision)]


def order_scenario(engine, make_event, tail):
    events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry", land_area_mu=12.5)),
              make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("other"), subject=OTHER),
              exceedance(make_event, "01"), exceedance(make_event, "05"), exceedance(make_event, "09")]
    records = list(engine.run(events + tail(events)))
    return records, decisions(records)


def test_three_exceedances_give_an_order_and_a_missed_deadline_closes_by_law(engine, make_event):
    records, made = order_scenario(engine, make_event, lambda _: [
        # a later event of ANY enterprise, past the deadline, makes the engine notice it
        make_event("energy.reported", "2024-07-01T00:00:00+08:00", {"period": "2024-06"}, subject=OTHER)])
    order, closure = made
    assert (order.list, order.action, order.rule) == ("scattered_polluted", "rectify", "programme.scattered.repeat_exceedance")
    assert order.time == "2024-03-09T10:00:00+08:00"
    assert order.deadline == "2024-06-07T10:00:00+08:00"  # 90 days (programme default)
    assert len(order.findings) == 3
    assert set(order.findings) <= {r.id for r in records if isinstance(r, Finding)}
    assert closure.action == "close_by_law" and closure.supersedes == order.id
    assert closure.time == order.deadline  # decided at the deadline, not when noticed
    assert closure.basis["standard"].startswith("Environmental Protection Law")
    assert records[-1] is closure


def test_a_passing_verification_before_the_deadline_completes_the_order(engine, make_event):
    def tail(events):
        return []

    records, made = order_scenario(engine, make_event, tail)
    (order,) = made
    more = [make_event("rectification.verified", "2024-05-01T00:00:00+08:00", {"decision": order.id, "passed": True}),
            make_event("energy.reported", "2024-07-01T00:00:00+08:00", {"period": "2024-06"}, subject=OTHER)]
    later = [r for e in more for r in engine.process(e)] + engine.flush()
    (done,) = decisions(later)  # a record that the order was carried out, and no escalation
    assert (done.status, done.action, done.list, done.supersedes) == ("completed", "rectify", "scattered_polluted", order.id)
    assert done.time == "2024-05-01T00:00:00+08:00" and done.events == (more[0]["id"],)
    assert engine.summary.orders_closed == 1 and engine.summary.open_orders == 0


def test_verification_after_the_deadline_does_not_count(engine, make_event):
    records, made = order_scenario(engine, make_event, lambda _: [])
    (order,) = made
    late = make_event("rectification.verified", "2024-06-08T00:00:00+08:00", {"decision": order.id, "passed": True})
    (closure,) = decisions(engine.process(late))
    assert closure.action == "close_by_law" and closure.time == order.deadline


def test_a_failed_verification_leaves_the_order_open(engine, make_event):
    records, made = order_scenario(engine, make_event, lambda _: [])
    (order,) = made
    assert decisions(engine.process(make_event("rectification.verified", "2024-04-01T00:00:00+08:00",
                                               {"decision": order.id, "passed": False}))) == []
    assert engine.flush() == [] and engine.summary.open_orders == 1


def test_a_failing_inspection_during_the_order_is_evidence_not_a_closure(engine, make_event):
    """Environmental Protection Law Art. 60: a failed inspection before the deadline does not close the
    enterprise; it is evidence on the order, cited when the deadline passes and a closure is proposed."""
    inspection = make_event("inspection.recorded", "2024-04-02T09:00:00+08:00", {"result": "fail", "violations": ["stack"]})
    records, made = order_scenario(engine, make_event, lambda _: [inspection])
    (order,) = made
    assert engine.summary.open_orders == 1  # the run ended with the order still open
    (closure,) = decisions(engine.flush(as_of="2024-06-08T00:00:00+08:00"))
    assert (closure.action, closure.status, closure.time) == ("close_by_law", "proposed", order.deadline)
    assert closure.supersedes == order.id and closure.events == (inspection["id"],)


def test_as_of_escalates_at_the_end_of_a_replay(engine, make_event):
    events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry")),
              exceedance(make_event, "01"), exceedance(make_event, "05"), exceedance(make_event, "09")]
    made = decisions(engine.run(events, as_of="2025-01-01T00:00:00+08:00"))
    assert [d.action for d in made] == ["rectify", "close_by_law"]


def test_two_exceedances_are_not_enough_and_the_window_is_event_time(engine, make_event):
    events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry")),
              exceedance(make_event, "01"), exceedance(make_event, "05"),
              make_event("emission.measured", "2024-04-20T10:00:00+08:00", exceedance(make_event, "01")["data"])]
    assert decisions(engine.run(events)) == []  # the third is 50 days after the first: outside 30 days


def test_routes_from_registry_and_equipment(engine, make_event):
    outside = make_uscc("91330200MA2EF9012")
    events = [
        make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("dyeing", in_park=False), subject=outside),
        make_event("enterprise.registered", "2024-01-01T08:00:00+08:00",
                   registration("foundry", metal="iron", annual_capacity_t=2500)),
        make_event("equipment.declared", "2024-01-02T08:00:00+08:00",
                   {"equipment_id": "C1", "kind": "cupola", "status": "active", "attributes": {"melt_rate_t_h": 2, "blast": "cold"}}),
    ]
    made = {(d.enterprise, d.list, d.action) for d in decisions(engine.run(events))}
    assert made == {(outside, "scattered_polluted", "relocate_to_park"),
                    (SUBJECT, "backward_capacity", "merge_reorganize"),
                    (SUBJECT, "backward_capacity", "eliminate")}


def test_no_permit_plus_a_pollution_finding(engine, make_event):
    reg = registration("foundry")
    reg["permits"] = {"emission_permit": False}
    made = decisions(engine.run([make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", reg),
                                 exceedance(make_event, "01")]))
    assert [(d.rule, d.list, d.action) for d in made] == [("programme.scattered.no_permit", "scattered_polluted", "rectify")]


def test_energy_norm_puts_a_firm_on_the_high_consumption_list(engine, make_event):
    made = decisions(engine.run([
        make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("dyeing", sub_sector="cotton_woven")),
        make_event("energy.reported", "2024-04-01T00:00:00+08:00",
                   {"period": "2024-03", "energy_tce": 2, "water_t": 250, "water_reused_t": 200,
                    "output": {"quantity": 100, "unit": "100m_fabric"}}),
    ]))
    assert [(d.list, d.action) for d in made] == [("high_consumption_low_efficiency", "transform_upgrade")]


def test_decision_parameters_are_set_by_the_authority(plugins, backend, make_event):
    engine = Engine(plugins=plugins, backend=backend, parameters={"programme": {"repeat_count": 2, "rectify_deadline_days": 10}})
    events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry")),
              exceedance(make_event, "01"), exceedance(make_event, "05")]
    (order,) = decisions(engine.run(events))
    assert order.deadline == "2024-03-15T10:00:00+08:00"


def test_decisions_are_deterministic(plugins, backend, make_event):
    def run():
        events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry"), id="r"),
                  *[make_event("emission.measured", f"2024-03-0{d}T10:00:00+08:00", exceedance(make_event, "01")["data"], id=f"e{d}")
                    for d in range(1, 6)]]
        return [r.to_dict() for r in Engine(plugins=plugins, backend=backend).run(events, as_of="2025-01-01T00:00:00+08:00")]

    assert run() == run()


def test_a_finding_too_late_for_the_window_decides_nothing(engine, make_event):
    """Regression (found by the differential test): a finding older than the newest minus the
    window is pruned on arrival; neither backend may decide on it or fail."""
    events = [make_event("enterprise.registered", "2024-01-01T08:00:00+08:00", registration("foundry")),
              exceedance(make_event, "01"),
              make_event("emission.measured", "2024-05-20T10:00:00+08:00", exceedance(make_event, "01")["data"]),
              exceedance(make_event, "02"), exceedance(make_event, "03")]
    assert decisions(engine.run(events)) == []
