"""The compiled validator (hot path) and jsonschema (the reference) agree on every event."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.devtools.demo import generate_city

VALIDATOR = Engine().validator
CITY = generate_city(enterprises=60, days=1, seed=7)
SAMPLE = CITY.events[:: max(1, len(CITY.events) // 400)]

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=12))


def _paths(event):
    yield ("type",)
    yield ("subject",)
    yield ("time",)
    yield ("id",)
    for key in event["data"]:
        yield ("data", key)


def test_agree_on_the_demo_city():
    validator = VALIDATOR
    for event in CITY.events:
        assert validator.fast_is_valid(event) is (validator.reference_problem(event) is None)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLE), st.data())
def test_agree_on_mutated_events(event, data):
    validator = VALIDATOR
    mutated = copy.deepcopy(event)
    path = data.draw(st.sampled_from(list(_paths(event))))
    action = data.draw(st.sampled_from(["set", "delete"]))
    target = mutated
    for key in path[:-1]:
        target = target[key]
    if action == "delete":
        target.pop(path[-1], None)
    else:
        target[path[-1]] = data.draw(JSON_SCALARS)
    fast = validator.fast_is_valid(mutated)
    reference = validator.reference_problem(mutated)
    assert fast is (reference is None), (mutated, reference)


def _naive_first_non_finite(value, path="data"):
    """The obvious walk (building every path), to check the quick one against."""
    import math

    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _naive_first_non_finite(item, f"{path}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _naive_first_non_finite(item, f"{path}[{index}]")
            if found:
                return found
    return None


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
                        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4),
                        max_leaves=20)


@given(_JSONISH)
def test_the_non_finite_walk_finds_what_the_obvious_walk_finds(value):
    from engine.validate.schemas import first_non_finite

    assert first_non_finite(value) == _naive_first_non_finite(value)
