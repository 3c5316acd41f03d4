"""The batch path: replays and bulk ingestion, the same records as the per-event path, faster.

In: chunks of input lines (files read in blocks). Out: what `Engine.run` yields. Quiet
readings (valid, new, inside every limit, no deadline crossed) are validated by column
(shapes.py, compiled from the same composed schemas), gated by cuts built from the judge's
threshold arithmetic (engine/judge/thresholds.py) and committed in bulk (lane.py); every other
line takes the engine's per-event stages in input order. batch.py drives chunks through the
lane; workers.py sorts chunks in forked processes (`--jobs`). The lane sees the engine only
through the narrow `Host` interface, so this package sits below engine/pipeline.py.
"""

from engine.fast.batch import batches, chunks_of
from engine.fast.lane import CHUNK_LINES, UNPARSED, FastLane, Host, Sorting, parse_lines
from engine.fast.workers import HelperFailed, can_share

__all__ = ["CHUNK_LINES", "UNPARSED", "FastLane", "HelperFailed", "Host", "Sorting", "batches", "can_share", "chunks_of", "parse_lines"]
