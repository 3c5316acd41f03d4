"""The batch path on more than one core: chunks sorted in worker processes.

What the fast lane learns about a chunk before it touches engine state (parsing, shape
plans, gates, event times, content digests) is a pure function of the lines. Worker
processes do that part. They are forked from the process that holds the engine, so they
share its compiled rules, schemas and plugins without pickling any of them. The engine's
own process takes the sorted chunks back in input order, parses again only the lines that
take the exact path, and makes every decision. So the output is the single-process
output, record for record (tests/test_fastlane.py), and no worker can reorder anything.

Forking needs a POSIX system; elsewhere `workers` is ignored and the chunks are sorted
in-process.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import orjson

from engine.fastlane import UNPARSED, FastLane, Sorting

_LANE: FastLane | None = None  # in a worker: the fast lane of the engine it was forked from
_IN_FLIGHT_PER_WORKER = 4


def _adopt(lane: FastLane) -> None:
    global _LANE
    _LANE = lane


def _sort(texts: list[bytes]) -> Sorting:
    from engine.batch import parse_lines

    assert _LANE is not None, "a sorting worker runs only in a pool started by sorted_chunks"
    return _LANE.sort(parse_lines(texts))


class LazyEvents(Sequence[Any]):
    """A chunk's lines parsed on first use: the exact path needs only a few of them."""

    def __init__(self, texts: list[bytes]) -> None:
        self._texts = texts
        self._parsed: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._texts)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        found = self._parsed.get(index, self)
        if found is self:
            try:
                found = orjson.loads(self._texts[index])
            except orjson.JSONDecodeError:
                found = UNPARSED
            self._parsed[index] = found
        return found


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def sorted_chunks(lane: FastLane, chunks: Iterable[Any], workers: int) -> Iterator[tuple[Any, Sorting | None]]:
    """(chunk, its sorting) in input order; chunks that are not (source, first, texts) get None."""
    context = multiprocessing.get_context("fork")
    pending: deque[tuple[Any, Future[Sorting] | None]] = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_adopt, initargs=(lane,)) as pool:
        try:
            for chunk in chunks:
                texts = chunk[2] if isinstance(chunk, tuple) else None
                pending.append((chunk, pool.submit(_sort, texts) if texts is not None else None))
                while len(pending) > workers * _IN_FLIGHT_PER_WORKER or (pending and pending[0][1] is None):
                    yield _take(pending)
            while pending:
                yield _take(pending)
        finally:
            for _, future in pending:
                if future is not None:
                    future.cancel()


def _take(pending: deque[tuple[Any, Future[Sorting] | None]]) -> tuple[Any, Sorting | None]:
    chunk, future = pending.popleft()
    return chunk, future.result() if future is not None else None
