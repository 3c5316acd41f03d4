"""Schema-valid but extreme figures (a fuzzer's findings, sections 3-5): the mu-average close,
the daily benchmark-volume correction and a fact's measure stay finite, raise nothing, and every
record passes its schema.

- a tiny `land_area_mu` makes the population's sum of tax per mu leave the float range: the mean is
  then computed exactly (docs/mu-average.md rule 3);
- opposite huge values make the mean tiny beside them: a score beyond the float range leaves the
  indicator without a benchmark (`no_benchmark`, 0 for everyone), never an exception;
- `weight × value ÷ benchmark` divides first when the product overflows (value 1e308, weight 10);
- a benchmark volume so small that the ratio, or the corrected value, is not a finite number: the
  correction cannot be made (docs/rule-packs.md), a `benchmark_inputs_missing` data gap, or a
  finding on the measured value when it exceeds already;
- a fact whose figures give the rule's measure past the float range (1e15 tce of energy for
  5e-324 t of castings, a plugin's metric; 4 tce for 5e-324 x 100 m of fabric, a rule's
  arithmetic): a `figure_out_of_range` data gap where the rule applies, not a finding whose value
  is written as null (and no decision on it), nor silence; a limit past the float range, the same.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import orjson
import pytest
import yaml

from conftest import SUBJECT, _record_problem, registration
from engine import Decision, Engine, Finding, JsonlFiles, load_plugins
from engine.audit import explain, explain_text
from engine.decide import MethodError, load_method
from engine.judge.judge import Judge
from engine.judge.rulepacks import compile_rules, parse_pack
from engine.normalise.readings import Reading
from engine.plugins.types import RulePackSource
from engine.validate import make_uscc

PLUGINS = load_plugins()
ROOT = Path(__file__).resolve().parent.parent
AUTHORITY = make_uscc("11330200MB0000001")
BACKENDS = ["compiled", "rete"]


def _event(id: str, type_: str, subject: str, time: str, data: dict) -> dict:
    return {"specversion": "1.0", "id": id, "source": "test", "type": type_, "subject": subject, "time": time,
            "data": data}


def city(firms: list[tuple[float, dict]]) -> list[dict]:
    """Above-size foundries: (land_area_mu, finance figures) each, then the close of 2023."""
    events = []
    for n, (land, figures) in enumerate(firms):
        subject = make_uscc(f"91330200MA2XF{n:04d}")
        events.append(_event(f"r{n}", "enterprise.registered", subject, "2024-01-01T08:00:00+08:00",
                             {"name": f"F{n}", "industry": "foundry", "district": "Beilun", "in_park": True,
                              "land_area_mu": land, "scale": "above"}))
        events.append(_event(f"f{n}", "finance.reported", subject, "2024-01-02T08:00:00+08:00", {"year": 2023, **figures}))
    events.append(_event("close", "evaluation.closed", AUTHORITY, "2024-01-03T08:00:00+08:00", {"year": 2023}))
    return events


def decisions(events: list[dict], backend: str, **options) -> dict[str, dict]:
    engine = Engine(plugins=PLUGINS, backend=backend, **options)
    for event in events:
        assert engine.validator.problem(event) is None, event
    out = {}
    for record in engine.run(events):
        record_dict = record.to_dict()
        assert _record_problem(record_dict) is None, _record_problem(record_dict)
        if isinstance(record, Decision) and record.evaluation is not None:
            out[record.enterprise] = orjson.loads(orjson.dumps(record_dict))["evaluation"]  # as written
    return out


def all_finite(evaluation: dict) -> bool:
    numbers = [evaluation["score"]] + [cell[k] for cell in evaluation["indicators"].values()
                                       for k in ("value", "benchmark", "score") if cell[k] is not None]
    return all(isinstance(x, float | int) and math.isfinite(x) for x in numbers)


# ---- the mu-average close ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sum_of_tax_per_mu_beyond_the_float_range_gives_the_exact_mean(backend):
    # tax per mu 1e308, 1e308 and 50 000: math.fsum of the column overflows; the exact mean does not
    got = decisions(city([(1e-300, {"tax_yuan": 1e8}), (1e-300, {"tax_yuan": 1e8}), (10.0, {"tax_yuan": 5e5})]),
                    backend)
    assert len(got) == 3 and all(map(all_finite, got.values()))
    mean = 1e308 / 3 * 2 + 5e4 / 3  # (1e308 + 1e308 + 5e4) / 3 without leaving the float range
    cells = [e["indicators"]["tax_per_mu"] for e in got.values()]
    assert [c["benchmark"] for c in cells] == [pytest.approx(mean, rel=1e-15)] * 3
    assert sorted(c["score"] for c in cells) == [0.0, pytest.approx(45.0), pytest.approx(45.0)]  # 30 × 1e308 ÷ mean
    assert all(c["flag"] is None for c in cells)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opposite_huge_values_leave_the_indicator_without_a_benchmark_not_an_exception(backend):
    # tax per mu −1e308, +1e308 and 1 (a net refund is allowed): the mean is 1/3, so the scores
    # would be ±9e309; the indicator has no usable benchmark and scores 0 for everyone
    got = decisions(city([(1e-293, {"tax_yuan": -1e15}), (1e-293, {"tax_yuan": 1e15}), (1.0, {"tax_yuan": 1.0})]),
                    backend)
    assert len(got) == 3 and all(map(all_finite, got.values()))
    for evaluation in got.values():
        cell = evaluation["indicators"]["tax_per_mu"]
        assert (cell["flag"], cell["score"]) == ("no_benchmark", 0.0)
        assert cell["benchmark"] == pytest.approx(1 / 3)
        assert evaluation["score"] == 0.0
    assert sorted(e["rank"] for e in got.values()) == [1, 2, 3]
    assert all(e["tied"] for e in got.values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_times_a_huge_value_divides_first(backend):
    # value added per kg 1e308 (1e8 yuan, 1e-300 kg): 10 × 1e308 overflows, 10 × (1e308 ÷ mean) is 30
    firms = [(10.0, {"tax_yuan": 100_000, "value_added_yuan": 1e8 if n == 0 else 5e6,
                     "emissions_kg": 1e-300 if n == 0 else 50.0}) for n in range(3)]
    got = decisions(city(firms), backend)
    assert len(got) == 3 and all(map(all_finite, got.values()))
    cells = sorted((e["indicators"]["value_added_per_kg_pollutant"] for e in got.values()), key=lambda c: -c["value"])
    assert cells[0]["value"] == 1e308
    assert cells[0]["score"] == pytest.approx(30.0)  # 10 × 1e308 ÷ (1e308 / 3)
    assert [c["score"] for c in cells[1:]] == [0.0, 0.0]
    best = max(got.values(), key=lambda e: e["score"])
    assert best["rank"] == 1 and best["indicators"]["value_added_per_kg_pollutant"]["value"] == 1e308


def custom_method(**indicator) -> dict:
    """The built-in method with one population of one indicator (a fixed benchmark of 1, weight 1)
    and `missing_scores: mean`."""
    document = yaml.safe_load((ROOT / "engine" / "decide" / "policy" / "mu_average.yaml").read_text(encoding="utf-8"))
    document["missing_scores"] = "mean"
    population = document["populations"][0]
    population["when"] = "true"
    population["indicators"] = [{**population["indicators"][0], "weight": 1, "benchmark": 1, "cap": None, **indicator}]
    document["populations"] = [population]
    return document


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_mean_score_for_a_missing_value_is_exact_beyond_the_float_range(backend):
    # scores 1e308 and 1e308 (a fixed benchmark of 1, weight 1): math.fsum of them overflows; the
    # third firm reports no tax (missing) and scores their exact mean, 1e308
    firms = [(1e-300, {"tax_yuan": 1e8}), (1e-300, {"tax_yuan": 1e8}), (1.0, {"value_added_yuan": 1.0})]
    got = decisions(city(firms), backend, evaluation_method=custom_method())
    assert len(got) == 3 and all(map(all_finite, got.values()))
    assert sorted(e["score"] for e in got.values()) == [1e308, 1e308, 1e308]


def test_a_weight_or_a_cap_whose_scores_cannot_add_up_is_refused():
    for key in ("weight", "cap"):  # two indicators: each score at most half the float range
        document = custom_method()
        indicators = document["populations"][0]["indicators"]
        indicators.append({**indicators[0], "id": "twice", key: 1e308})
        with pytest.raises(MethodError, match=f"{key} 1e\\+308 is too large"):
            load_method(document)
        indicators[1][key] = 8e307
        load_method(document)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_denominator_too_small_to_divide_by_scores_as_a_zero_one(backend):
    # value added per kg of pollutants (zero_denominator: best): 1e8 yuan over 5e-324 kg is past the
    # float range; flagged zero_denominator as before, and now scored as a zero one: the best (was 0)
    figures = {"value_added_yuan": 1e8, "energy_tce": 100.0, "employees_fte": 10, "revenue_yuan": 1e9,
               "rd_expense_yuan": 1e7, "tax_yuan": 1e6}
    got = decisions(city([(10.0, {**figures, "emissions_kg": kg}) for kg in (5e-324, 0, 1000.0, 2000.0)]), backend)
    cells = [got[make_uscc(f"91330200MA2XF{n:04d}")]["indicators"]["value_added_per_kg_pollutant"] for n in range(4)]
    assert [(c["value"], c["flag"]) for c in cells[:2]] == [(None, "zero_denominator")] * 2
    assert cells[0]["score"] == cells[1]["score"] == max(c["score"] for c in cells[2:]) > 0


# ---- the daily benchmark-volume correction ----------------------------------------------------------


REG = _event("r1", "enterprise.registered", SUBJECT, "2024-01-01T08:00:00+08:00",
             registration("dyeing", sub_sector="cotton_woven"))


def wastewater(value: float, quantity: float, volume: float) -> dict:
    return _event("w1", "discharge.measured", SUBJECT, "2024-03-04T00:00:00+08:00",
                  {"outlet": "DW001", "point": "plant", "destination": "direct", "pollutant": "w01018", "value": value,
                   "unit": "mg/L", "period": "day", "volume_m3": volume,
                   "production": {"quantity": quantity, "unit": "t", "category": "cotton_woven"}})


def every_path(events: list[dict], tmp_path, parameters: dict | None = None) -> list[dict]:
    """The records on both backends' per-event path and the batch path (with and without a worker):
    asserted identical, every one valid against its schema and finite."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    outputs = []
    for how in ("compiled", "rete", "batch", "jobs"):
        if how in BACKENDS:
            records = list(Engine(plugins=PLUGINS, backend=how, parameters=parameters).run(events))
        else:
            records = list(Engine(plugins=PLUGINS, parameters=parameters).run_batch(JsonlFiles([path]), workers=1 if how == "jobs" else 0,
                                                             batch_size=8))
        for record in records:
            assert _record_problem(record.to_dict()) is None
            if isinstance(record, Finding):
                assert record.judged is not None and math.isfinite(record.judged)
        outputs.append([json.loads(orjson.dumps(r.to_dict())) for r in records])
    assert outputs[0] == outputs[1] == outputs[2] == outputs[3]
    return [r for r in outputs[0] if r["record"] in ("finding", "data_gap", "decision")]


