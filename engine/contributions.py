"""Deprecated import path (until 0.3): use `engine.plugins`."""

import warnings

from engine.plugins.types import EventSchema, Metric, PluginInfo, RulePackSource

warnings.warn("engine.contributions is deprecated; import EventSchema, Metric, PluginInfo and RulePackSource "
              "from engine.plugins", DeprecationWarning, stacklevel=2)

__all__ = ["EventSchema", "Metric", "PluginInfo", "RulePackSource"]
