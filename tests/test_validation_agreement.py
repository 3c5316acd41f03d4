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


def _naive_first_unrepresentable(value, path=""):
    """The obvious walk (building every path), to check the quick one against: the path of the
    first NaN, infinity or integer outside the 64-bit range."""
    import math

    if isinstance(value, float):
        return None if math.isfinite(value) else path or "(event)"
    if type(value) is int:
        return None if -(2**63) <= value <= 2**64 - 1 else path or "(event)"
    if isinstance(value, dict):
        for key, item in value.items():
            found = _naive_first_unrepresentable(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _naive_first_unrepresentable(item, f"{path}[{index}]")
            if found:
                return found
    return None


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
                        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4),
                        max_leaves=20)


@given(_JSONISH)
def test_the_quick_walk_finds_what_the_obvious_walk_finds(value):
    from engine.validate.schemas import first_unrepresentable

    found = first_unrepresentable(value)
    assert (found.rpartition(": ")[0] if found else None) == _naive_first_unrepresentable(value)

def _string_leaves(node, path=()):
    if isinstance(node, dict):
        for key, item in node.items():
            yield from _string_leaves(item, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _string_leaves(item, (*path, index))
    elif isinstance(node, str):
        yield path


def test_agree_on_strings_that_end_in_a_newline():
    """JSON Schema's patterns are ECMA-262: `$` is the end of the string. Python's `$` also
    matches before a final newline, so jsonschema took "a34013\\n" for a pollutant code and the
    engine raised AssertionError (the validators disagreed) before 2026-12-02."""
    refused = 0
    for event in SAMPLE:
        for path in _string_leaves(event):
            mutated = copy.deepcopy(event)
            target = mutated
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] += "\n"
            fast = VALIDATOR.fast_is_valid(mutated)
            assert fast is (VALIDATOR.reference_problem(mutated) is None), (path, mutated)
            refused += not fast
    assert refused > len(SAMPLE)  # patterns, formats and enums refuse most of them


def test_an_event_only_the_compiled_schema_refuses_is_refused_with_its_reason(monkeypatch):
    """Should the validators ever disagree again, the event is refused with the compiled
    schema's reason, not a traceback."""
    validator = Engine().validator
    event = copy.deepcopy(next(e for e in SAMPLE if e["type"] == "emission.measured"))
    event["data"]["pollutant"] = "not a code"
    monkeypatch.setattr(validator, "reference_problem", lambda event: None)
    problem = validator.problem(event)
    assert problem is not None and problem.startswith("data.pollutant: ") and "please report" in problem
