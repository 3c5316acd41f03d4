"""rectify: a rule-based compliance engine for a city's manufacturing upgrade programme.

Embed it as a library:

    from engine import Engine, JsonlFiles
    engine = Engine()                       # the installed industry plugins
    for record in engine.run_batch(JsonlFiles(["events.jsonl"])):   # or engine.run(lines): same records
        print(record.to_dict())

The public API is what this module exports (and the plugin API, `engine.plugins`);
everything else is internal. The packages, in the order data flows:

    ingest/ ─► validate/ ─► normalise/ ─► judge/ ─► decide/     the stages
    pipeline.py (the Engine composes them) ◄─ fast/ (the batch path, below it)
    output/ ─► run.py (the one run driver) ─► audit/, report/, distributed.py ─► cli/
"""

from engine.judge import ExpressionError, RulePackError
from engine.ingest import JsonlFiles, read_jsonl
from engine.pipeline import Engine, Prepared
from engine.plugins import (
    EventSchema,
    IndustryPlugin,
    Metric,
    PluginConflict,
    PluginFailure,
    PluginInfo,
    PluginSet,
    RulePackSource,
    hookimpl,
    load_plugins,
)
from engine.records import Decision, Finding, InputLine, InvalidEvent, Quarantined, Record, RunSummary
from engine.run import Outputs, Run
from engine.validate import is_uscc, make_uscc, uscc_problem
from engine.version import __version__

__all__ = [
    "Decision",
    "Engine",
    "EventSchema",
    "ExpressionError",
    "Finding",
    "IndustryPlugin",
    "InputLine",
    "InvalidEvent",
    "JsonlFiles",
    "Metric",
    "Outputs",
    "PluginConflict",
    "PluginFailure",
    "PluginInfo",
    "PluginSet",
    "Prepared",
    "Quarantined",
    "Record",
    "RulePackError",
    "RulePackSource",
    "Run",
    "RunSummary",
    "__version__",
    "hookimpl",
    "is_uscc",
    "load_plugins",
    "make_uscc",
    "read_jsonl",
    "uscc_problem",
]