@pytest.mark.parametrize("quantity, volume, cause", [
    (5e-324, 4054.0, "too small to divide the actual volume by"),  # the ratio is inf
    (1e-300, 1e9, "beyond the float range"),  # the ratio 7e306 is finite, 33.8 × it is not
])
def test_a_benchmark_volume_too_small_to_correct_by_is_a_data_gap(tmp_path, quantity, volume, cause):
    (gap,) = every_path([REG, wastewater(33.8, quantity, volume)], tmp_path)
    assert (gap["record"], gap["reason"]) == ("data_gap", "benchmark_inputs_missing")
    assert cause in gap["detail"] and gap["measured"]["value"] == 33.8


def test_explain_names_why_the_correction_could_not_be_made():
    """The gap's cause as the judge found it, also where the volumes themselves are fine."""
    events = [REG, wastewater(33.8, 1e-300, 1e9)]
    (gap,) = [r for r in Engine(plugins=PLUGINS).run(events) if r.to_dict()["record"] == "data_gap"]
    report = explain(Engine(plugins=PLUGINS), lambda: iter(events), gap.id)
    assert "is beyond the float range" in report["gap"]["cause"]
    assert "the benchmark-volume correction cannot be made: the value times the volume ratio" in explain_text(report)


@pytest.mark.parametrize("quantity, volume", [(5e-324, 4054.0), (1e-300, 1e9)])
def test_a_value_above_the_limit_already_is_a_finding_on_the_measured_value(tmp_path, quantity, volume):
    (finding,) = every_path([REG, wastewater(5000.0, quantity, volume)], tmp_path)
    assert finding["record"] == "finding" and finding["judged"] == 5000.0
    (note,) = [c for c in finding["corrections"] if c["kind"] == "benchmark_volume"]
    assert note["applied"] is False and "exceeds the limit already" in note["reason"]


