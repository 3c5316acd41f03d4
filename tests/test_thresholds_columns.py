"""A gate's benchmark-volume cuts applied to columns (`Gate.benchmark_quiet_columns`, what the
archive's columnar lane uses) give what they give one reading at a time (`Gate.benchmark_quiet`,
the JSONL lane's), on values, volumes and productions around every cut."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine, load_plugins
from engine.judge import Gate

ENGINE = Engine(plugins=load_plugins())


def benchmark_gates() -> list[Gate]:
    gates = []
    for rule in ENGINE.rules:
        if rule.benchmark is None or "day" not in rule.periods:
            continue
        for pollutant in sorted(rule.pollutants or []):
            gate = ENGINE.judge.screen("discharge.measured", pollutant, rule.unit, None,
                                       min(rule.points) if rule.points else "plant",
                                       min(rule.destinations) if rule.destinations else "direct",
                                       "day", "N", False, True)
            if isinstance(gate, Gate) and gate.benchmarks:
                gates.append(gate)
    return gates


GATES = benchmark_gates()
# and gates whose first benchmark rule is for every enterprise (none in the packs today): a
# correction it cannot make then leaves no reading quiet
EVERYONE = [replace(gate, benchmarks=(replace(gate.benchmarks[0], industries=None), *gate.benchmarks[1:]))
            for gate in GATES[:3]]
CATEGORIES = sorted({category for gate in GATES for cut in gate.benchmarks for category, _ in cut.per_unit})
PRODUCT = st.tuples(st.sampled_from(CATEGORIES + [None, "no_such_fabric"]), st.sampled_from(["t", "m2"]))
NUMBER = st.one_of(st.integers(0, 10 ** 6), st.floats(0, 1e6, allow_nan=False), st.sampled_from([0, 0.0, 1e-9, 1e12]))


def test_there_are_gates_with_benchmark_cuts_of_more_than_one_industry():
    assert len(GATES) > 5
    assert len({cut.industries for gate in GATES for cut in gate.benchmarks}) > 1


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(GATES) + len(EVERYONE))),
       st.lists(st.tuples(NUMBER, NUMBER, NUMBER, PRODUCT, st.sampled_from([1.0, 1 + 1e-12, 1 - 1e-12, 0.5, 2.0])),
                min_size=1, max_size=40))
def test_columns_give_what_one_reading_at_a_time_gives(g, readings):
    gate = (GATES + EVERYONE)[g]
    high = min(cut.high for cut in gate.benchmarks)
    rows = []
    for value, volume, quantity, (category, unit), near in readings:
        # some values right at a cut after the correction, some anywhere
        value = high * near if isinstance(value, int) and value % 3 == 0 else value
        rows.append((float(value), volume, quantity, category, unit))
    pairs = sorted({(r[3], r[4]) for r in rows}, key=repr)
    products = np.array([pairs.index((r[3], r[4])) for r in rows], dtype=np.int64)
    unquiet, index, sets = gate.benchmark_quiet_columns(
        np.array([r[0] for r in rows]), np.array([float(r[1]) for r in rows]), np.array([float(r[2]) for r in rows]),
        products, pairs)
    assert sets[0] == frozenset()
    for n, (value, volume, quantity, category, unit) in enumerate(rows):
        production = {"quantity": quantity, "unit": unit}
        if category is not None:
            production["category"] = category
        expected = gate.benchmark_quiet(value, {"volume_m3": volume, "production": production})
        assert bool(unquiet[n]) == (expected is None), (value, volume, quantity, category, unit)
        if expected is not None:
            assert sets[index[n]] == expected


def test_no_readings_give_no_answers():
    unquiet, index, sets = GATES[0].benchmark_quiet_columns(np.zeros(0), np.zeros(0), np.zeros(0),
                                                            np.zeros(0, dtype=np.int64), [])
    assert len(unquiet) == len(index) == 0 and sets == [frozenset()]


@pytest.mark.parametrize("quantity", [3, 7, 10 ** 12 - 1])
def test_an_integer_quantity_corrects_as_its_float_does(quantity):
    """The scalar arithmetic multiplies Python ints exactly; the columns multiply floats: the same
    below 2**53 (the schema's bound on a quantity is 1e12)."""
    gate = GATES[0]
    cut = gate.benchmarks[0]
    (category, unit), (y, to_m3) = next(iter(cut.per_unit.items()))
    benchmark = quantity * y * to_m3
    for volume in (benchmark, int(benchmark), int(benchmark) + 1, benchmark * (1 + 1e-12), 1):  # at the benchmark and above
        for value in (cut.high, cut.high * 0.999999, cut.high / 1.5):
            data = {"volume_m3": volume, "production": {"quantity": quantity, "unit": unit, "category": category}}
            unquiet, _, _ = gate.benchmark_quiet_columns(
                np.array([value]), np.array([float(volume)]), np.array([float(quantity)]), np.array([0]), [(category, unit)])
            expected = gate.benchmark_quiet(value, data)
            assert bool(unquiet[0]) == (expected is None)


def test_a_value_past_the_cut_of_a_rule_of_some_industries_is_quiet_for_the_others():
    """A benchmark rule of some industries only fires where it applies, as the judge skips a rule
    of another industry first: a value past its cut names its industries (quiet for enterprises
    of the others), by column and one reading at a time."""
    gate = next(g for g in GATES if all(cut.industries for cut in g.benchmarks))
    cut = gate.benchmarks[0]
    (category, unit), (y, to_m3) = min(cut.per_unit.items(), key=repr)
    data = {"volume_m3": 1.0, "production": {"quantity": 1.0 / (y * to_m3), "unit": unit, "category": category}}
    blocked = gate.benchmark_quiet(cut.high * 2, data)
    assert blocked is not None and cut.industries <= blocked
    unquiet, index, sets = gate.benchmark_quiet_columns(np.array([cut.high * 2]), np.array([1.0]),
                                                        np.array([1.0 / (y * to_m3)]), np.zeros(1, dtype=np.int64),
                                                        [(category, unit)])
    assert not unquiet[0] and sets[index[0]] == blocked
