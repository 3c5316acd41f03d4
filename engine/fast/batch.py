"""The batch path: replays and bulk ingestion, a chunk of lines at a time.

Each chunk is parsed line by line with orjson in one C-level `map` (a chunk with a bad line
is parsed again one line at a time, so the bad line alone is quarantined, exactly as on
the per-event path), then handed to the fast lane (engine/fast/lane.py), which commits the
quiet readings in bulk and sends every other line through the Engine's own per-event
stages in input order. With `workers`, chunks of files are sorted in forked
processes (engine/fast/workers.py). The output is the per-event path's, record for record
(tests/test_batch.py, tests/test_fastlane.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from engine.fast.columns import archive_batches
from engine.fast.lane import CHUNK_LINES, FastLane, Host, parse_lines
from engine.ingest.archive import Archive
from engine.fast.workers import can_share, sorted_file_chunks, sorted_windows
from engine.records import InputLine, Quarantined, Record

Item = InputLine | str | bytes | Mapping[str, Any] | Quarantined


def chunks_of(lines: Iterable[Item], batch_size: int,
              skip: int = 0) -> Iterator[tuple[str, int, list[bytes]] | list[Item]]:
    """(source, first line number, texts) for runs of lines of one source with consecutive numbers;
    a list of items for anything else (events already parsed, quarantine records from HJ 212). The first
    `skip` lines are not read (a resumed run)."""
    chunker = getattr(lines, "chunks", None)
    if chunker is not None:  # engine.ingest.JsonlFiles: read in blocks, no object per line
        yield from chunker(batch_size, skip)
        return
    iterator = iter(lines)
    if skip:
        iterator = islice(iterator, skip, None)
    number = skip
    while True:
        chunk = list(islice(iterator, batch_size))
        if not chunk:
            return
        if any(isinstance(item, (Mapping, Quarantined)) for item in chunk):
            yield chunk
            number += len(chunk)
            continue
        source: str | None = None
        first = 0
        texts: list[bytes] = []
        for item in chunk:
            number += 1
            text: str | bytes
            if isinstance(item, InputLine):
                place, text = (item.source, item.number), item.text
            else:
                place, text = ("<input>", number), item  # type: ignore[assignment]
            if source is None or place != (source, first + len(texts)):
                if texts:
                    yield source, first, texts  # type: ignore[misc]
                source, first, texts = place[0], place[1], []
            # a lone surrogate in a str line: bytes that are not UTF-8, quarantined as the per-event path does
            texts.append(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        if texts:
            yield source, first, texts  # type: ignore[misc]


def batches(engine: Host, lines: Iterable[Item], *, batch_size: int = CHUNK_LINES, workers: int = 0,
            skip: int = 0) -> Iterator[tuple[int, list[Record]]]:
    """The records of `lines` through `engine`, a chunk at a time: (lines consumed so far, the
    chunk's records), in input order; what `engine.run` yields before its flush. An archive's
    window gives its records in parts as they are made (`ColumnLane.parts`): the lines it
    consumed are counted with its last part, so a count that has not grown is a part of a window,
    where no checkpoint may be taken.

    `workers` > 0 sorts the chunks of `JsonlFiles` in that many forked processes
    (engine/fast/workers.py); other inputs are sorted in-process. An `Archive` is replayed by
    column (engine/fast/columns.py); with `workers` > 0, one forked process reads and sorts its
    windows. `skip` lines are not read.
    """
    if isinstance(lines, Archive):
        by_column = archive_batches(engine, lines, skip, sorted_windows if workers > 0 and can_share(lines) else None)
        if by_column is not None:
            yield from by_column
            return
        # validated by another engine: its lines through this engine's own validation
    lane = FastLane(engine)
    done = skip
    if workers > 0 and not isinstance(lines, Archive) and can_share(lines):
        for (source, first, texts), sorting, events in sorted_file_chunks(lane, lines, batch_size, workers, skip):  # type: ignore[arg-type]
            done += len(texts)
            yield done, list(lane.apply(sorting, events, texts, source, first))
        return
    number = skip
    for chunk in chunks_of(lines, batch_size, skip):
        if isinstance(chunk, list):
            records: list[Record] = []
            for item in chunk:
                number += 1
                records.extend(engine.process_line(item, number))
            done += len(chunk)
            yield done, records
            continue
        source, first, texts = chunk
        number += len(texts)
        done += len(texts)
        yield done, list(lane.process(parse_lines(texts), texts, source, first))
