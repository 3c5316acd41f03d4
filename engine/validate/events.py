"""Event validation: the JSON Schemas in schemas/ are the single source of truth.

Each event type gets one composed schema (envelope + core data schema + vocabulary
narrowed to the loaded plugins + the plugins' own narrowing schemas). The hot path runs a
compiled form of exactly that schema (jsonschema-rs, Rust); jsonschema, the reference, runs
only on events the compiled form rejects, to produce the error message with its field
path. tests/test_validation_agreement.py proves the two agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jsonschema
import jsonschema_rs

from engine.plugins import EventSchema, PluginInfo
from engine.validate.formats import FAST_FORMATS, FORMATS
from engine.validate.schemas import (
    MAX_MESSAGE,
    describe,
    ecma_anchors,
    first_unrepresentable,
    inline_vocabulary,
    load_core_schema,
    strip_ids,
)

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
    "approval.recorded",
    "land.parcel.registered",
    "land.parcel.inspected",
    "land.parcel.recovered",
    "land.parcel.transferred",
)


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
        envelope = strip_ids(load_core_schema("envelope.schema.json"))
        self.schemas: dict[str, dict[str, Any]] = {}
        for event_type in sorted(data_schemas):
            parts = [strip_ids(inline_vocabulary(part, vocabulary)) for part in data_schemas[event_type]]
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

        def compiled(schema: Mapping[str, Any]) -> Any:
            return jsonschema_rs.Draft202012Validator(schema, formats=FAST_FORMATS, validate_formats=True)

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
            validator = jsonschema.Draft202012Validator(ecma_anchors(schema), format_checker=self._checker)
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
        infinities itself and reads no integer it cannot hold, so the walk for such numbers is skipped.
        """
        if not isinstance(event, dict):
            return f"(event): expected a JSON object, got {type(event).__name__}"
        valid = self.fast_is_valid(event)
        # NaN is a number to JSON Schema but not data, and neither it nor a 100-digit integer can
        # be read by the Rust validator or written by orjson; outside `data` the schemas take no
        # number, so there one matters only to the reference's message (jsonschema writes it out)
        found = None if from_json else first_unrepresentable(event.get("data"), "data")
        if not found and not valid and not from_json:
            found = first_unrepresentable(event)
        if found:
            return found
        if valid:
            return None
        problem = self.reference_problem(event)
        if problem is None:  # the two validators disagree (a bug: tests/test_validation_agreement.py)
            problem = self._compiled_problem(event)
        return problem

    def _compiled_problem(self, event: dict[str, Any]) -> str:
        """The compiled validator's reason, for an event only it refuses: refused, never accepted."""
        event_type = event.get("type")
        compiled = self._fast.get(event_type, self._fast_envelope) if isinstance(event_type, str) else self._fast_envelope
        try:
            error = next(iter(compiled.iter_errors(event)), None)
        except (ValueError, OverflowError):
            error = None
        if error is None:
            return "(event): refused by the compiled schema, which cannot say where (please report this event)"
        path = ".".join(str(part) for part in error.instance_path) or "(event)"
        return f"{path}: {error.message[:MAX_MESSAGE]} (the compiled schema; please report this event)"
