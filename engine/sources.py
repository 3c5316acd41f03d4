"""Sources: where input lines come from, each tagged with its file and line number."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.pipeline import InputLine


def read_jsonl(paths: Iterable[str | Path]) -> Iterator[InputLine]:
    """Lines of JSONL files in the given order ('-' is standard input), as raw bytes.

    Files are read in binary so a line with bad UTF-8 is quarantined, not fatal.
    """
    for path in paths:
        name = str(path)
        handle = sys.stdin.buffer if name == "-" else open(path, "rb")  # noqa: SIM115 - closed below
        try:
            for number, raw in enumerate(handle, start=1):
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                yield InputLine(source=name, number=number, text=raw)
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()


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

    def chunks(self, size: int) -> Iterator[tuple[str, int, list[bytes]]]:
        for name in self.paths:
            handle = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115 - closed below
            try:
                number, pending = 1, b""
                while True:
                    block = handle.read1(self.block_bytes)
                    if not block:
                        break
                    lines = (pending + block).split(b"\n")
                    pending = lines.pop()
                    for start in range(0, len(lines), size):
                        part = lines[start:start + size]
                        yield name, number, part
                        number += len(part)
                if pending:
                    yield name, number, [pending]
            finally:
                if handle is not sys.stdin.buffer:
                    handle.close()


def count_lines(paths: Iterable[str | Path]) -> int | None:
    """Total lines in the files (for the progress bar); None when reading stdin."""
    total = 0
    for path in paths:
        if str(path) == "-":
            return None
        with open(path, "rb") as handle:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return total
