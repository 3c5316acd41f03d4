"""Blocks of input, and what a reader learns of one (engine/distributed/).

In: the inputs of a run (JSONL paths, archive directories, or lines handed over). Out: `Block`s
in input order, each a few megabytes (a byte range of a file, a range of an archive's rows, or
lines the driver ships), and, on the worker that reads a block, its `Columns`: per line, what
the engine's stateless stages say of it (valid or not, event time, id, content digest, subject,
whether the fast lane may commit it in bulk) and who owns it. Nothing here keeps state between
blocks, so any worker can read any block.

A block's lines are numbered from 0; the line `local` of block `k` is at position
`key = k << 32 | local` of the whole input, so keys sort in input order.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from engine.fast import FastLane, parse_lines
from engine.fast.columns import ColumnLane
from engine.fast.lane import EXACT, UNPARSED
from engine.ingest import read_jsonl
from engine.ingest.archive import (
    Archive,
    ArchiveError,
    is_archive,
    line_of,
    python_values,
    rows_of,
)
from engine.ingest.jsonl import byte_ranges, read_range
from engine.normalise import DIGEST
from engine.pipeline import Engine
from engine.records import InputLine, InvalidEvent

SHIFT = 32  # key = block << SHIFT | line
BARRIER_TYPES = frozenset({"evaluation.closed"})
BATCH = 512  # lines parsed and sorted at a time (the fast lane's shape plans were measured faster on small batches)


def partition_of(subject: str, partitions: int) -> int:
    """The partition of an enterprise: crc32 of its code, stable across processes and runs."""
    return zlib.crc32(subject.encode("utf-8", "surrogatepass")) % partitions


_BASE = np.uint64(0x100000001B3)  # the polynomial of `shards_of` (the 64-bit FNV prime)
_MIX = np.uint64(0xFF51AFD7ED558CCD)


def shards_of(ids: Sequence[str], partitions: int) -> np.ndarray:
    """The de-duplication shard of each event id: a polynomial hash of its UTF-8 bytes
    (sum of byte * BASE**position, modulo 2**64, then mixed), in numpy: the same in every process,
    platform and version (never Python's `hash()`), and a few numpy passes for a whole block."""
    if partitions == 1 or not len(ids):
        return np.zeros(len(ids), dtype=np.int64)
    array = pa.array(ids, type=pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]] if offsets[-1] > offsets[0] \
        else np.empty(0, dtype=np.uint8)
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    powers = np.cumprod(np.full(int(lengths.max()) if len(lengths) else 0, _BASE, dtype=np.uint64)) // _BASE
    powers[:1] = 1
    position = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
    terms = data.astype(np.uint64) * powers[position]
    hashed = np.zeros(len(ids), dtype=np.uint64)
    filled = lengths > 0
    if len(terms):
        hashed[filled] = np.add.reduceat(terms, starts[filled])
    hashed ^= hashed >> np.uint64(33)
    hashed *= _MIX
    hashed ^= hashed >> np.uint64(33)
    return (hashed % np.uint64(partitions)).astype(np.int64)


def shard_of(event_id: str, partitions: int) -> int:
    """`shards_of` for one id."""
    return int(shards_of([event_id], partitions)[0])


@dataclass(frozen=True, slots=True)
class Block:
    """A piece of input read by one worker: `kind` "range" (bytes [start, stop) of the JSONL file
    `path`), "rows" (rows [start, stop) of the archive `path`) or "lines" (`lines` shipped by the
    driver: (source, number, text) each)."""

    number: int
    kind: str
    path: str = ""
    start: int = 0
    stop: int = 0
    lines: Sequence[tuple[str, int, str | bytes]] = ()


def plan(inputs: Any, block_bytes: int, block_lines: int, block_rows: int, readers: int = 1) -> Iterator[Block]:
    """The blocks of the inputs, in order: files by byte ranges, archives by row ranges, anything
    else (lines, or standard input) as lines the driver reads and ships. A file or an archive is
    cut into blocks of equal size (at most `block_bytes` / `block_rows`), as many as a multiple
    of `readers` where the sizes allow: the driver hands each round one block per reader, so
    each reads about as much as the others (a last short block left one reader a block more)."""
    number = 0
    for kind, item in _sources(inputs):
        if kind == "file":
            for start, stop in byte_ranges(item, _even(Path(item).stat().st_size, block_bytes, readers)):
                yield Block(number, "range", str(item), start, stop)
                number += 1
        elif kind == "archive":
            rows = Archive(item).rows
            step = _even(rows, block_rows, readers)
            for start in range(0, rows, step):
                yield Block(number, "rows", str(item), start, min(start + step, rows))
                number += 1
        else:
            iterator = iter(item)
            position = 0
            while True:
                batch = list(islice(iterator, block_lines))
                if not batch:
                    break
                lines = []
                for entry in batch:
                    position += 1
                    if isinstance(entry, InputLine):
                        lines.append((entry.source, entry.number, entry.text))
                    elif isinstance(entry, (str, bytes)):
                        lines.append(("<input>", position, entry))
                    else:
                        raise TypeError("distributed runs take JSON lines (str, bytes, InputLine) or paths, not mappings")
                yield Block(number, "lines", lines=lines)
                number += 1


