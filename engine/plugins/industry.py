"""`IndustryPlugin`: the hooks an industry plugin implements, from a few facts about it.

Every industry pack answers the same four hooks the same way: who it is, its rule pack(s)
read from package data, the JSON Schemas narrowing event data, and derived metrics. Instead
of writing those functions, a plugin declares one object and points its entry point at it:

    # my_plugin/__init__.py
    from engine.plugins import IndustryPlugin

    plugin = IndustryPlugin(name="glass", version="0.1.0", title="Glass furnaces",
                            package=__name__, industries=("glass",), processes=("glass_furnace",))

    # pyproject.toml
    [project.entry-points."rectify.plugins"]
    glass = "my_plugin:plugin"

A plugin that needs more than this writes its own `@hookimpl` functions (engine/plugins/hookspecs.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.plugins.hookspecs import hookimpl
from engine.plugins.types import EventSchema, Metric, PluginInfo, RulePackSource


@dataclass(frozen=True, slots=True)
class IndustryPlugin:
    """An industry plugin from data: its identity, package files and metrics.

    `package` is the plugin's package (its `__name__`), where `rule_packs` (YAML files) and
    `event_schemas` ((event type, JSON Schema file) pairs) are shipped as package data.
    """

    name: str
    version: str
    title: str
    package: str
    industries: tuple[str, ...] = ()
    processes: tuple[str, ...] = ()
    rule_packs: tuple[str, ...] = ("rules.yaml",)
    event_schemas: tuple[tuple[str, str], ...] = ()
    metrics: tuple[Metric, ...] = ()

    @hookimpl
    def rectify_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version=self.version, title=self.title, industries=self.industries,
                          processes=self.processes)

    @hookimpl
    def rectify_rule_packs(self) -> list[RulePackSource]:
        return [RulePackSource.from_package(self.name, self.package, filename) for filename in self.rule_packs]

    @hookimpl
    def rectify_event_schemas(self) -> list[EventSchema]:
        return [EventSchema.from_package(self.name, event_type, self.package, filename)
                for event_type, filename in self.event_schemas]

    @hookimpl
    def rectify_metrics(self) -> list[Metric]:
        return list(self.metrics)
