"""The plugin manager: collects plugins once at start-up, checks and sorts what they give.

Built-in industries and third-party ones load the same way, through the entry-point group
`rectify.plugins`. A plugin can be blocked by name (`disable=` or the environment variable
RECTIFY_DISABLE_PLUGINS, comma-separated); RECTIFY_PLUGINS_AUTOLOAD=0 loads no entry
points at all (then only plugins passed in explicitly). A plugin that fails to load is
reported by name with its cause and skipped; conflicts (two plugins with one name, one rule
id or one metric) are errors naming both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from engine.plugins import hookspecs
from engine.plugins.types import EventSchema, Metric, PluginInfo, RulePackSource

ENTRY_POINT_GROUP = "rectify.plugins"
DISABLE_ENV = "RECTIFY_DISABLE_PLUGINS"
AUTOLOAD_ENV = "RECTIFY_PLUGINS_AUTOLOAD"


class PluginConflict(RuntimeError):
    """Two plugins claim the same name, rule id, metric or event type."""


@dataclass(frozen=True, slots=True)
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    cause: str


@dataclass(frozen=True, slots=True)
class PluginSet:
    """Everything the loaded plugins contribute, sorted, checked, ready to compile."""

    infos: tuple[PluginInfo, ...]
    rule_packs: tuple[RulePackSource, ...]
    event_schemas: tuple[EventSchema, ...]
    metrics: tuple[Metric, ...]
    failures: tuple[PluginFailure, ...]
    blocked: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(info.name for info in self.infos)


def disabled_from_environment() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def _call(function: Callable[[], Any], plugin: str, hook: str) -> Any:
    try:
        return function()
    except Exception as exc:  # a plugin's bug is reported with its name, not as ours
        raise _HookFailed(plugin, f"{hook} raised {type(exc).__name__}: {exc}") from exc


class _HookFailed(Exception):
    def __init__(self, plugin: str, cause: str) -> None:
        super().__init__(cause)
        self.plugin = plugin
        self.cause = cause


def load_plugins(*, disable: Iterable[str] = (), extra: Iterable[tuple[str, object]] = (), autoload: bool | None = None) -> PluginSet:
    """Load plugins once: entry points (unless autoload is off) plus `extra` (name, module) pairs."""
    blocked = set(disable) | disabled_from_environment()
    if autoload is None:
        autoload = os.environ.get(AUTOLOAD_ENV, "1") not in ("0", "false", "no")
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    skipped: list[str] = []
    candidates: list[tuple[str, str, Callable[[], object]]] = []
    if autoload:
        seen: dict[str, str] = {}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
            origin = f"{ep.dist.name if ep.dist else '?'}:{ep.value}"
            if ep.name in seen and seen[ep.name] != origin:
                raise PluginConflict(f"plugin name {ep.name!r} is provided twice: by {seen[ep.name]} and by {origin}")
            if ep.name in seen:
                continue
            seen[ep.name] = origin
            candidates.append((ep.name, origin, ep.load))
    for name, module in sorted(extra, key=lambda pair: pair[0]):
        clash = next((origin for existing, origin, _ in candidates if existing == name), None)
        if clash is not None:
            raise PluginConflict(f"plugin name {name!r} is provided twice: by {clash} and explicitly")
        candidates.append((name, "explicit", lambda module=module: module))
    for name, origin, load in sorted(candidates, key=lambda c: c[0]):
        if name in blocked:
            skipped.append(name)
            continue
        try:
            module = load()
        except Exception as exc:
            failures.append(PluginFailure(name, f"import of {origin} failed: {type(exc).__name__}: {exc}"))
            continue
        try:
            manager.register(module, name=name)
        except Exception as exc:
            failures.append(PluginFailure(name, f"registration failed: {type(exc).__name__}: {exc}"))
    manager.check_pending()

    infos: dict[str, PluginInfo] = {}
    for impl in manager.hook.rectify_plugin_info.get_hookimpls():
        try:
            info = _call(impl.function, impl.plugin_name, "rectify_plugin_info")
        except _HookFailed as exc:
            failures.append(PluginFailure(exc.plugin, exc.cause))
            manager.unregister(name=impl.plugin_name)
            continue
        if not isinstance(info, PluginInfo) or info.name != impl.plugin_name:
            failures.append(PluginFailure(impl.plugin_name, f"rectify_plugin_info must return PluginInfo(name={impl.plugin_name!r}), got {info!r}"))
            manager.unregister(name=impl.plugin_name)
            continue
        infos[info.name] = info
    for name, _plugin in sorted(manager.list_name_plugin(), key=lambda pair: pair[0]):
        if name not in infos:
            failures.append(PluginFailure(name, "does not implement rectify_plugin_info"))
            manager.unregister(name=name)

    packs: list[RulePackSource] = []
    schemas: list[EventSchema] = []
    metrics: dict[str, Metric] = {}
    for hook_name, sink in (("rectify_rule_packs", packs), ("rectify_event_schemas", schemas), ("rectify_metrics", None)):
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            if impl.plugin_name not in infos:
                continue
            try:
                results = list(_call(impl.function, impl.plugin_name, hook_name) or [])
            except _HookFailed as exc:
                failures.append(PluginFailure(exc.plugin, exc.cause))
                continue
            for item in results:
                if getattr(item, "plugin", None) != impl.plugin_name:
                    raise PluginConflict(f"plugin {impl.plugin_name!r} returned a record of plugin {getattr(item, 'plugin', None)!r} from {hook_name}")
                if isinstance(item, Metric):
                    if item.name in metrics:
                        raise PluginConflict(f"metric {item.name!r} is defined by plugin {metrics[item.name].plugin!r} and by plugin {item.plugin!r}")
                    metrics[item.name] = item
                elif sink is not None:
                    sink.append(item)
    failed = {f.name for f in failures}
    return PluginSet(
        infos=tuple(infos[n] for n in sorted(infos) if n not in failed),
        rule_packs=tuple(sorted((p for p in packs if p.plugin not in failed), key=lambda p: (p.plugin, p.origin))),
        event_schemas=tuple(sorted((s for s in schemas if s.plugin not in failed), key=lambda s: (s.type, s.plugin))),
        metrics=tuple(metrics[n] for n in sorted(metrics) if metrics[n].plugin not in failed),
        failures=tuple(sorted(failures, key=lambda f: (f.name, f.cause))),
        blocked=tuple(sorted(skipped)),
    )
