"""Stage 6, outputs: records out, tamper-evident.

In: findings, decisions and quarantine records. Out: JSON lines (jsonl.py), hash-chained so
edits, removals and reorderings are detected (chain.py, with the verifier), or a SQLite store
with checkpoints for crash-safe runs and queries (store.py).
"""

from engine.output.chain import GENESIS, ChainedWriter, Verdict, canonical, record_hash, unchained, verify_file, verify_lines
from engine.output.jsonl import JsonlSink, ListSink, dumps
from engine.output.store import DamagedStore, Store, StoreError, binary_problem, damaged, is_store, log_lines

__all__ = [
    "GENESIS",
    "ChainedWriter",
    "DamagedStore",
    "JsonlSink",
    "ListSink",
    "Store",
    "StoreError",
    "Verdict",
    "binary_problem",
    "canonical",
    "damaged",
    "dumps",
    "is_store",
    "log_lines",
    "record_hash",
    "unchained",
    "verify_file",
    "verify_lines",
]
