"""Deprecated import path (until 0.3): use `engine.plugins` (hookimpl) or `engine.plugins.hookspecs`."""

import warnings

from engine.plugins.hookspecs import PROJECT, hookimpl, hookspec, rectify_event_schemas, rectify_metrics, \
    rectify_plugin_info, rectify_rule_packs

warnings.warn("engine.hookspecs is deprecated; import hookimpl from engine.plugins", DeprecationWarning, stacklevel=2)

__all__ = ["PROJECT", "hookimpl", "hookspec", "rectify_event_schemas", "rectify_metrics", "rectify_plugin_info",
           "rectify_rule_packs"]
