"""Distributed replay on Dask: the single machine's output, byte for byte, with no per-line work
on the driver (docs/distributed.md).

Every worker holds one `Node` (a Dask actor, node.py) that plays three parts:

- **reader**: it reads its own blocks of input (blocks.py: byte ranges of JSONL files, row ranges
  of a Parquet archive; lines handed to the Python API are shipped by the driver) and runs the
  engine's stateless stages on them: parse, validate, normalise, digest, the fast lane's gates;
- **id shard**: the ids that hash to it (`shards_of`, a polynomial hash), so an id reused by another enterprise is
  still caught: it names the lines that may repeat an id, and later replays the
  de-duplication index in input order;
- **owner**: the `Engine` of the enterprises that hash to it (crc32 of `subject`), fed their
  lines in input order by every reader: quiet readings in bulk, the rest one by one.

A chunk (one block per worker) goes through rounds ordered by the driver (driver.py):

1. read: readers sort their blocks (each in a thread of its own, one chunk ahead: the next
   chunk is read while this one runs); each valid line's (id, digest, time) goes to its shard;
2. ids: shards name the lines that may repeat an id (remembered, or earlier in the chunk);
   every other line is new whatever the clock does (the index only forgets);
3. clock: the event-time clock (engine/normalise/clock.py) is a fold over the new events in
   input order. Each reader summarises its block (latest time, latest "jump"); the driver
   composes the summaries in block order, a parallel prefix maximum, and asks a reader to fold
   its block exactly only where the guard may act (the start, or an event more than the lead
   ahead). Readers then know the clock after every line: which lines are held, which lie beyond
   the de-duplication horizon, and where the index reaches a new purge step;
4. verdicts: shards replay the index told only those steps (engine/normalise/dedupe.py purges
   in steps, so that is exact). A repeated id that turns out forgotten and ahead of the clock
   would have moved it: the driver includes it and redoes step 3 (rare; checked line by line);
5. apply: readers send every line to its owner with the clock's time after it; owners apply
   them, the segments between `evaluation.closed` barriers at a time. A deadline that the clock
   passes through another enterprise's event escalates at the owner's next line (its content
   does not depend on where), and the driver asks the readers for the line where the clock
   passed it, which is where one machine writes it.

The driver handles the per-block summaries, the barriers (the mu-average ranking with its one
`Evaluation`, then the owners `absorb` the decisions about their enterprises), and the records:
it sorts them by (line, phase, key) and the sink chains them (engine/run.py `Outputs`).

Nodes send each other data directly; the driver never touches a line of a file.
"""

from engine.distributed.blocks import Block, partition_of, shard_of
from engine.distributed.driver import (
    BLOCK_BYTES,
    CHUNK,
    ClusterMismatch,
    DistributedRun,
    SchedulerUnreachable,
    WorkerLost,
    run_distributed,
)
from engine.distributed.node import Node

__all__ = [
    "BLOCK_BYTES",
    "CHUNK",
    "Block",
    "ClusterMismatch",
    "DistributedRun",
    "Node",
    "SchedulerUnreachable",
    "WorkerLost",
    "partition_of",
    "run_distributed",
    "shard_of",
]
