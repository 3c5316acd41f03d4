"""Stage 4, judging: rules decide whether a reading or a fact breaks a limit.

In: a `Reading` (or a fact event) and the enterprise's registration. Out: `Finding`s with the
measured and judged values, the limit, the corrections applied, the evidence and the legal
basis. Rule packs are YAML data (rulepacks.py) with conditions in a small safe language
(expressions.py), looked up by an index (index.py) and applied by the judge (judge.py), whose
threshold arithmetic and the batch path's gates live in thresholds.py.
"""

from engine.judge.expressions import ExpressionError, compile_expression
from engine.judge.index import RuleIndex
from engine.judge.judge import JUDGE, UNAVAILABLE, WINDOW, Judge, MetricView, applicable, route
from engine.judge.rulepacks import (
    READING_TYPES,
    InactiveRule,
    ParameterError,
    Rule,
    RulePack,
    RulePackError,
    cached_by_parameters,
    compile_rules,
    fingerprint,
    parameter_problem,
    parameters_from_key,
    parameters_key,
    parse_pack,
)
from engine.judge.thresholds import Gate, build_gate, corrected, exceeds

__all__ = [
    "JUDGE",
    "READING_TYPES",
    "UNAVAILABLE",
    "WINDOW",
    "ExpressionError",
    "Gate",
    "InactiveRule",
    "Judge",
    "MetricView",
    "ParameterError",
    "Rule",
    "RuleIndex",
    "RulePack",
    "RulePackError",
    "applicable",
    "build_gate",
    "compile_expression",
    "compile_rules",
    "corrected",
    "cached_by_parameters",
    "exceeds",
    "fingerprint",
    "parameter_problem",
    "parameters_from_key",
    "parameters_key",
    "parse_pack",
    "route",
]
