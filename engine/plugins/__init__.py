"""The plugin API: the one place plugin authors import from (like `conda.plugins`).

A plugin is registered under the entry-point group `rectify.plugins` and implements the hooks
of `engine.plugins.hookspecs` (each documented there), returning the typed records of
`engine.plugins.types`. Most industry plugins need no hook code at all: `IndustryPlugin`
answers every hook from a few facts (engine/plugins/industry.py). The manager
(engine/plugins/manager.py) loads plugins once at start-up, checks and sorts what they give.
"""

from engine.plugins.hookspecs import hookimpl, hookspec
from engine.plugins.industry import IndustryPlugin
from engine.plugins.manager import (
    AUTOLOAD_ENV,
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    PluginConflict,
    PluginFailure,
    PluginSet,
    load_plugins,
)
from engine.plugins.types import EventSchema, Metric, PluginInfo, RulePackSource

__all__ = [
    "AUTOLOAD_ENV",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "EventSchema",
    "IndustryPlugin",
    "Metric",
    "PluginConflict",
    "PluginFailure",
    "PluginInfo",
    "PluginSet",
    "RulePackSource",
    "hookimpl",
    "hookspec",
    "load_plugins",
]
