"""JSONL sources: input lines from files or standard input, each tagged with its file and line number."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from engine.records import InputLine


@contextmanager
def opened(name: str | Path) -> Iterator[IO[bytes]]:
    """A binary input by name ('-' is standard input, which is left open)."""
    if str(name) == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb") as handle:
        yield handle


def read_jsonl(paths: Iterable[str | Path]) -> Iterator[InputLine]:
    """Lines of JSONL files in the given order ('-' is standard input), as raw bytes.

    Files are read in binary so a line with bad UTF-8 is quarantined, not fatal.
    """
    for path in paths:
        name = str(path)
        with opened(name) as handle:
            for number, raw in enumerate(handle, start=1):
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                yield InputLine(source=name, number=number, text=raw)


class JsonlFiles:
    """JSONL files as input: iterates like `read_jsonl`, and the batch path reads them in blocks.

    `chunks(size)` yields (source, first line number, [line, ...]) without an object per
    line; lines and numbers are exactly those `read_jsonl` gives.
    """

    def __init__(self, paths: Iterable[str | Path], block_bytes: int = 1 << 22) -> None:
        self.paths = [str(p) for p in paths]
        self.block_bytes = block_bytes

    def __iter__(self) -> Iterator[InputLine]:
        return read_jsonl(self.paths)

    def chunks(self, size: int, skip: int = 0) -> Iterator[tuple[str, int, list[bytes]]]:
        """(source, first line number, lines): `size` lines of one file each (fewer at a file's end),
        after the first `skip` lines of all the files (a resumed run).

        Chunks depend on the files, `size` and `skip` only, never on how reads were split, so
        worker processes reading the same files see the same chunks (engine/fast/workers.py).
        """
        for name in self.paths:
            with opened(name) as handle:
                number, pending, lines = 1, b"", []  # type: int, bytes, list[bytes]
                while True:
                    block = handle.read1(self.block_bytes)  # type: ignore[attr-defined]
                    if not block:
                        break
                    parts = (pending + block).split(b"\n")
                    pending = parts.pop()
                    if skip:
                        dropped = min(skip, len(parts))
                        del parts[:dropped]
                        skip -= dropped
                        number += dropped
                    lines.extend(parts)
                    start = 0
                    while len(lines) - start >= size:
                        yield name, number, lines[start:start + size]
                        number += size
                        start += size
                    del lines[:start]
                if pending:
                    if skip:
                        skip -= 1
                        number += 1
                    else:
                        lines.append(pending)
                if lines:
                    yield name, number, lines

    @property
    def rereadable(self) -> bool:
        """Whether another process can read the same lines again (files, not standard input)."""
        return "-" not in self.paths


def count_lines(paths: Iterable[str | Path]) -> int | None:
    """Total lines in the files (for the progress bar); None when reading stdin."""
    total = 0
    for path in paths:
        if str(path) == "-":
            return None
        with open(path, "rb") as handle:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return total
