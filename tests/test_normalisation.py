"""Normalisation before judging: O2 reference, units (the µg/L trap), HJ 212 flags,
hourly averages from minute data in event time, and the benchmark-water-volume correction."""

from __future__ import annotations

import pytest

from conftest import registration

T = "2024-03-01T{}:00+08:00"


def cupola(value, o2=None, period="hour", time="10:00", flag="N", process="melting.cupola.cold_blast", unit="mg/m3"):
    data = {"outlet": "DA001", "process": process, "pollutant": "a34013", "value": value, "unit": unit, "period": period, "flag": flag}
    if o2 is not None:
        data["o2_percent"] = o2
    return data


def findings(engine, events):
    from engine import Finding

    return [r for r in engine.run(events) if isinstance(r, Finding)]


def test_o2_example_from_the_standard(engine, make_event):
    """standards.md: cold-blast cupola, 35 mg/m3 PM at 18 % O2 → 35 × 6/3 = 70 > 40."""
    out = findings(engine, [make_event("enterprise.registered", T.format("08:00"), registration("foundry")),
                            make_event("emission.measured", T.format("10:00"), cupola(35, o2=18))])
    assert len(out) == 1
    f = out[0].to_dict()
    assert f["rule"] == "foundry.gb39726.t1.cupola.pm"
    assert f["measured"] == {"value": 35.0, "unit": "mg/m3"}
    assert f["judged"] == 70.0
    assert f["limit"] == {"value": 40, "unit": "mg/m3"}
    assert {"kind": "o2", "reference": 15, "measured": 18, "factor": 2.0} in f["corrections"]
    assert f["basis"]["standard"].startswith("GB 39726")


def test_hot_blast_reference_and_electric_furnaces_not_corrected(engine, make_event):
    out = findings(engine, [
        make_event("enterprise.registered", T.format("08:00"), registration("foundry")),
        # hot blast: ref 12 → 20 × 9/3 = 60 > 40
        make_event("emission.measured", T.format("10:00"), cupola(20, o2=18, process="melting.cupola.hot_blast")),
        # induction (electric): judged as measured even at 18 % O2 → 25 < 30, silent
        make_event("emission.measured", T.format("11:00"), cupola(25, o2=18, process="melting.electric")),
    ])
    assert [(f.rule, f.judged) for f in out] == [("foundry.gb39726.t1.cupola.pm", 60.0)]


def test_ug_per_litre_trap(engine, make_event):
    """Cr6+ is reported in µg/L by HJ 212; the GB 21900 limit is 0.2 mg/L."""
    discharge = {"outlet": "DW001", "point": "workshop", "destination": "park_plant", "pollutant": "w20117", "period": "day"}
    out = findings(engine, [
        make_event("enterprise.registered", T.format("08:00"), registration("surface_treatment")),
        make_event("discharge.measured", "2024-03-01T00:00:00+08:00", {**discharge, "value": 150, "unit": "ug/L"}),
        make_event("discharge.measured", "2024-03-02T00:00:00+08:00", {**discharge, "value": 250, "unit": "ug/L"}),
        make_event("discharge.measured", "2024-03-03T00:00:00+08:00", {**discharge, "value": 0.15, "unit": "mg/L"}),
    ])
    assert len(out) == 1  # 150 µg/L is 0.15 mg/L: no finding; naive comparison of 150 > 0.2 would give three
    f = out[0].to_dict()
    assert f["measured"] == {"value": 0.25, "unit": "mg/L"}
    assert {"kind": "unit", "from": "ug/L", "to": "mg/L"} in f["corrections"]


def test_only_n_flag_is_judged_and_others_count_as_unavailable(engine, make_event):
    events = [make_event("enterprise.registered", T.format("08:00"), registration("foundry"))]
    for hour, flag in zip(("10:00", "11:00", "12:00", "13:00"), ("M", "D", "C", "N")):
        events.append(make_event("emission.measured", T.format(hour), cupola(95, flag=flag, process="melting.electric")))
    out = findings(engine, events)
    assert len(out) == 1 and out[0].time == T.format("13:00")
    assert engine.summary.unavailable == 3


