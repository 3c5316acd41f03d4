"""Event validation: the JSON Schemas in schemas/ are the single source of truth.

Each event type gets one composed schema (envelope + core data schema + vocabulary
narrowed to the loaded plugins + the plugins' own narrowing schemas). The hot path runs a
compiled form of exactly that schema (jsonschema-rs, Rust); jsonschema, the reference, runs
only on events the compiled form rejects, to produce the error message with its field
path. tests/test_validation.py proves the two agree.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from importlib import resources
from typing import Any

import jsonschema
import jsonschema_rs

from engine.contributions import EventSchema, PluginInfo
from engine.uscc import uscc_problem

SCHEMA_PACKAGE = "schemas"
VOCABULARY_ID = "urn:rectify:schema:vocabulary"
CORE_TYPES = (
    "enterprise.registered",
    "equipment.declared",
    "emission.measured",
    "discharge.measured",
    "energy.reported",
    "finance.reported",
    "inspection.recorded",
    "rectification.verified",
    "evaluation.closed",
)

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_date_time(value: object) -> bool:
    """RFC 3339 date-time with an explicit offset; raises ValueError saying why not."""
    if not isinstance(value, str):
        return True  # format applies to strings only; `type` catches the rest
    return _check_date_time(value)


@functools.lru_cache(maxsize=1 << 16)
def _check_date_time(value: str) -> bool:
    """Cached: a city's monitoring data share a handful of timestamps per hour."""
    if not _RFC3339.match(value):
        raise ValueError("is not an RFC 3339 date-time with offset, e.g. 2024-03-01T10:00:00+08:00")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"is not a real date-time ({exc})") from None
    return True


