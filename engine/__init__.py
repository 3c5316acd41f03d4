"""rectify: a rule-based compliance engine for a city's manufacturing upgrade programme.

Embed it as a library:

    from engine import Engine, JsonlFiles
    engine = Engine()                       # the installed industry plugins
    for record in engine.run_batch(JsonlFiles(["events.jsonl"])):   # or engine.run(lines): same records
        print(record.to_dict())

The public API is what this module exports; everything else is internal.
"""

from engine.contributions import EventSchema, Metric, PluginInfo, RulePackSource
from engine.expressions import ExpressionError
from engine.hookspecs import hookimpl
from engine.pipeline import Engine, InputLine, InvalidEvent, Record
from engine.plugins import PluginConflict, PluginFailure, PluginSet, load_plugins
from engine.records import Decision, Finding, Quarantined, RunSummary
from engine.rules import RulePackError
from engine.sources import JsonlFiles, read_jsonl
from engine.uscc import is_uscc, make_uscc, uscc_problem
from engine.version import __version__

__all__ = [
    "Decision",
    "Engine",
    "EventSchema",
    "ExpressionError",
    "Finding",
    "InputLine",
    "InvalidEvent",
    "JsonlFiles",
    "Metric",
    "PluginConflict",
    "PluginFailure",
    "PluginInfo",
    "PluginSet",
    "Quarantined",
    "Record",
    "RulePackError",
    "RulePackSource",
    "RunSummary",
    "__version__",
    "hookimpl",
    "is_uscc",
    "load_plugins",
    "make_uscc",
    "read_jsonl",
    "uscc_problem",
]
