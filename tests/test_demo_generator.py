"""The demo city generator: reproducible, well-formed, and an exact answer key.

The answer key is checked by a small independent oracle written from standards.md (O2
correction, ug/L -> mg/L, municipal = direct limits, the dyeing water and energy norms per
100 m of cotton woven fabric, the Zhejiang minimum foundry capacity): every planted tag is
visible in the events, and no firm outside the key comes near a limit.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from engine.devtools.demo import AUTHORITY, VIOLATION_TAGS, DemoCity, generate_city, write_jsonl
from engine.validate import is_uscc

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")
ENVELOPE = {"specversion", "id", "source", "type", "subject", "time", "data"}
SPECIAL = {"foundry", "dyeing", "surface_treatment"}


@pytest.fixture(scope="module")
def city() -> DemoCity:
    return generate_city()


def test_same_arguments_same_events_and_bytes(tmp_path: Path) -> None:
    a = generate_city(seed=7, enterprises=400, days=1)
    b = generate_city(seed=7, enterprises=400, days=1)
    assert a == b
    n_a = write_jsonl(a.events, tmp_path / "a.jsonl")
    n_b = write_jsonl(b.events, tmp_path / "b.jsonl")
    assert n_a == n_b == len(a.events)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert generate_city(seed=8, enterprises=400, days=1).events != a.events


def test_defaults_are_deterministic(city: DemoCity) -> None:
    assert generate_city() == city


def test_jsonl_is_compact_utf8_one_event_per_line(tmp_path: Path) -> None:
    small = generate_city(enterprises=50, days=1)
    path = tmp_path / "city.jsonl"
    assert write_jsonl(iter(small.events), path) == len(small.events)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(small.events) + 1
    assert b", " not in lines[0] and b": " not in lines[0]
    assert "宁波市".encode() in lines[0]  # ensure_ascii=False


def test_envelopes(city: DemoCity) -> None:
    ids = [e["id"] for e in city.events]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"demo-\d{9}", i) for i in ids)
    for event in city.events:
        assert set(event) == ENVELOPE
        assert event["specversion"] == "1.0"
        assert event["source"].startswith("demo/")
        assert TIME.match(event["time"]), event["time"]
    assert all(is_uscc(s) for s in {e["subject"] for e in city.events})
    keys = [(e["time"], e["id"]) for e in city.events]
    assert keys == sorted(keys)


def test_size_and_shape_of_the_default_city(city: DemoCity) -> None:
    assert city.enterprises == 3000
    assert 120_000 <= len(city.events) <= 200_000
    types = Counter(e["type"] for e in city.events)
    assert types["enterprise.registered"] == 3000
    assert types["finance.reported"] == 3000 and types["evaluation.closed"] == 1
    monitoring = types["emission.measured"] + types["discharge.measured"]
    assert monitoring / len(city.events) > 0.9
    industries = Counter(
        e["data"]["industry"] for e in city.events if e["type"] == "enterprise.registered"
    )
    for industry in ("foundry", "dyeing", "surface_treatment"):
        assert 0.15 < industries[industry] / 3000 < 0.25
    assert 0.03 <= len(city.violators) / 3000 <= 0.05


def test_registration_comes_first_and_hourly_data_spans_the_days() -> None:
    small = generate_city(enterprises=120, days=3, start="2024-02-28")
    registered: dict[str, str] = {}
    hours: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for event in small.events:
        if event["type"] == "enterprise.registered":
            assert event["time"] == "2024-02-27T08:00:00+08:00"
            registered[event["subject"]] = event["time"]
        elif event["type"] == "evaluation.closed":  # the authority's, not an enterprise's
            assert event["subject"] == AUTHORITY and event["data"] == {"year": 2023}
        else:
            assert event["subject"] in registered
        if event["type"] == "emission.measured":
            d = event["data"]
            hours[(event["subject"], d["outlet"], d["pollutant"])].append(event["time"])
    assert hours
    for times in hours.values():
        assert len(times) == 72
        assert times[0] == "2024-02-28T00:00:00+08:00"
        assert times[-1] == "2024-03-01T23:00:00+08:00"
    periods = {e["data"]["period"] for e in small.events if e["type"] == "energy.reported"}
    assert periods == {"2024-03"}
    # the mu-average year: one finance.reported per firm for 2023, then one close, last of all
    finance = [e for e in small.events if e["type"] == "finance.reported"]
    assert sorted(e["subject"] for e in finance) == sorted(registered)
    assert {e["data"]["year"] for e in finance} == {2023}
    assert small.events[-1]["type"] == "evaluation.closed"
    assert sum(e["type"] == "evaluation.closed" for e in small.events) == 1


def test_every_tag_is_planted_with_defaults(city: DemoCity) -> None:
    planted = Counter(tag for tags in city.violators.values() for tag in tags)
    assert set(planted) == {tag for tag, _ in VIOLATION_TAGS}
    for tags in city.violators.values():
        assert tags == sorted(tags) and tags
    assert list(city.violators) == sorted(city.violators)


def test_small_city_is_fast() -> None:
    started = time.perf_counter()
    small = generate_city(enterprises=200, days=1)
    assert time.perf_counter() - started < 1.0
    assert small.enterprises == 200
    assert sum(e["type"] == "enterprise.registered" for e in small.events) == 200


# --- the oracle ------------------------------------------------------------------------

# (process, pollutant) -> (limit mg/m3, reference O2 or None); GB 39726 T1, GB 21900 T5
AIR = {
    ("melting.cupola.cold_blast", "a34013"): (40, 15), ("melting.cupola.cold_blast", "a21026"): (200, 15),
    ("melting.cupola.cold_blast", "a21002"): (300, 15), ("melting.cupola.hot_blast", "a34013"): (40, 12),
    ("melting.cupola.hot_blast", "a21026"): (200, 12), ("melting.cupola.hot_blast", "a21002"): (300, 12),
    ("melting.gas_furnace", "a34013"): (30, 8), ("melting.gas_furnace", "a21026"): (100, 8),
    ("melting.gas_furnace", "a21002"): (400, 8), ("melting.electric", "a34013"): (30, None),
    ("moulding", "a34013"): (30, None), ("plating", "a21024"): (30, None),
    ("plating", "a34039"): (30, None), ("fugitive", "a24088"): (10, None),
}
# dyeing GB 4287 T2 with the 2015 amendment: destination -> pollutant -> limit
DYEING = {
    "direct": {"w01018": 80, "w01017": 20, "w21003": 10},
    "municipal": {"w01018": 80, "w01017": 20, "w21003": 10},
    "indirect": {"w01018": 200, "w01017": 50, "w21003": 20},
    "park_plant": {"w01018": 500, "w01017": 150, "w21003": 20},
}
PLATING = {"w20121": 0.5, "w20117": 0.2, "w01018": 80, "w20122": 0.5}  # GB 21900 T2, mg/L
# Zhejiang minimum annual capacity of a foundry by cast metal, t/a
MIN_CAPACITY = {"iron": 4000, "steel": 3000, "aluminium": 1000, "copper": 500}
# dyeing industry norms (2017), cotton woven fabric: t water and kgce per 100 m; reuse %
DYEING_WATER_T, DYEING_ENERGY_KGCE, DYEING_REUSE_PCT = 1.6, 30, 40


def _oracle(city: DemoCity) -> tuple[dict[str, set[str]], dict[str, float]]:
    """Tags found per firm, and each firm's worst value as a share of its limit."""
    found: dict[str, set[str]] = defaultdict(set)
    worst: dict[str, float] = defaultdict(float)
    industry: dict[str, str] = {}
    sub_sector: dict[str, str | None] = {}

    def judge(subject: str, ratio: float, tag: str) -> None:
        worst[subject] = max(worst[subject], ratio)
        if ratio > 1:
            found[subject].add(tag)

    for event in city.events:
        s, d = event["subject"], event["data"]
        kind = event["type"]
        if kind == "enterprise.registered":
            industry[s] = d["industry"]
            sub_sector[s] = d.get("sub_sector")
            if not d["permits"]["emission_permit"]:
                found[s].add("no_permit")
            if d["industry"] in SPECIAL and not d["in_park"]:
                prefix = {"surface_treatment": "plating"}.get(d["industry"], d["industry"])
                found[s].add(f"{prefix}_outside_park")
            if d["industry"] == "foundry":
                minimum = MIN_CAPACITY[d["metal"]]
                if d["annual_capacity_t"] < minimum:
                    found[s].add("foundry_small_capacity")
                else:  # clear of the minimum, not just at it
                    assert d["annual_capacity_t"] >= 1.5 * minimum
        elif kind == "equipment.declared":
            a = d["attributes"]
            if d["kind"] == "cupola" and a["melt_rate_t_h"] < 5:
                found[s].add("cupola_small")
            if d["kind"] == "induction_furnace" and a["shell"] == "aluminium" \
                    and a["capacity_t"] > 0.9 and not a["yoke"]:
                found[s].add("induction_no_yoke")
            if d["kind"] == "moulding_line" and a["process"] == "clay_sand_dry":
                found[s].add("clay_sand_dry")
            if d["kind"] == "plating_line" and a["cyanide"]:
                found[s].add("plating_cyanide")
        elif kind == "emission.measured" and d["flag"] == "N":
            limit, ref = AIR[(d["process"], d["pollutant"])]
            value = d["value"]
            if ref is not None:
                value = value * (21 - ref) / (21 - d["o2_percent"])
            tag = {"a34013": "cupola_pm_o2", "a24088": "spray_nmhc"}.get(d["pollutant"], "air")
            judge(s, value / limit, tag)
        elif kind == "discharge.measured":
            value = d["value"] / 1000 if d["unit"] == "ug/L" else d["value"]
            if d["pollutant"] == "w01001":
                assert 6 < value < 9
            elif industry[s] == "dyeing":
                tag = "dyeing_cod_direct" if d["pollutant"] == "w01018" else "water"
                judge(s, value / DYEING[d["destination"]][d["pollutant"]], tag)
            else:
                tag = {"w20121": "plating_ni", "w20117": "plating_cr6_ugl"}.get(d["pollutant"], "water")
                judge(s, value / PLATING[d["pollutant"]], tag)
        elif kind == "energy.reported" and d.get("output", {}).get("unit") == "100m_fabric":
            fabric = d["output"]["quantity"]
            # the per-100 m benchmarks are for cotton woven fabric (or an unknown sub-sector);
            # other dyers are held to them too, under another name, so none comes near them
            cotton = sub_sector[s] in (None, "cotton_woven")
            judge(s, d["water_t"] / fabric / DYEING_WATER_T,
                  "dyeing_water" if cotton else "water_norm_other_fabric")
            judge(s, d["energy_tce"] * 1000 / fabric / DYEING_ENERGY_KGCE, "energy_norm")
            reuse = d["water_reused_t"] / (d["water_t"] + d["water_reused_t"]) * 100
            if reuse < DYEING_REUSE_PCT:  # a minimum: checked, not scaled into `worst`
                found[s].add("water_reuse")
        elif kind == "inspection.recorded" and d["result"] == "fail":
            found[s].add("inspection_fail")
    return found, worst