def check_date(value: object) -> bool:
    """A calendar date YYYY-MM-DD; raises ValueError saying why not."""
    if not isinstance(value, str):
        return True
    if not _DATE.match(value):
        raise ValueError("is not a date YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"is not a real date ({exc})") from None
    return True


def check_uscc(value: object) -> bool:
    """A unified social credit code with a correct check character (GB 32100)."""
    if not isinstance(value, str):
        return True
    problem = uscc_problem(value)
    if problem:
        raise ValueError(problem)
    return True


FORMATS: dict[str, Callable[[object], bool]] = {
    "date-time": check_date_time,
    "date": check_date,
    "uscc": check_uscc,
}


def _bool_format(check: Callable[[object], bool]) -> Callable[[object], bool]:
    def wrapped(value: object) -> bool:
        try:
            return check(value)
        except ValueError:
            return False

    return wrapped


def load_core_schema(name: str) -> dict[str, Any]:
    """Read a schema file shipped in the `schemas` package (e.g. 'envelope.schema.json')."""
    text = resources.files(SCHEMA_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=None)
def core_validator(name: str) -> jsonschema.Draft202012Validator:
    """A cached reference validator for a schema file shipped in `schemas` (rule packs, methods)."""
    return jsonschema.Draft202012Validator(load_core_schema(name))


def _inline_vocabulary(node: Any, vocabulary: Mapping[str, Any]) -> Any:
    """Replace $refs into the vocabulary by the definitions, so one schema is self-contained."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(VOCABULARY_ID + "#/$defs/"):
            name = ref.rsplit("/", 1)[1]
            merged = copy.deepcopy(vocabulary[name])
            for key, value in node.items():
                if key != "$ref":
                    merged[key] = _inline_vocabulary(value, vocabulary)
            return merged
        return {key: _inline_vocabulary(value, vocabulary) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_vocabulary(item, vocabulary) for item in node]
    return node


def _strip_ids(node: Any) -> Any:
    """Drop nested $id/$schema so a composed schema is one resource."""
    if isinstance(node, dict):
        return {k: _strip_ids(v) for k, v in node.items() if k not in ("$id", "$schema")}
    if isinstance(node, list):
        return [_strip_ids(item) for item in node]
    return node


def first_non_finite(value: Any, path: str = "data") -> str | None:
    """The path of the first NaN or infinite number in `value`, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = first_non_finite(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = first_non_finite(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _path(error: jsonschema.ValidationError) -> str:
    parts: list[str] = []
    for part in error.absolute_path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(event)"


def describe(error: jsonschema.ValidationError) -> str:
    """'field.path: what is wrong' for one jsonschema error."""
    if error.validator == "format":
        cause = f": {error.cause}" if error.cause else ""
        return f"{_path(error)}: {error.instance!r} is not a valid {error.validator_value}{cause}"
    if error.validator == "required":
        return f"{_path(error)}: {error.message}"
    if error.validator == "additionalProperties":
        return f"{_path(error)}: {error.message}"
    if error.validator == "enum":
        return f"{_path(error)}: {error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    return f"{_path(error)}: {error.message}"


class EventValidator:
    """Validates whole events (envelope + data) per type; built once at engine start-up."""

    def __init__(self, plugins: Iterable[PluginInfo], schemas: Iterable[EventSchema]) -> None:
        vocabulary = load_core_schema("vocabulary.schema.json")["$defs"]
        plugins = list(plugins)
        industries = sorted(set(vocabulary["core_industries"]["enum"]).union(*(p.industries for p in plugins)))
        processes = sorted(set(vocabulary["core_air_processes"]["enum"]).union(*(p.processes for p in plugins)))
        self.industries: tuple[str, ...] = tuple(industries)
        self.processes: tuple[str, ...] = tuple(processes)
        narrowing: dict[str, list[Mapping[str, Any]]] = {
            "enterprise.registered": [{"properties": {"industry": {"enum": industries}}}],
            "emission.measured": [{"properties": {"process": {"enum": processes}}}],
        }
        data_schemas: dict[str, list[Mapping[str, Any]]] = {}
        for event_type in CORE_TYPES:
            data_schemas[event_type] = [load_core_schema(f"events/{event_type}.schema.json")]
            data_schemas[event_type].extend(narrowing.get(event_type, []))
        owners: dict[str, str] = {}
        for contribution in sorted(schemas, key=lambda s: (s.type, s.plugin)):
            if contribution.type not in CORE_TYPES:
                if contribution.type in owners and owners[contribution.type] != contribution.plugin:
                    raise ValueError(
                        f"event type {contribution.type!r} is defined by two plugins: "
                        f"{owners[contribution.type]!r} and {contribution.plugin!r}"
                    )
                owners[contribution.type] = contribution.plugin
            data_schemas.setdefault(contribution.type, []).append(contribution.schema)
        envelope = _strip_ids(load_core_schema("envelope.schema.json"))
        self.schemas: dict[str, dict[str, Any]] = {}
        for event_type in sorted(data_schemas):
            parts = [_strip_ids(_inline_vocabulary(part, vocabulary)) for part in data_schemas[event_type]]
            data = parts[0] if len(parts) == 1 else {"allOf": parts}
            self.schemas[event_type] = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "allOf": [envelope, {"properties": {"data": data}}],
            }
        self.envelope_schema: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema", **envelope}
        checker = jsonschema.FormatChecker(formats=())
        for name, function in FORMATS.items():
            checker.checks(name, raises=ValueError)(function)
        self._checker = checker
        fast_formats = {name: _bool_format(function) for name, function in FORMATS.items()}

        def compiled(schema: Mapping[str, Any]) -> Any:
            return jsonschema_rs.Draft202012Validator(schema, formats=fast_formats, validate_formats=True)

        self._compiled = compiled
        self._fast: dict[str, Any] = {t: compiled(s) for t, s in self.schemas.items()}
        self._fast_envelope = compiled(self.envelope_schema)
        self._reference: dict[str, jsonschema.protocols.Validator] = {}

    def known(self, event_type: str) -> bool:
        return event_type in self.schemas

    def reference_validator(self, event_type: str | None) -> jsonschema.protocols.Validator:
        """The jsonschema validator for a type (None: the envelope alone)."""
        key = event_type if event_type in self.schemas else ""
        validator = self._reference.get(key)
        if validator is None:
            schema = self.schemas[key] if key else self.envelope_schema
            validator = jsonschema.Draft202012Validator(schema, format_checker=self._checker)
            self._reference[key] = validator
        return validator

    def fast_is_valid(self, event: Any) -> bool:
        """The compiled check alone (the hot path)."""
        event_type = event.get("type") if isinstance(event, dict) else None
        compiled = self._fast.get(event_type, self._fast_envelope) if isinstance(event_type, str) else self._fast_envelope
        try:
            return bool(compiled.is_valid(event))
        except (ValueError, OverflowError):  # a value the Rust side cannot represent (e.g. a huge integer)
            return False

    def compile_leaf(self, schema: Mapping[str, Any]) -> Callable[[Any], bool]:
        """A predicate for one value against part of a composed schema (engine/shapes.py), compiled
        the way whole events are: jsonschema-rs with the same format checkers."""
        validator = self._compiled(dict(schema))

        def accepts(value: Any) -> bool:
            try:
                return bool(validator.is_valid(value))
            except (ValueError, OverflowError):
                return False

        return accepts

    def reference_problem(self, event: Any) -> str | None:
        """What jsonschema finds wrong with an event, or None."""
        event_type = event.get("type") if isinstance(event, dict) else None
        validator = self.reference_validator(event_type if isinstance(event_type, str) else None)
        error = jsonschema.exceptions.best_match(validator.iter_errors(event))
        return None if error is None else describe(error)

    def problem(self, event: Any, from_json: bool = False) -> str | None:
        """Why an event is invalid ('field.path: reason'), or None when it is valid.

        `from_json`: the event was parsed from JSON text by orjson, which refuses NaN and
        infinities itself, so the finiteness walk is skipped.
        """
        if not isinstance(event, dict):
            return f"(event): expected a JSON object, got {type(event).__name__}"
        valid = self.fast_is_valid(event)
        found = None if from_json else first_non_finite(event.get("data"))
        if found:  # NaN is a number to JSON Schema but not data; the Rust validator cannot even read it
            return f"{found}: numbers must be finite (NaN and infinity are not data)"
        if valid:
            return None
        problem = self.reference_problem(event)
        if problem is None:  # the two validators disagree: a bug, never silently accept
            raise AssertionError(f"compiled schema rejects an event jsonschema accepts: {event!r}")
        return problem
