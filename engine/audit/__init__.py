"""Audit: what auditors do with a decision log years later.

In: an event log and the decision log (or store) it produced, or a live service's store (which
keeps its events). Out: whether a replay gives the
same records (replay.py: the first divergence, line and field), why a record was made
(explain.py: rule, version, the values that satisfied the condition, corrections, evidence),
and what changes under another rule-set configuration (whatif.py). The hash chain itself and
its verifier are part of the outputs (engine/output/chain.py).
"""

from engine.audit.explain import NotFound, explain, explain_text
from engine.audit.replay import Divergence, first_divergence, replay_kept, replay_records
from engine.audit.whatif import SpecError, compare, diff_text, parse_spec

__all__ = ["Divergence", "NotFound", "SpecError", "compare", "diff_text", "explain", "explain_text", "first_divergence",
           "parse_spec", "replay_kept", "replay_records"]
