"""Schema-valid but extreme figures (a fuzzer's findings, sections 3-5): the mu-average close and
the daily benchmark-volume correction stay finite, raise nothing, and every record passes its schema.

- a tiny `land_area_mu` makes the population's sum of tax per mu leave the float range: the mean is
  then computed exactly (docs/mu-average.md rule 3);
- opposite huge values make the mean tiny beside them: a score beyond the float range leaves the
  indicator without a benchmark (`no_benchmark`, 0 for everyone), never an exception;
- `weight × value ÷ benchmark` divides first when the product overflows (value 1e308, weight 10);
- a benchmark volume so small that the ratio, or the corrected value, is not a finite number: the
  correction cannot be made (docs/rule-packs.md), a `benchmark_inputs_missing` data gap, or a
  finding on the measured value when it exceeds already.
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


# ---- the daily benchmark-volume correction ----------------------------------------------------------


REG = _event("r1", "enterprise.registered", SUBJECT, "2024-01-01T08:00:00+08:00",
             registration("dyeing", sub_sector="cotton_woven"))


def wastewater(value: float, quantity: float, volume: float) -> dict:
    return _event("w1", "discharge.measured", SUBJECT, "2024-03-04T00:00:00+08:00",
                  {"outlet": "DW001", "point": "plant", "destination": "direct", "pollutant": "w01018", "value": value,
                   "unit": "mg/L", "period": "day", "volume_m3": volume,
                   "production": {"quantity": quantity, "unit": "t", "category": "cotton_woven"}})


def every_path(events: list[dict], tmp_path) -> list[dict]:
    """The records on both backends' per-event path and the batch path (with and without a worker):
    asserted identical, every one valid against its schema and finite."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    outputs = []
    for how in ("compiled", "rete", "batch", "jobs"):
        if how in BACKENDS:
            records = list(Engine(plugins=PLUGINS, backend=how).run(events))
        else:
            records = list(Engine(plugins=PLUGINS).run_batch(JsonlFiles([path]), workers=1 if how == "jobs" else 0,
                                                             batch_size=8))
        for record in records:
            assert _record_problem(record.to_dict()) is None
            if isinstance(record, Finding):
                assert record.judged is not None and math.isfinite(record.judged)
        outputs.append([json.loads(orjson.dumps(r.to_dict())) for r in records])
    assert outputs[0] == outputs[1] == outputs[2] == outputs[3]
    return [r for r in outputs[0] if r["record"] in ("finding", "data_gap")]


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