def test_hourly_average_from_minute_data(engine, make_event):
    events = [make_event("enterprise.registered", T.format("08:00"), registration("foundry"))]
    # 10:00-10:59: twenty readings, one spike of 80 among 20s → mean 23 < 30: no exceedance
    for minute in range(20):
        events.append(make_event("emission.measured", f"2024-03-01T10:{minute:02d}:00+08:00",
                                 cupola(80 if minute == 5 else 20, period="minute", process="melting.electric")))
    # 11:00-11:59: mean 35 > 30, closed by end of input
    for minute, value in ((0, 30), (1, 40), (2, 35)):
        events.append(make_event("emission.measured", f"2024-03-01T11:{minute:02d}:00+08:00",
                                 cupola(value, period="minute", process="melting.electric")))
    # a minute flagged M in the same hour is not averaged
    events.append(make_event("emission.measured", "2024-03-01T11:03:00+08:00",
                             cupola(500, period="minute", flag="M", process="melting.electric")))
    out = findings(engine, events)
    assert len(out) == 1
    f = out[0]
    assert f.rule == "foundry.gb39726.t1.electric.pm"
    assert f.time == "2024-03-01T11:00:00+08:00"
    assert f.judged == pytest.approx(35.0)
    assert len(f.event) == 3


def test_late_minute_for_a_closed_hour_is_counted_not_judged(engine, make_event):
    events = [make_event("enterprise.registered", T.format("08:00"), registration("foundry")),
              make_event("emission.measured", "2024-03-01T10:00:00+08:00", cupola(20, period="minute", process="melting.electric")),
              make_event("emission.measured", "2024-03-01T11:00:00+08:00", cupola(20, period="minute", process="melting.electric")),
              make_event("emission.measured", "2024-03-01T10:30:00+08:00", cupola(900, period="minute", process="melting.electric"))]
    out = findings(engine, events)
    assert out == []
    assert engine.summary.late == 1
    assert engine.summary.balanced()


def test_benchmark_water_volume_correction(engine, make_event):
    """GB 4287: COD 60 mg/L, 2100 m3 for 10 t of cotton woven (benchmark 140 m3/t) → 60 × 1.5 = 90 > 80."""
    data = {"outlet": "DW001", "point": "plant", "destination": "direct", "pollutant": "w01018", "value": 60,
            "unit": "mg/L", "period": "day", "volume_m3": 2100, "production": {"quantity": 10, "unit": "t", "category": "cotton_woven"}}
    out = findings(engine, [make_event("enterprise.registered", T.format("08:00"), registration("dyeing", sub_sector="cotton_woven")),
                            make_event("discharge.measured", "2024-03-01T00:00:00+08:00", data),
                            # within the benchmark: ratio < 1 never lowers the value; 60 < 80 silent
                            make_event("discharge.measured", "2024-03-02T00:00:00+08:00", {**data, "volume_m3": 700})])
    assert [(f.rule, f.judged) for f in out] == [("dyeing.gb4287.t2.direct.cod", 90.0)]
    note = next(c for c in out[0].corrections if c["kind"] == "benchmark_volume")
    assert note["ratio"] == 1.5 and note["benchmark_m3"] == 1400


def test_new_and_existing_facility_dates(engine, make_event):
    """GB 39726: existing facilities judged from 2023-07-01, new ones (EIA from 2021-01-01) from 2021-01-01."""
    existing = "91330200MA2AB1234Y"
    new = "91330200MA2AB12350"
    from engine.validate import make_uscc

    new = make_uscc("91330200MA2AB1235")
    events = [make_event("enterprise.registered", "2022-01-01T08:00:00+08:00", registration("foundry"), subject=existing),
              make_event("enterprise.registered", "2022-01-01T08:00:00+08:00", registration("foundry", eia="2021-06-01"), subject=new)]
    for subject in (existing, new):
        events.append(make_event("emission.measured", "2022-06-01T10:00:00+08:00", cupola(50, process="melting.electric"), subject=subject))
        events.append(make_event("emission.measured", "2023-07-01T10:00:00+08:00", cupola(50, process="melting.electric"), subject=subject))
    out = findings(engine, events)
    assert sorted((f.enterprise, f.time[:10]) for f in out) == sorted(
        [(new, "2022-06-01"), (new, "2023-07-01"), (existing, "2023-07-01")])


def test_unit_that_cannot_express_the_pollutant_is_quarantined(engine, make_event):
    records = list(engine.run([make_event("emission.measured", T.format("10:00"), cupola(1, unit="%"))]))
    assert len(records) == 1 and records[0].error.startswith("data.unit: '%' is not a unit of a34013")