def _even(total: int, size: int, readers: int) -> int:
    """A block size of at most `size` that cuts `total` into equal blocks, a multiple of `readers`
    of them where whole units allow."""
    if total <= 0:
        return max(1, size)
    pieces = -(-total // max(1, size))
    pieces = -(-pieces // readers) * readers
    return max(1, -(-total // pieces))


def seen(path: str) -> dict[str, Any]:
    """What this machine sees of an input path, without reading a line or a row (the driver
    compares every worker's with its own before the run): {"bytes": size} of a file;
    {"archive": `Archive.identity()`} of an archive directory (its manifest and the sizes of
    its part files); {"missing": True} when the path does not exist; {"error": reason} when it
    cannot be opened or is not an archive this rectify reads."""
    if not os.path.exists(path):
        return {"missing": True}
    if os.path.isdir(path):
        try:
            return {"archive": Archive(path).identity()}
        except ArchiveError as exc:  # the reason without the directory (the driver names it)
            reason = str(exc)
            for prefix in (f"{Path(path)}: ", f"{Path(path)}{os.sep}"):
                reason = reason.removeprefix(prefix)
            return {"error": reason}
    try:
        with open(path, "rb"):
            return {"bytes": os.path.getsize(path)}
    except OSError as exc:
        return {"error": exc.strerror or str(exc)}


def _sources(inputs: Any) -> Iterator[tuple[str, Any]]:
    """("file", path), ("archive", directory) or ("lines", iterable), in order."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    items = list(inputs) if isinstance(inputs, (list, tuple)) else None
    if items is None or not items or not all(isinstance(i, (str, Path)) and (str(i) == "-" or os.path.exists(i))
                                             for i in items):
        yield "lines", inputs if items is None else items
        return
    for item in items:
        if str(item) == "-":
            yield "lines", read_jsonl(["-"])
        elif Path(item).is_dir() and is_archive(item):
            yield "archive", str(item)
        else:
            yield "file", str(item)


@dataclass
class Columns:
    """What the reader of a block learnt of each line, in input order (numpy columns and lists).

    `kind`: the fast lane's EXACT, QUIET or FLAGGED; `valid`: a valid event (its owner does not
    check its schema again); `epoch`, `digest`, `ids`, `subjects` of valid lines; `owner`: the partition
    that applies the line (`driver` for `evaluation.closed`); `barriers`: (line, year) of valid
    `evaluation.closed` lines with a year; where each line came from (`sources`, `source`,
    `numbers`: file line numbers, or None until the driver says where the block starts) and its
    text (`texts`) or archive row (`table`).
    """

    kind: np.ndarray
    valid: np.ndarray
    epoch: np.ndarray
    digest: np.ndarray
    ids: list[Any]
    subjects: list[Any]
    owner: np.ndarray
    barriers: list[tuple[int, int]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    source: np.ndarray | None = None
    numbers: np.ndarray | None = None
    texts: list[Any] | None = None
    table: pa.Table | None = None

    def __len__(self) -> int:
        return len(self.kind)


def read(block: Block, engine: Engine, lane: FastLane, me: int, count: int) -> Columns:
    """Read and sort a block: the engine's stateless stages only (parse, validate, normalise,
    digest, the fast lane's gates). `me` is the reading partition (it keeps the invalid lines:
    their quarantine record depends on nothing), `count` the number of partitions."""
    if block.kind == "range":
        texts: list[Any] = read_range(block.path, block.start, block.stop)
        return _sorted_lines(texts, [block.path], None, None, engine, lane, me, count)
    if block.kind == "lines":
        names: dict[str, int] = {}
        source = np.array([names.setdefault(s, len(names)) for s, _, _ in block.lines], dtype=np.int32)
        numbers = np.array([n for _, n, _ in block.lines], dtype=np.int64)
        return _sorted_lines([t for _, _, t in block.lines], list(names), source, numbers, engine, lane, me, count)
    archive = Archive(block.path)
    table = pa.concat_tables(list(archive.tables(block.start, stop=block.stop))) if block.stop > block.start \
        else None
    if table is None:
        return _sorted_lines([], [block.path], None, None, engine, lane, me, count)
    if not archive.trusted_by(engine.validation, DIGEST):  # validated another way: its lines through this engine
        rows = rows_of(table)
        names = {}
        source = np.array([names.setdefault(row["file"], len(names)) for row in rows], dtype=np.int32)
        numbers = np.array([row["line"] for row in rows], dtype=np.int64)
        return _sorted_lines([line_of(row) for row in rows], list(names), source, numbers, engine, lane, me, count)
    return _sorted_rows(table.combine_chunks(), engine, count, me)


def _sorted_lines(texts: list[Any], sources: list[str], source: np.ndarray | None, numbers: np.ndarray | None,
                  engine: Engine, lane: FastLane, me: int, count: int) -> Columns:
    n = len(texts)
    kind = np.zeros(n, dtype=np.int8)
    epoch = np.zeros(n)
    digests: list[Any] = [None] * n
    ids: list[Any] = [None] * n
    subjects: list[Any] = [None] * n
    barriers: list[tuple[int, int]] = []
    driver: list[int] = []
    for first in range(0, n, BATCH):
        raws = texts[first:first + BATCH]
        stop = first + len(raws)
        events = parse_lines(raws)
        sorting = lane.sort(events, raws)  # quiet lines: valid, with id, subject, time and digest
        kind[first:stop] = sorting.lane
        epoch[first:stop] = sorting.epochs
        ids[first:stop], subjects[first:stop], digests[first:stop] = sorting.ids, sorting.subjects, sorting.digests
        exact = [i for i, k in enumerate(sorting.lane) if k == EXACT]
        epoch[[first + i for i in exact]] = np.nan
        for offset in exact:  # the engine's own checks (the same `prepare` as on one machine)
            event = events[offset]
            if event is UNPARSED:
                continue
            i = first + offset
            try:
                prepared = engine.prepare(event, True, raws[offset], valid=bool(sorting.valid[offset]))
            except InvalidEvent:
                continue
            ids[i], subjects[i], epoch[i], digests[i] = prepared.id, event["subject"], prepared.epoch, prepared.digest
            if event["type"] in BARRIER_TYPES:
                driver.append(i)
                year = event["data"].get("year") if isinstance(event["data"], dict) else None
                if type(year) is int:
                    barriers.append((i, year))
    valid = ~np.isnan(epoch)
    digest = np.fromiter((0 if d is None else d for d in digests), dtype=np.uint64, count=n)
    owner = _owners(subjects, valid, me, count)
    owner[driver] = count  # the driver ranks the year
    if source is None:
        source = np.zeros(n, dtype=np.int32)
    return Columns(kind, valid, epoch, digest, ids, subjects, owner, barriers, sources, source, numbers, texts=texts)


def _owners(subjects: list[Any], valid: np.ndarray, me: int, count: int) -> np.ndarray:
    """The partition of each valid line's enterprise; invalid lines stay with their reader (`me`):
    their quarantine record depends on nothing."""
    found: dict[Any, int] = {}
    for subject in set(subjects):
        if type(subject) is str:
            found[subject] = partition_of(subject, count)
    owner = np.array([found.get(subject, me) for subject in subjects], dtype=np.int32)
    owner[~valid] = me
    return owner


def _sorted_rows(table: pa.Table, engine: Engine, count: int, me: int) -> Columns:
    """An archive's rows, trusted (validated by an engine with this one's fingerprint): the
    columnar lane's gates, and the columns the archive writer kept."""
    n = table.num_rows
    kind = ColumnLane(engine).sort(table).astype(np.int8)
    valid = pc.fill_null(table.column("valid"), False).to_numpy(zero_copy_only=False).astype(bool)
    epoch = pc.fill_null(table.column("epoch"), float("nan")).to_numpy(zero_copy_only=False).astype(float)
    digest = pc.fill_null(table.column("digest"), 0).to_numpy(zero_copy_only=False).astype(np.uint64)
    ids = python_values(table.column("id"))
    subjects = python_values(table.column("subject"))
    types = python_values(table.column("type"))
    owner = _owners(subjects, valid, me, count)
    barriers: list[tuple[int, int]] = []
    for i in np.flatnonzero(valid).tolist():
        if types[i] in BARRIER_TYPES:
            owner[i] = count
            year = orjson.loads(line_of(rows_of(table.slice(i, 1))[0])).get("data", {}).get("year")
            if type(year) is int:
                barriers.append((i, year))
    epoch[~valid] = np.nan
    return Columns(kind, valid, epoch, digest, ids, subjects, owner, barriers, table=table)


def numbers_from(columns: Columns, first: int) -> np.ndarray:
    """The file line numbers of a byte range's lines, once the driver says the first."""
    return np.arange(first, first + len(columns), dtype=np.int64)


def rows(table: pa.Table, indices: Iterable[int]) -> pa.Table:
    """The rows of an archive table at these positions (an owner's share)."""
    return table.take(pa.array(list(indices), type=pa.int64()))
