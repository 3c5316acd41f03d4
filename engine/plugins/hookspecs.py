"""The hooks a rectify plugin implements. Every hook is called once, at engine start-up.

Hooks never sit on the per-event path: the engine collects what they return, checks it,
sorts it and compiles it before the first event. A plugin is a module (or object) with
functions marked `@hookimpl`, registered under the entry-point group `rectify.plugins`.
"""

from __future__ import annotations

import pluggy

from engine.plugins.types import EventSchema, Metric, PluginInfo, RulePackSource

PROJECT = "rectify"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def rectify_plugin_info() -> PluginInfo:  # type: ignore[empty-body]
    """Return the plugin's identity and the vocabulary (industries, processes) it adds.

    Called once per plugin at start-up; required. The name must be unique among loaded
    plugins and must equal the `pack` of every rule pack the plugin ships.

    Since 0.1.
    """


@hookspec
def rectify_rule_packs() -> list[RulePackSource]:  # type: ignore[empty-body]
    """Return the plugin's rule packs (YAML text), validated against schemas/rulepack.schema.json.

    Called once at start-up. Rule ids must be unique across all plugins; a duplicate is an
    error that names both plugins.

    Since 0.1.
    """


@hookspec
def rectify_event_schemas() -> list[EventSchema]:  # type: ignore[empty-body]
    """Return JSON Schemas for the plugin's event attributes or its own event types.

    Called once at start-up. A schema for a core type narrows it (combined with allOf);
    a schema for a new type defines that type. Two plugins may not define the same new type.

    Since 0.1.
    """


@hookspec
def rectify_metrics() -> list[Metric]:  # type: ignore[empty-body]
    """Return derived metrics that rules read as `metric.<name>`.

    Called once at start-up. Names are unique across plugins. Only for what the
    expression language cannot say; a metric must be a pure function of the event data.

    Since 0.1.
    """