def test_a_small_but_representable_benchmark_volume_still_corrects(tmp_path):
    (finding,) = every_path([REG, wastewater(33.8, 1e-9, 1e9)], tmp_path)
    assert finding["judged"] == pytest.approx(33.8 * 1e9 / (1e-9 * 140))  # cotton woven: 140 m3/t


# ---- a fact's measure past the float range ----------------------------------------------------------


FOUNDRY = _event("r1", "enterprise.registered", SUBJECT, "2024-01-01T08:00:00+08:00", registration("foundry"))
ENERGY_NORM = {"foundry": {"energy_kgce_per_t_castings": 500}}


def energy(tce: float, tonnes: float) -> dict:
    return _event("e1", "energy.reported", SUBJECT, "2024-04-01T00:00:00+08:00",
                  {"period": "2024-03", "energy_tce": tce, "output": {"quantity": tonnes, "unit": "t_castings"}})


def test_a_measure_past_the_float_range_is_a_data_gap_not_a_finding(tmp_path):
    (gap,) = every_path([FOUNDRY, energy(1e15, 5e-324)], tmp_path, ENERGY_NORM)  # no decision either
    assert (gap["record"], gap["reason"], gap["rule"]) == ("data_gap", "figure_out_of_range", "foundry.energy.per_t_castings")
    assert gap["period"] == "none" and gap["measured"] is None and gap["event"] == ["e1"]
    assert gap["detail"] == "the measure metric.foundry_energy_kgce_per_t is not a finite number for this event's figures"


