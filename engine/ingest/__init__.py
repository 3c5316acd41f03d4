"""Stage 1, sources: where input comes from.

In: JSONL files or standard input (engine/ingest/jsonl.py), HJ 212 packets from files or data
loggers (engine/ingest/hj212/). Out: `InputLine`s (source, line number, raw bytes) and event
dicts, each tagged with where it came from so a bad one can be quarantined with its place.
Nothing here judges an event: validation is the next stage.
"""

from engine.ingest.jsonl import (
                                 JsonlFiles,
                                 count_lines,
                                 json_problem,
                                 may_repeat_keys,
                                 opened,
                                 overlong_parts,
                                 read_jsonl,
                                 repeated_key,
)

__all__ = ["JsonlFiles", "count_lines", "json_problem", "may_repeat_keys", "opened", "overlong_parts", "read_jsonl", "repeated_key"]
