"""The two decision backends (compiled Python, durable_rules) give byte-identical output:
on the demo log (and with its land and a year of follow-up), on hypothesis-generated logs (out of order, duplicates, verifications,
inspections), and with 5,000 enterprises on the rete backend."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Decision, Engine, load_plugins
from engine.devtools.demo import generate_city, with_follow_up
from engine.validate import make_uscc

PLUGINS = load_plugins()
AS_OF = "2026-01-01T00:00:00+08:00"


def output(events, backend, parameters=None, as_of=AS_OF) -> bytes:
    engine = Engine(plugins=PLUGINS, backend=backend, parameters=parameters)
    return b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in engine.run(events, as_of=as_of))


def test_demo_log_identical():
    events = generate_city(enterprises=400, days=1, seed=3).events
    compiled = output(events, "compiled")
    assert b'"record":"decision"' in compiled
    assert compiled == output(events, "rete")


def test_demo_log_with_land_and_a_year_of_follow_up_identical():
    """Watches on parcels answered or not, transfers, recoveries, contract remedies, lease reviews."""
    events = with_follow_up(generate_city(enterprises=200, days=1, seed=7), seed=7).events
    compiled = output(events, "compiled", as_of="2026-06-01T00:00:00+08:00")
    assert b'"idle_land_fee"' in compiled and b'"contract_remedy"' in compiled and b'"renew_lease"' in compiled
    assert b'"amount":{"yuan":' in compiled  # idle-land fees of parcels registered with their price
    assert compiled == output(events, "rete", as_of="2026-06-01T00:00:00+08:00")


# ---- generated logs ---------------------------------------------------------------------------

CODES = [make_uscc(f"91330200MA2G{n:05d}") for n in range(6)]
INDUSTRIES = ["foundry", "dyeing", "surface_treatment", "other"]


def _time(day: float) -> str:
    whole = int(day)
    hour = int((day - whole) * 24)
    month, dom = divmod(whole, 28)
    return f"2024-{month + 1:02d}-{dom + 1:02d}T{hour:02d}:00:00+08:00"


@st.composite
def logs(draw):
    n = draw(st.integers(1, len(CODES)))
    events = []
    for code in CODES[:n]:
        industry = draw(st.sampled_from(INDUSTRIES))
        events.append({"type": "enterprise.registered", "subject": code, "time": "2024-01-01T00:00:00+08:00",
                       "data": {"name": "x", "industry": industry, "district": "Beilun", "in_park": draw(st.booleans()),
                                "eia_approved_on": "2010-01-01", "permits": {"emission_permit": draw(st.booleans())},
                                "land_area_mu": 10}})
    for _ in range(draw(st.integers(0, 40))):
        code = draw(st.sampled_from(CODES[:n]))
        day = draw(st.floats(0, 300, allow_nan=False))
        kind = draw(st.sampled_from(["air", "air", "water", "inspection", "energy"]))
        if kind == "air":
            data = {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013",
                    "value": draw(st.sampled_from([10, 29.5, 31, 60])), "unit": "mg/m3", "period": "hour"}
            events.append({"type": "emission.measured", "subject": code, "time": _time(day), "data": data})
        elif kind == "water":
            data = {"outlet": "DW001", "point": "workshop", "destination": "park_plant", "pollutant": "w20121",
                    "value": draw(st.sampled_from([0.2, 0.9])), "unit": "mg/L", "period": "day"}
            events.append({"type": "discharge.measured", "subject": code, "time": _time(day), "data": data})
        elif kind == "inspection":
            events.append({"type": "inspection.recorded", "subject": code, "time": _time(day),
                           "data": {"result": draw(st.sampled_from(["pass", "fail"]))}})
        else:
            events.append({"type": "energy.reported", "subject": code, "time": _time(day), "data": {"period": "2024-03"}})
    registrations, rest = events[:n], events[n:]
    rest.sort(key=lambda e: e["time"])
    # some out of order
    if len(rest) > 2 and draw(st.booleans()):
        i, j = draw(st.integers(0, len(rest) - 1)), draw(st.integers(0, len(rest) - 1))
        rest[i], rest[j] = rest[j], rest[i]
    events = registrations + rest
    for number, event in enumerate(events):
        event.update(specversion="1.0", id=f"g-{number}", source="gen")
    return events


def _with_verifications(events, data, parameters):
    """Add verifications of the orders a first run made: passing or failing, in time or late."""
    engine = Engine(plugins=PLUGINS, parameters=parameters)
    orders = [r for r in engine.run(events, as_of=AS_OF) if isinstance(r, Decision) and r.action == "rectify"]
    extra = []
    for number, order in enumerate(orders):
        if data.draw(st.booleans()):
            day = data.draw(st.floats(0, 360, allow_nan=False))
            extra.append({"specversion": "1.0", "id": f"v-{number}", "source": "gen", "type": "rectification.verified",
                          "subject": order.enterprise, "time": _time(day),
                          "data": {"decision": order.id, "passed": data.draw(st.booleans())}})
    merged = sorted(events[1:] + extra, key=lambda e: e["time"]) if extra else events[1:]
    merged = events[:1] + merged
    if merged and data.draw(st.booleans()):
        merged.append(dict(merged[data.draw(st.integers(0, len(merged) - 1))]))  # a duplicate
    return merged


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(logs(), st.data(), st.sampled_from([None, {"programme": {"repeat_count": 2, "repeat_window_days": 20, "rectify_deadline_days": 30}}]))
def test_generated_logs_identical(events, data, parameters):
    events = _with_verifications(events, data, parameters)
    compiled = output(events, "compiled", parameters)
    assert compiled == output(events, "rete", parameters)


# ---- scale ------------------------------------------------------------------------------------

def test_rete_handles_5000_enterprises_without_the_sid_cap_or_shared_state():
    codes = [make_uscc(f"91330200MA{n:07d}") for n in range(5000)]
    events = []
    for code in codes:
        events.append({"type": "enterprise.registered", "subject": code, "time": "2024-01-01T00:00:00+08:00",
                       "data": {"name": "x", "industry": "foundry", "district": "Beilun", "in_park": True,
                                "eia_approved_on": "2010-01-01", "permits": {"emission_permit": True}}})
    for day in (1, 2, 3):
        for n, code in enumerate(codes):
            value = 45 if n % 2 == 0 or day < 3 else 10  # odd enterprises: only two exceedances
            events.append({"type": "emission.measured", "subject": code, "time": f"2024-03-0{day}T10:00:00+08:00",
                           "data": {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013",
                                    "value": value, "unit": "mg/m3", "period": "hour"}})
    for number, event in enumerate(events):
        event.update(specversion="1.0", id=f"s-{number}", source="scale")
    rete = Engine(plugins=PLUGINS, backend="rete")
    records = [orjson.dumps(r.to_dict()) for r in rete.run(events, as_of=AS_OF)]
    sidmap = rete.decisions.detector.rete.sidmap
    assert sidmap.copies >= 3
    assert all(sidmap.live_sids(i) <= 800 for i in range(sidmap.copies))
    decided = [orjson.loads(r) for r in records if b'"record":"decision"' in r]
    # exactly the even enterprises got an order, then close_by_law: no state leaked between enterprises
    assert sorted({d["enterprise"] for d in decided}) == sorted(codes[0::2])
    assert sum(1 for d in decided if d["action"] == "close_by_law") == 2500
    compiled = Engine(plugins=PLUGINS, backend="compiled")
    assert records == [orjson.dumps(r.to_dict()) for r in compiled.run(events, as_of=AS_OF)]
