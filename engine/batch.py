"""The batch path: replays and bulk ingestion, a chunk of lines at a time.

Each chunk is parsed line by line with orjson in one C-level `map` (a chunk with a bad line
is parsed again one line at a time, so the bad line alone is quarantined, exactly as on
the per-event path), then handed to the fast lane (engine/fastlane.py), which commits the
quiet readings in bulk and sends every other line through the Engine's own per-event
stages in input order. With `workers`, chunks of files are sorted in forked
processes (engine/parallel.py). The output is the per-event path's, record for record
(tests/test_batch.py, tests/test_fastlane.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any

from engine.fastlane import FastLane, parse_lines
from engine.parallel import can_share, sorted_file_chunks

if TYPE_CHECKING:
    from engine.pipeline import Engine, InputLine, Record


def chunks_of(lines: Iterable[InputLine | str | bytes | Mapping[str, Any]],
              batch_size: int) -> Iterator[tuple[str, int, list[bytes]] | list[Mapping[str, Any] | InputLine | str | bytes]]:
    """(source, first line number, texts) for runs of lines of one source with consecutive numbers;
    a list of items for anything else (events already parsed, e.g. from HJ 212)."""
    from engine.pipeline import InputLine

    chunker = getattr(lines, "chunks", None)
    if chunker is not None:  # engine.sources.JsonlFiles: read in blocks, no object per line
        yield from chunker(batch_size)
        return
    iterator = iter(lines)
    number = 0
    while True:
        chunk = list(islice(iterator, batch_size))
        if not chunk:
            return
        if any(isinstance(item, Mapping) for item in chunk):
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
            texts.append(text.encode("utf-8") if isinstance(text, str) else text)
        if texts:
            yield source, first, texts  # type: ignore[misc]


def run_batch(engine: Engine, lines: Iterable[InputLine | str | bytes | Mapping[str, Any]], *, as_of: str | None = None,
              batch_size: int = 256, workers: int = 0) -> Iterator[Record]:
    """Stream `lines` through `engine` in chunks; yields what `engine.run` yields, in the same order.

    `workers` > 0 sorts the chunks of `JsonlFiles` in that many forked processes
    (engine/parallel.py); other inputs are sorted in-process.
    """
    lane = FastLane(engine)
    if workers > 0 and can_share(lines):
        for (source, first, texts), sorting, events in sorted_file_chunks(lane, lines, batch_size, workers):  # type: ignore[arg-type]
            yield from lane.apply(sorting, events, texts, source, first)
        yield from engine.flush(as_of)
        return
    number = 0
    for chunk in chunks_of(lines, batch_size):
        if isinstance(chunk, list):
            for item in chunk:
                number += 1
                yield from engine.process_line(item, number)
            continue
        source, first, texts = chunk
        number += len(texts)
        yield from lane.process(parse_lines(texts), texts, source, first)
    yield from engine.flush(as_of)
