"""The batch path on more than one core: chunks of files sorted in worker processes.

What the fast lane learns about a chunk before it touches engine state (parsing, shape
plans, gates, event times, content digests) is a pure function of the lines. Worker
processes do that part. They are forked from the process that holds the engine, so they
share its compiled rules, schemas and plugins without pickling any of them. Each worker
reads the input files itself and sorts every N-th chunk (chunks are fixed runs of lines,
engine/ingest/jsonl.py), then sends the sorting back through its own pipe. The engine's process
reads the files too, takes the sortings in input order, parses again only the lines that
take the exact path, and makes every decision. Only sortings cross a pipe, and only one
way, so nothing can deadlock. No worker can reorder anything: the output is the
single-process output, record for record (tests/test_fastlane.py).

This needs files (standard input cannot be read twice) and a POSIX system (fork);
otherwise the batch path sorts in-process.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from engine.fast.lane import UNPARSED, FastLane, Sorting, parse_lines
from engine.ingest.jsonl import JsonlFiles

_MAIN_EVERY = 3


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


def can_share(files: Any) -> bool:
    """Whether worker processes can sort these inputs: re-readable files, and fork."""
    return isinstance(files, JsonlFiles) and files.rereadable and "fork" in multiprocessing.get_all_start_methods()


def sorted_file_chunks(lane: FastLane, files: JsonlFiles, size: int,
                       workers: int, skip: int = 0) -> Iterator[tuple[tuple[str, int, list[bytes]], Sorting, Sequence[Any]]]:
    """Each chunk of `files` with its sorting and its events, in input order, sorted by `workers`
    processes. Events of a chunk sorted here are the parsed ones; of a worker's, parsed on use."""
    context = multiprocessing.get_context("fork")
    pipes, processes = [], []
    try:
        for index in range(workers):
            receiving, sending = context.Pipe(duplex=False)
            process = context.Process(target=_sort_share, args=(lane, files, size, skip, index, workers, sending),
                                      name=f"rectify-sort-{index}", daemon=True)
            process.start()
            sending.close()  # the worker holds the sending end
            pipes.append(receiving)
            processes.append(process)
        for number, chunk in enumerate(files.chunks(size, skip)):
            owner = _owner(number, workers)
            if owner is None:
                events = parse_lines(chunk[2])
                yield chunk, lane.sort(events, chunk[2], defer=True), events
                continue
            try:
                sent, sorting = pipes[owner].recv()
            except EOFError:
                raise RuntimeError(f"sorting worker {owner} ended early (chunk {number})") from None
            if isinstance(sorting, str):
                raise RuntimeError(f"sorting worker {owner} failed on chunk {sent}:\n{sorting}")
            if sent != number:
                raise RuntimeError(f"sorting worker {owner} sent chunk {sent}, expected {number}")
            yield chunk, sorting, LazyEvents(chunk[2])
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for pipe in pipes:
            pipe.close()


def _owner(number: int, workers: int) -> int | None:
    """Who sorts chunk `number`: the engine's process every third chunk (None), else a worker in turn.

    The engine's process spends about 3 µs per event committing and deciding, a worker about
    5.5 µs parsing and sorting (benchmarks/test_stages.py); sorting a third of the chunks
    itself keeps both busy on 2 cores (in a side-by-side run, every third chunk did at least
    as well as every 4th, 6th or 10th).
    """
    if number % _MAIN_EVERY == _MAIN_EVERY - 1:
        return None
    return (number - (number + 1) // _MAIN_EVERY) % workers


def _sort_share(lane: FastLane, files: JsonlFiles, size: int, skip: int, index: int, workers: int, pipe: Any) -> None:
    """A worker: sort the chunks `_owner` gives it and send (chunk number, sorting) for each."""
    number = -1
    try:
        for number, (_, _, texts) in enumerate(files.chunks(size, skip)):
            if _owner(number, workers) == index:
                pipe.send((number, lane.sort(parse_lines(texts), texts, defer=True)))
    except BaseException:  # noqa: BLE001 - reported to the engine's process, which raises it
        pipe.send((number, traceback.format_exc()))
    finally:
        pipe.close()
