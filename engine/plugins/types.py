"""What a plugin hands the engine: typed, frozen records, never loose dicts.

Every hook in `engine.plugins.hookspecs` returns these. The plugin manager checks them (names,
duplicates naming both plugins) and sorts them, so nothing depends on install order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """Who a plugin is: its name (unique), version and the vocabulary it adds.

    `industries` and `processes` widen the core vocabulary (schemas/vocabulary.schema.json),
    so that a new industry's enterprises and stacks validate.
    """

    name: str
    version: str
    title: str
    industries: tuple[str, ...] = ()
    processes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RulePackSource:
    """One YAML rule pack: its text and where it came from (for error messages)."""

    plugin: str
    origin: str
    text: str

    @classmethod
    def from_package(cls, plugin: str, package: str, filename: str) -> RulePackSource:
        """Read a rule pack shipped as package data (works from a wheel or a zip)."""
        text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
        return cls(plugin=plugin, origin=f"{package}/{filename}", text=text)


@dataclass(frozen=True, slots=True)
class EventSchema:
    """A JSON Schema (2020-12) for the `data` of one event type.

    For a core type it narrows the core schema (the engine combines them with allOf);
    for a type the plugin introduces it is the whole data schema.
    """

    plugin: str
    type: str
    schema: Mapping[str, Any]

    @classmethod
    def from_package(cls, plugin: str, type: str, package: str, filename: str) -> EventSchema:
        """Read a schema shipped as package data."""
        import json

        text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
        return cls(plugin=plugin, type=type, schema=json.loads(text))


@dataclass(frozen=True, slots=True)
class Metric:
    """A derived value a rule pack cannot say in its expression language.

    Rules read it as `metric.<name>`; `compute` receives the event's `data` and returns a
    number, or None when the data do not allow it (a zero denominator, a missing field).
    It must be a pure function of `data`: no clock, no I/O.
    """

    plugin: str
    name: str
    event_type: str
    compute: Callable[[Mapping[str, Any]], float | None] = field(compare=False)
    description: str = ""