def _check_answer_key(city: DemoCity) -> None:
    found, worst = _oracle(city)
    for subject, tags in city.violators.items():
        seen = found[subject] - {"inspection_fail"}
        assert seen == set(tags), (subject, tags, seen)
    for subject, tags in found.items():
        if subject not in city.violators:
            assert not tags, (subject, tags)
    for subject, ratio in worst.items():
        if subject not in city.violators:
            assert ratio < 0.8, (subject, ratio)


def test_answer_key_is_exact_for_the_default_city(city: DemoCity) -> None:
    _check_answer_key(city)


@pytest.mark.parametrize("seed", [1, 99])
def test_answer_key_is_exact_for_other_seeds(seed: int) -> None:
    _check_answer_key(generate_city(seed=seed, enterprises=600, days=1, start="2024-12-31"))


def test_traps_look_legal_before_correction(city: DemoCity) -> None:
    tagged = {s: set(t) for s, t in city.violators.items()}
    trap_pm = [e["data"] for e in city.events if e["type"] == "emission.measured"
               and "cupola_pm_o2" in tagged.get(e["subject"], ())
               and e["data"]["pollutant"] == "a34013" and e["data"]["value"] >= 30]
    assert trap_pm and all(d["value"] < 40 and d["o2_percent"] > 17.5 for d in trap_pm)
    cr6 = [e["data"] for e in city.events if e["type"] == "discharge.measured"
           and e["data"]["pollutant"] == "w20117"]
    assert cr6 and all(d["unit"] == "ug/L" for d in cr6)
    planted = [d for d in cr6 if d["value"] > 200]
    assert planted and all(d["value"] <= 400 for d in planted)