def test_a_large_but_finite_measure_is_still_judged(tmp_path):
    finding, decision = every_path([FOUNDRY, energy(1e15, 1e-290)], tmp_path, ENERGY_NORM)
    assert finding["record"] == "finding" and finding["judged"] == pytest.approx(1e308)
    assert decision["list"] == "high_consumption_low_efficiency"


def test_explain_shows_the_measure_that_left_the_float_range():
    events = [FOUNDRY, energy(1e15, 5e-324)]
    engine = Engine(plugins=PLUGINS, parameters=ENERGY_NORM)
    (gap,) = [r for r in engine.run(events) if r.to_dict()["record"] == "data_gap"]
    report = explain(Engine(plugins=PLUGINS, parameters=ENERGY_NORM), lambda: iter(events), gap.id)
    assert report["gap"]["values"] == {"metric.foundry_energy_kgce_per_t": "inf"}
    text = explain_text(report)
    assert "no finite number from: metric.foundry_energy_kgce_per_t" in text
    assert "metric.foundry_energy_kgce_per_t = \"inf\"" in text
    assert "所报数据无法算出有限数值" in explain_text(report, lang="zh")


def dyeing_energy(tonnes_of_fabric: float, unit: str = "100m_fabric") -> dict:
    return _event("e1", "energy.reported", SUBJECT, "2024-04-01T00:00:00+08:00",
                  {"period": "2024-03", "energy_tce": 4, "output": {"quantity": tonnes_of_fabric, "unit": unit}})


