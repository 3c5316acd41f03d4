"""The rule condition language: grammar, null semantics, and that rule text cannot run code."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.judge.expressions import ExpressionError, compile_expression

ROOTS = frozenset({"judged", "limit", "low", "high", "data", "enterprise", "params"})


def ev(text: str, **scope):
    return compile_expression(text, ROOTS)(scope)


def test_comparison_and_arithmetic():
    assert ev("judged > limit", judged=70.0, limit=40) is True
    assert ev("judged > limit", judged=40, limit=40) is False
    assert ev("judged < low or judged > high", judged=5.5, low=6, high=9) is True
    assert ev("data.a * 1000 / data.b", data={"a": 2, "b": 4}) == 500
    assert ev("-judged + 3 * 2", judged=1) == 5
    assert ev("(1 + 2) * 3") == 9


def test_dotted_paths_lists_and_functions():
    data = {"kind": "cupola", "attributes": {"melt_rate_t_h": 2.5, "yoke": False}}
    assert ev("data.kind == 'cupola' and data.attributes.melt_rate_t_h < 3", data=data) is True
    assert ev("not data.attributes.yoke", data=data) is True
    assert ev("data.kind in ['cupola', \"gas_furnace\"]", data=data) is True
    assert ev("data.kind not in ['cupola']", data=data) is False
    assert ev("max(1, judged, 3) == 7 and min(judged, 2) == 2 and abs(-4) == 4", judged=7) is True
    assert ev("present(data.kind) and not present(data.missing)", data=data) is True


def test_null_semantics_never_raise():
    assert ev("data.missing.deeper > 1", data={}) is False
    assert ev("data.missing < 1", data={}) is False
    assert ev("data.a / data.b", data={"a": 1, "b": 0}) is None
    assert ev("data.a / data.b > 0", data={"a": 1, "b": 0}) is False
    assert ev("data.s > 3", data={"s": "41"}) is False  # a string is never a number
    assert ev("data.x == null", data={}) is True
    assert ev("judged + 1", judged=None) is None


def test_arithmetic_past_the_float_range_is_no_number_unless_unbounded():
    """A condition reads a result past the float range as no number (as a missing figure); a rule's
    measure and limit are compiled unbounded, so the judge can tell the two apart (a data gap,
    `figure_out_of_range`, where a missing figure gives no finding)."""
    data = {"a": 1e15, "b": 5e-324, "c": 1e308}
    assert ev("data.a * 1000 / data.b", data=data) is None
    assert ev("data.a * 1000 / data.b > 1", data=data) is False
    assert ev("-(data.c * 10)", data=data) is None

    def unbounded(text, **scope):
        return compile_expression(text, ROOTS, unbounded=True)(scope)

    assert unbounded("data.a * 1000 / data.b", data=data) == float("inf")
    assert unbounded("-(data.c * 10)", data=data) == float("-inf")
    assert math.isnan(unbounded("data.c * 10 - data.c * 10", data=data))
    assert unbounded("data.a / data.z", data={"a": 1, "z": 0}) is None  # a division by zero is still no number
    assert unbounded("data.a * data.missing", data=data) is None
    assert unbounded("data.a * 1000 / data.a", data=data) == 1000.0


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",           # calls only of the four functions
        "open('x')",
        "data[0]",
        "lambda: 1",
        "judged >",
        "judged > limit limit",
        "1 +",
        "x in []",
        "'unterminated",
        "judged ; 1",
        "min()",
        "abs(1, 2)",
    ],
)
def test_rejected_at_compile_time(text):
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, ROOTS)
    assert "column" in str(info.value)


def test_attribute_access_is_a_key_lookup_not_python_getattr():
    # dunder names are just keys of a mapping; nothing is resolved on Python objects
    assert ev("data.__class__ == null", data={"a": 1}) is True
    assert ev("judged.__class__ == null", judged=1.5) is True


def test_error_points_at_the_column():
    with pytest.raises(ExpressionError) as info:
        compile_expression("judged > lmit", ROOTS)
    assert "unknown name 'lmit'" in str(info.value)
    assert "column 10" in str(info.value)


@given(st.floats(allow_nan=False, allow_infinity=False, width=32), st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_comparisons_agree_with_python(a, b):
    assert ev("judged > limit", judged=a, limit=b) is (a > b)
    assert ev("judged <= limit", judged=a, limit=b) is (a <= b)


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, width=32)
                     | st.text("ab", max_size=2),
                     lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text("ab", max_size=1), inner, max_size=2),
                     max_leaves=4)
_ORDERS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _reference(op: str, a, b) -> bool:
    """What a comparison gives, written out: equality is Python's on the values (so `true == 1`
    holds, as it always has); an order is false when a side is null (docs/rule-packs.md, null
    semantics), when one side is a number (not a bool) and the other is not, or when the two
    cannot be ordered."""
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    if a is None or b is None or number(a) != number(b):
        return False
    try:
        return bool(_ORDERS[op](a, b))
    except TypeError:
        return False


def _literal(value) -> str | None:
    """`value` written as a constant of the language, or None when it has no such spelling here."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int) and value >= 0:
        return str(value)
    return f"'{value}'" if isinstance(value, str) else None