def test_a_tiny_city_still_works() -> None:
    for n in (0, 1, 5):
        tiny = generate_city(enterprises=n, days=1)
        assert sum(e["type"] == "enterprise.registered" for e in tiny.events) == n
        _check_answer_key(tiny)


def test_events_validate_against_the_schemas() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    import json

    from referencing.jsonschema import DRAFT202012

    root = Path(__file__).resolve().parent.parent / "schemas"
    if not (root / "envelope.schema.json").exists():
        pytest.skip("schemas/ not written yet")
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(root.rglob("*.json"))]
    registry = referencing.Registry().with_resources(
        (d["$id"], referencing.Resource.from_contents(d, default_specification=DRAFT202012))
        for d in docs
    )

    def validator(schema_id: str) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator(registry.contents(schema_id), registry=registry)

    envelope = validator("urn:rectify:schema:envelope")
    by_type: dict[str, jsonschema.Draft202012Validator] = {}
    for event in generate_city(seed=3, enterprises=300, days=1).events:
        envelope.validate(event)
        kind = event["type"]
        if kind not in by_type:
            by_type[kind] = validator(f"urn:rectify:schema:event:{kind}")
        by_type[kind].validate(event["data"])
    assert {"enterprise.registered", "equipment.declared", "emission.measured", "discharge.measured",
            "energy.reported", "inspection.recorded", "finance.reported", "evaluation.closed"} <= set(by_type)