def test_a_rules_arithmetic_past_the_float_range_is_a_data_gap_where_the_rule_applies(tmp_path):
    cotton = _event("r1", "enterprise.registered", SUBJECT, "2024-01-01T08:00:00+08:00",
                    registration("dyeing", sub_sector="cotton_woven"))
    (gap,) = every_path([cotton, dyeing_energy(5e-324)], tmp_path)
    assert (gap["rule"], gap["reason"]) == ("dyeing.norms2017.energy_per_100m", "figure_out_of_range")
    assert "data.energy_tce * 1000 / data.output.quantity is not a finite number" in gap["detail"]
    # where the rest of the condition does not hold, the rule does not apply: nothing, as for 100
    silk = _event("r1", "enterprise.registered", SUBJECT, "2024-01-01T08:00:00+08:00",
                  registration("dyeing", sub_sector="silk_woven"))
    assert every_path([silk, dyeing_energy(5e-324)], tmp_path) == []
    assert every_path([cotton, dyeing_energy(5e-324, unit="t_castings")], tmp_path) == []
    finding = every_path([cotton, dyeing_energy(100)], tmp_path)[0]
    assert (finding["record"], finding["judged"]) == ("finding", 40.0)


PROBE_PACK = """
pack: probe
version: "1"
title: {zh: 测试, en: probe}
rules:
  - id: probe.energy.cap
    version: 1
    title: {zh: 测试, en: a cap that leaves the float range}
    category: energy
    severity: minor
    verified: false
    applies_to: {type: energy.reported}
    condition: data.energy_tce > 0
    measure: data.energy_tce
    unit: tce
    limit_from: {max: data.energy_tce * 1e308}
    basis: {standard: probe}
    examples:
      - name: under its cap
        given:
          - {type: energy.reported, time: "2024-04-01T00:00:00+08:00", data: {energy_tce: 0.5}}
        expect: [{judged: 0.5}]
"""


def test_a_limit_past_the_float_range_is_a_data_gap():
    rules, _ = compile_rules([parse_pack(RulePackSource("probe", "probe.yaml", PROBE_PACK))])
    judge = Judge(rules, [], "sha256:" + "0" * 64, lambda code: {"industry": "foundry"})
    (gap,) = judge.fact(energy(2.0, 1.0))
    assert _record_problem(gap.to_dict()) is None
    assert (gap.reason, gap.detail) == ("figure_out_of_range",
                                        "the limit data.energy_tce * 1e308 is not a finite number for this event's figures")
    (finding,) = judge.fact(energy(0.5, 1.0))
    assert finding.limit == {"max": 5e307, "unit": "tce"} and _record_problem(finding.to_dict()) is None


PROBE_READING_PACK = """
pack: probe
version: "1"
title: {zh: 测试, en: probe}
rules:
  - id: probe.stack.scaled
    version: 1
    title: {zh: 测试, en: a reading's measure that leaves the float range}
    category: emission
    severity: minor
    verified: false
    applies_to: {type: emission.measured, pollutant: a21026}
    period: hour
    measure: data.value * 1e300
    unit: mg/m3
    condition: data.kind == 'probe' and judged > 10
    basis: {standard: probe}
    examples:
      - name: at its bound
        given:
          - {type: emission.measured, time: "2024-04-01T00:00:00+08:00", data: {value: 1e-299, unit: mg/m3, pollutant: a21026, kind: probe}}
        expect: [{judged: 10.0}]
"""


def test_a_readings_measure_past_the_float_range_is_a_data_gap():
    rules, _ = compile_rules([parse_pack(RulePackSource("probe", "probe.yaml", PROBE_READING_PACK))])
    judge = Judge(rules, [], "sha256:" + "0" * 64, lambda code: {"industry": "foundry"})

    def reading(value: float, kind: str = "probe") -> Reading:
        return Reading(enterprise=SUBJECT, type="emission.measured", time="2024-04-01T00:00:00+08:00", epoch=0.0,
                       event_ids=("e1",), outlet="DA001", process=None, point=None, destination=None, pollutant="a21026",
                       value=value, unit="mg/m3", raw_unit="mg/m3", o2=None, period="hour", flag="N",
                       data={"value": value, "kind": kind})

    (gap,) = judge.reading(reading(1e10), "hour")
    assert _record_problem(gap.to_dict()) is None
    assert (gap.reason, gap.period, gap.measured) == ("figure_out_of_range", "hour", {"value": 1e10, "unit": "mg/m3"})
    assert judge.reading(reading(1e10, kind="other"), "hour") == []  # the rule does not apply
    (finding,) = judge.reading(reading(1e-290), "hour")
    assert finding.judged == pytest.approx(1e10)
