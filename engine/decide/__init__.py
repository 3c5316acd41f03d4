"""Stage 5, deciding: findings and registrations become rectification decisions.

In: the findings of each event, the event itself, the registry. Out: `Decision`s: which list
an enterprise goes on, which route, by when, on what basis; escalations when deadlines pass
in event time; watches on parcels of land (deadlines from the event's data) and decisions per
parcel held; the yearly mu-average ranking at `evaluation.closed`. Decision rules are data
(rules.py; the programme's policy in policy/). The layer (layer.py) keeps the state and
makes the records; correlations are detected by a `Detector`: plain Python, or durable_rules
through its adapter (rete.py, rete_detector.py). The mu-average evaluation is evaluation.py.
"""

from engine.decide.evaluation import Evaluation, Method, MethodError, load_method, ranking_json, ranking_text
from engine.decide.layer import DecisionLayer, Detector, Entry, Order, PlainDetector
from engine.decide.rules import ROUTE_DEADLINES, DecisionRule, InactiveDecision, compile_decisions, programme_parameters

__all__ = [
    "ROUTE_DEADLINES",
    "DecisionLayer",
    "DecisionRule",
    "Detector",
    "Entry",
    "Evaluation",
    "InactiveDecision",
    "Method",
    "MethodError",
    "Order",
    "PlainDetector",
    "compile_decisions",
    "load_method",
    "programme_parameters",
    "ranking_json",
    "ranking_text",
]