@given(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), _JSON, _JSON)
def test_every_comparison_gives_what_the_reference_gives(op, a, b):
    """Each operator is compiled to its own closure, with a constant right side held as a value:
    whatever the two sides hold, one level deep, two levels deep, or a constant."""
    expected = _reference(op, a, b)
    assert ev(f"data.a {op} limit", data={"a": a}, limit=b) is expected
    assert ev(f"data.x.a {op} data.y.b", data={"x": {"a": a}, "y": {"b": b}}) is expected
    inner = a.get("b") if isinstance(a, dict) else None  # a key of something not an object: null
    assert ev(f"data.a.b {op} limit", data={"a": a}, limit=b) is _reference(op, inner, b)
    literal = _literal(b)
    if literal is not None:
        assert ev(f"data.a {op} {literal}", data={"a": a}) is expected


@pytest.mark.parametrize("text,upward", [
    ("judged > limit", True), ("judged >= limit and enterprise.sub_sector != 'batik'", True),
    ("limit < judged or data.x == 1", True), ("judged < limit", False), ("not judged > limit", False),
    ("judged * 2 > limit", False), ("judged > judged", False), ("data.x == 1", True),
])
def test_upper_limits_are_recognised(text, upward):
    from engine.judge.expressions import holds_upward, parse

    assert holds_upward(parse(text), ("judged",)) is upward


def test_a_benchmark_corrected_rule_must_be_an_upper_limit():
    """The benchmark-volume correction can only raise a value: a rule it corrects must be an upper
    limit, so that an exceedance without the correction's inputs is still an exceedance."""
    import yaml

    from engine.judge import RulePackError, compile_rules, parse_pack
    from engine.plugins import RulePackSource

    pack = {"pack": "t", "version": "1", "title": {"zh": "t", "en": "t"},
            "parameters": {"bench": {"value": {"a": 10}, "unit": "m3/t"}},
            "rules": [{"id": "t.low", "version": 1, "title": {"zh": "t", "en": "t"}, "category": "discharge",
                       "applies_to": {"type": "discharge.measured", "pollutant": "w01018"}, "period": "day",
                       "parameters": {"limit": {"value": 5, "unit": "mg/L"}}, "correction": {"benchmark_volume": "bench"},
                       "condition": "judged < limit", "basis": {"standard": "x"}, "verified": True, "severity": "minor",
                       "examples": [{"name": "x", "given": [{"type": "evaluation.closed", "time": "2024-01-01T00:00:00+08:00",
                                                  "data": {"year": 2023}}], "expect": []}]}]}
    with pytest.raises(RulePackError, match="upper limit"):
        compile_rules([parse_pack(RulePackSource("t", "t.yaml", yaml.safe_dump(pack)))])
