"""Validation of many events of one shape at once, compiled from the same composed schemas.

The batch path meets thousands of events with the same keys (a city's stack readings).
For one exact shape (event type, envelope keys, data keys, data values all scalars) the
composed schema of that type reduces to what it says about each field, because every
keyword that relates fields (`required`, `additionalProperties`, `patternProperties`,
`dependentRequired`, an `if` that names an absent key) is decided by the key set alone.
What remains is a check per column:

* numeric and length bounds with a declared type are checked with `min`/`max` over the
  column (C loops, no Python per value);
* anything else a leaf may say (`enum`, `const`, `pattern`, `format`) is checked once per
  distinct value by jsonschema-rs compiled from that very leaf schema, with the same format
  checkers, and remembered (a city has a few hundred outlets, pollutants and timestamps);
* an `if` that only compares scalar fields with `const` (the physical bounds of a value by
  its unit, schemas/vocabulary.schema.json `measurement_bounds`) makes its `then` a check of
  the rows where those fields have those values.

A shape whose schema uses any other keyword has no plan. When a column check fails, its
values are checked one by one and only the events with a failing value leave the group.
Those take the per-event path, which is exact and writes the error message. So a plan can
only ever say "valid", never invent an error;
tests/test_fastlane.py checks plans against the per-event validator on mutated events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]
Shape = Mapping[str, "Shape | None"]

_ANNOTATIONS = frozenset({"title", "description", "default", "$comment", "examples", "$schema", "$id", "deprecated"})
_OBJECT_KEYWORDS = frozenset({"type", "required", "properties", "additionalProperties", "patternProperties",
                              "dependentRequired", "if", "then", "else", "allOf", "anyOf", "oneOf"}) | _ANNOTATIONS
_VECTOR_KEYWORDS = frozenset({"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                              "minLength", "maxLength"}) | _ANNOTATIONS
_LEAF_KEYWORDS = _VECTOR_KEYWORDS | {"enum", "const", "pattern", "format"}
_SAFE_INT = 2 ** 53  # beyond this the per-event path's Rust validator may not represent an integer: go slow
_TYPES: dict[str, frozenset[type]] = {
    "number": frozenset({int, float}),
    "integer": frozenset({int}),  # 3.0 is an integer to JSON Schema: such columns simply go slow
    "string": frozenset({str}),
    "boolean": frozenset({bool}),
    "null": frozenset({type(None)}),
}
_STRINGS = frozenset({str})
_CACHE_LIMIT = 1 << 17


class NoPlan(Exception):
    """The schema says something about this shape that columns cannot check."""


When = tuple[tuple[Path, Any], ...]  # a check applies to the rows whose columns equal these values


@dataclass(slots=True)
class ColumnCheck:
    """What the schema requires of every value in one column (of the rows `when` selects)."""

    path: Path
    when: When = ()
    types: frozenset[type] | None = None
    low: tuple[float, bool] | None = None  # (bound, exclusive)
    high: tuple[float, bool] | None = None
    min_length: int | None = None
    max_length: int | None = None
    per_value: Callable[[Any], bool] | None = None  # enum/const/pattern/format, on strings only
    valid: set[Any] = field(default_factory=set)

    def accepts(self, column: Sequence[Any]) -> bool:
        """Whether every value passes; False may be a false alarm (the caller then goes slow)."""
        if self.per_value is not None and self.types is None and self.low is None and self.high is None \
                and self.min_length is None and self.max_length is None:
            return self._distinct_values_pass(column)  # the common case: one set() over the column
        if self.types == _STRINGS:
            try:
                "".join(column)  # one C pass that fails on anything but a string
            except TypeError:
                return False
            kinds: set[type] = set(_STRINGS)
        else:
            kinds = set(map(type, column))
        if self.types is not None and not kinds <= self.types:
            return False
        if self.low is not None or self.high is not None:
            if not kinds <= {int, float}:
                return False  # a string against a bound: let the exact path judge
            low, high = min(column), max(column)
            if (int in kinds and (low < -_SAFE_INT or high > _SAFE_INT)) or not self._within(low, high):
                return False
        if self.min_length is not None or self.max_length is not None:
            if kinds != {str}:
                return False
            lengths = set(map(len, column))  # a few distinct lengths (ids of one scheme share theirs)
            if not self._long_enough(min(lengths), max(lengths)):
                return False
        return self.per_value is None or self._distinct_values_pass(column)

    def _within(self, low: float, high: float) -> bool:
        """Whether values from `low` to `high` meet the numeric bounds."""
        if self.low is not None and (low <= self.low[0] if self.low[1] else low < self.low[0]):
            return False
        return self.high is None or not (high >= self.high[0] if self.high[1] else high > self.high[0])

    def _long_enough(self, shortest: int, longest: int) -> bool:
        """Whether strings of `shortest` to `longest` characters meet the length bounds."""
        return ((self.min_length is None or shortest >= self.min_length)
                and (self.max_length is None or longest <= self.max_length))

    def failing(self, column: Sequence[Any]) -> list[int]:
        """Positions of the values that fail (after `accepts` said some may): checked one by one."""
        return [i for i, value in enumerate(column) if not self._value_passes(value)]

    def _value_passes(self, value: Any) -> bool:
        kind = type(value)
        if self.types is not None and kind not in self.types:
            return False
        if self.low is not None or self.high is not None:
            if kind not in (int, float) or (kind is int and not -_SAFE_INT <= value <= _SAFE_INT):
                return False
            if not self._within(value, value):
                return False
        if self.min_length is not None or self.max_length is not None:
            if kind is not str or not self._long_enough(len(value), len(value)):
                return False
        if self.per_value is not None:
            if kind is not str:
                return False
            if value not in self.valid:
                if not self.per_value(value):
                    return False
                if len(self.valid) < _CACHE_LIMIT:
                    self.valid.add(value)
        return True

    def _distinct_values_pass(self, column: Sequence[Any]) -> bool:
        """Each distinct value checked once, ever: only strings are remembered (1 == 1.0 == True)."""
        try:
            distinct = set(column)
        except TypeError:  # an unhashable value (a list or an object) where a string belongs
            return False
        if distinct <= self.valid:
            return True
        new = distinct - self.valid
        if any(type(value) is not str for value in new):
            return False
        if len(self.valid) + len(new) > _CACHE_LIMIT:
            self.valid.clear()
        for value in new:
            if not self.per_value(value):  # type: ignore[misc]
                return False
        self.valid |= new
        return True


@dataclass(frozen=True, slots=True)
class ShapePlan:
    """Column checks for one shape; `paths` are the columns to extract, in plan order."""

    checks: tuple[ColumnCheck, ...]

    def failing(self, columns: Mapping[Path, Sequence[Any]]) -> set[int]:
        """Positions (rows of the columns) of events that fail some check; empty when all pass."""
        bad: set[int] = set()
        by_value: dict[Path, dict[str, list[int]] | None] = {}  # a `when` column's rows by string, once
        for check in self.checks:
            column = columns[check.path]
            rows = _selected(check.when, columns, by_value) if check.when else None
            if rows is not None:
                if not rows:
                    continue
                if len(rows) < len(column):
                    picked = [column[i] for i in rows]
                    if not check.accepts(picked):
                        bad.update(rows[i] for i in check.failing(picked))
                    continue
            if not check.accepts(column):
                bad.update(check.failing(column))
        return bad


def _selected(when: When, columns: Mapping[Path, Sequence[Any]],
              by_value: dict[Path, dict[str, list[int]] | None]) -> list[int]:
    """The rows whose columns hold the `when` values (JSON equality: a string equals only a string).

    `by_value` keeps, per column of strings only, its rows by value: the checks of one plan ask the
    same column (a reading's unit) about each of its values."""
    rows: list[int] | None = None
    for path, value in when:
        column = columns[path]
        strings = _rows_by_string(column, path, by_value)
        if strings is not None:
            matched = strings.get(value, []) if type(value) is str else []
        else:
            matched = _matching(column, value)
        if rows is None:
            rows = matched
        else:
            chosen = set(matched)
            rows = [i for i in rows if i in chosen]
        if not rows:
            return []
    return rows or []


def _rows_by_string(column: Sequence[Any], path: Path,
                    by_value: dict[Path, dict[str, list[int]] | None]) -> dict[str, list[int]] | None:
    """The rows of each value of a column of strings (None for a column with any other value)."""
    if path not in by_value:
        index: dict[str, list[int]] | None = None
        try:
            "".join(column)  # one C pass that fails on anything but a string
        except TypeError:
            pass
        else:
            distinct = set(column)
            index = {distinct.pop(): list(range(len(column)))} if len(distinct) == 1 else rows_by_value(column)
        by_value[path] = index
    return by_value[path]


def rows_by_value(column: Iterable[Any]) -> dict[Any, list[int]]:
    """The rows (positions) of each distinct value of a column, the values in first-seen order."""
    index: dict[Any, list[int]] = {}
    for i, item in enumerate(column):
        rows = index.get(item)
        if rows is None:
            index[item] = [i]
        else:
            rows.append(i)
    return index


def _matching(column: Sequence[Any], value: Any) -> list[int]:
    """The rows of `column` JSON-equal to `value`."""
    try:
        distinct = set(column)
    except TypeError:  # an unhashable value: compare row by row
        return [i for i, item in enumerate(column) if _json_equal(item, value)]
    if len(distinct) == 1:
        (only,) = distinct
        return list(range(len(column))) if _json_equal(only, value) else []
    if not any(_json_equal(d, value) for d in distinct):
        return []
    return [i for i, item in enumerate(column) if _json_equal(item, value)]


def _json_equal(item: Any, value: Any) -> bool:
    return type(item) is type(value) and item == value if isinstance(value, (str, bool)) or value is None \
        else (type(item) in (int, float) and item == value)


def plan_shape(schema: Mapping[str, Any], shape: Shape,
               compile_leaf: Callable[[Mapping[str, Any]], Callable[[Any], bool]]) -> ShapePlan | None:
    """The column checks `schema` makes on objects of exactly `shape`, or None when there are none.

    `shape` maps each key to None (a scalar) or to the shape of a nested object.
    `compile_leaf` turns a leaf schema into a predicate (the engine's compiled validator).
    """
    leaves: dict[tuple[Path, When], list[Mapping[str, Any]]] = {}
    try:
        _collect(schema, shape, (), leaves)
        checks = tuple(_column_check(path, when, parts, compile_leaf)
                       for (path, when), parts in sorted(leaves.items(), key=lambda item: repr(item[0])))
    except NoPlan:
        return None
    return ShapePlan(checks)


def _collect(schema: Any, shape: Shape, path: Path, leaves: dict[tuple[Path, When], list[Mapping[str, Any]]],
             when: When = ()) -> None:
    """Walk an object schema along `shape`, gathering the schemas each scalar must meet (on the
    rows `when` selects)."""
    if schema is True or schema == {}:
        return
    if not isinstance(schema, Mapping) or not set(schema) <= _OBJECT_KEYWORDS:
        raise NoPlan(path)
    kind = schema.get("type", "object")
    if kind != "object":
        raise NoPlan(path)
    keys = set(shape)
    if not set(schema.get("required", ())) <= keys:
        raise NoPlan(path)  # invalid: the exact path says which key is missing
    properties: Mapping[str, Any] = schema.get("properties", {})
    patterns = [(re.compile(p), s) for p, s in schema.get("patternProperties", {}).items()]
    additional = schema.get("additionalProperties", True)
    for key in shape:
        matched = [s for pattern, s in patterns if pattern.search(key)]
        if any(s is not True and s != {} for s in matched):
            raise NoPlan(path + (key,))
        if key not in properties and not matched and additional is not True:
            raise NoPlan(path + (key,))  # additionalProperties false (or a schema): not for columns
    for key, subschema in properties.items():
        if key not in shape:
            continue
        sub = shape[key]
        if sub is None:
            leaves.setdefault((path + (key,), when), []).append(subschema)
        else:
            _collect(subschema, sub, path + (key,), leaves, when)
    for key, needed in schema.get("dependentRequired", {}).items():
        if key in keys and not set(needed) <= keys:
            raise NoPlan(path + (key,))
    if "if" in schema:
        condition = schema["if"]
        selector = _const_condition(condition, shape, path)
        if selector == () or (selector is not None and "else" not in schema):  # () : true on every row
            if "then" in schema:
                _collect(schema["then"], shape, path, leaves, when + selector)
        elif not isinstance(condition, Mapping) or set(condition.get("required", ())) <= keys:
            raise NoPlan(path)  # otherwise only an `if` decided by an absent key is decidable here
        elif "else" in schema:
            _collect(schema["else"], shape, path, leaves, when)
    for part in schema.get("allOf", ()):
        _collect(part, shape, path, leaves, when)
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:  # branches for other JSON types fail on an object: one branch left is the rule
            branches = [part for part in schema[keyword] if not _rejects_objects(part)]
            if len(branches) != 1:
                raise NoPlan(path)
            _collect(branches[0], shape, path, leaves, when)


def _rejects_objects(schema: Any) -> bool:
    """Whether `schema` fails on every object by its `type` alone."""
    if not isinstance(schema, Mapping) or "type" not in schema:
        return schema is False
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return "object" not in kinds


def _const_condition(condition: Any, shape: Shape, path: Path) -> When | None:
    """An `if` of the form {"properties": {KEY: {"const": SCALAR}, ...}} on scalar keys, perhaps
    with `required` keys the shape has and `"type": "object"`: the (column, value) pairs that
    make it true (() when it is true on every object of the shape). A key absent from the shape
    holds vacuously."""
    if not isinstance(condition, Mapping) or set(condition) - {"properties", "required", "type"} - _ANNOTATIONS:
        return None
    if condition.get("type", "object") != "object" or not set(condition.get("required", ())) <= set(shape):
        return None
    selector: list[tuple[Path, Any]] = []
    for key, sub in condition.get("properties", {}).items():
        if not isinstance(sub, Mapping) or set(sub) != {"const"} or isinstance(sub["const"], (dict, list)):
            return None
        if key not in shape:
            continue
        if shape[key] is not None:
            return None
        selector.append((path + (key,), sub["const"]))
    return tuple(selector)


def _flatten(parts: list[Any]) -> list[Mapping[str, Any]]:
    flat: list[Mapping[str, Any]] = []
    for part in parts:
        if part is True or part == {}:
            continue
        if not isinstance(part, Mapping):
            raise NoPlan(())
        rest = {k: v for k, v in part.items() if k != "allOf"}
        flat.append(rest)
        flat.extend(_flatten(list(part.get("allOf", ()))))
    return flat


def _column_check(path: Path, when: When, parts: list[Any],
                  compile_leaf: Callable[[Mapping[str, Any]], Callable[[Any], bool]]) -> ColumnCheck:
    check = ColumnCheck(path, when)
    per_value: list[Mapping[str, Any]] = []
    for part in _flatten(parts):
        if not set(part) <= _LEAF_KEYWORDS:
            raise NoPlan(path)
        if not set(part) <= _VECTOR_KEYWORDS:
            per_value.append(part)
            continue
        if "type" in part:
            names = part["type"] if isinstance(part["type"], list) else [part["type"]]
            if not all(isinstance(n, str) and n in _TYPES for n in names):
                raise NoPlan(path)
            allowed = frozenset().union(*(_TYPES[n] for n in names))
            check.types = allowed if check.types is None else check.types & allowed
        for keyword, exclusive in (("minimum", False), ("exclusiveMinimum", True)):
            if keyword in part:
                bound = (part[keyword], exclusive)
                check.low = bound if check.low is None or _tighter_low(bound, check.low) else check.low
        for keyword, exclusive in (("maximum", False), ("exclusiveMaximum", True)):
            if keyword in part:
                bound = (part[keyword], exclusive)
                check.high = bound if check.high is None or _tighter_high(bound, check.high) else check.high
        if "minLength" in part:
            check.min_length = max(part["minLength"], check.min_length or 0)
        if "maxLength" in part:
            check.max_length = part["maxLength"] if check.max_length is None else min(part["maxLength"], check.max_length)
    if per_value:
        check.per_value = compile_leaf({"allOf": per_value} if len(per_value) > 1 else per_value[0])
    return check


def _tighter_low(new: tuple[float, bool], old: tuple[float, bool]) -> bool:
    return new[0] > old[0] or (new[0] == old[0] and new[1])


def _tighter_high(new: tuple[float, bool], old: tuple[float, bool]) -> bool:
    return new[0] < old[0] or (new[0] == old[0] and new[1])
