"""JSONL sources: input lines from files or standard input, each tagged with its file and line number.

A UTF-8 byte order mark at the start of a file is not part of its first line: it is dropped,
as JSON tools do (RFC 8259 section 8.1 lets a parser ignore it). A line that is not UTF-8 or
not JSON is quarantined downstream with `json_problem`'s reason.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from engine.records import InputLine

BOM = b"\xef\xbb\xbf"


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
                if number == 1 and raw.startswith(BOM):
                    raw = raw[3:]
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
                first = True
                while True:
                    block = handle.read1(self.block_bytes)  # type: ignore[attr-defined]
                    if not block:
                        break
                    if first:
                        while len(block) < 3 and BOM.startswith(block) and (more := handle.read1(3 - len(block))):
                            block += more  # a read shorter than the mark: complete it before deciding
                        block, first = block[3:] if block.startswith(BOM) else block, False
                        if not block:
                            continue
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


def byte_ranges(path: str | Path, size: int) -> list[tuple[int, int]]:
    """A file cut into byte ranges of about `size` bytes: [start, stop) pairs covering it, in order
    (none for an empty file). `read_range` reads the lines that start in each."""
    total = Path(path).stat().st_size
    return [(start, min(start + size, total)) for start in range(0, total, max(1, size))]


def read_range(path: str | Path, start: int, stop: int) -> list[bytes]:
    """The lines of a file that start at a byte offset in [start, stop), as `JsonlFiles` reads them
    (the newline removed, a byte order mark dropped from the file's first line).

    A line that starts in the range and runs past its end is read to its end; one that starts
    before it belongs to the range before. So the ranges of `byte_ranges` read every line once,
    whatever the size.
    """
    with open(path, "rb") as handle:
        handle.seek(max(0, start - 1))
        data = handle.read(stop - max(0, start - 1))
        if start > 0:  # the byte before the range: a newline there means a line starts at `start`
            cut = data.find(b"\n")
            if cut < 0:
                return []
            data = data[cut + 1:]
        if not data:
            return []
        if not data.endswith(b"\n"):  # the last line starts in the range and may run past it
            parts = [data]
            while True:
                more = handle.read(1 << 16)
                if not more:
                    break
                cut = more.find(b"\n")
                if cut >= 0:
                    parts.append(more[:cut + 1])
                    break
                parts.append(more)
            data = b"".join(parts)
    if start == 0 and data.startswith(BOM):
        data = data[3:]
        if not data:
            return []
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    return lines


def json_problem(raw: str | bytes, error: Exception) -> str:
    """Why a line is not a JSON value, for its quarantine record: bytes that are not UTF-8 are
    named by position (orjson says "surrogates not allowed"), anything else is orjson's reason."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = bytes(raw[exc.start:exc.end]).hex(" ")
            return f"(line): not valid UTF-8 at byte {exc.start + 1} of {len(raw)} (0x{bad}): {exc.reason}"
    return f"invalid JSON: {error}"


def may_repeat_keys(raw: str | bytes, canonical: bytes) -> bool:
    """Whether a JSON text might repeat a key inside one object (orjson keeps the last silently).

    `canonical` is orjson's compact dump of what it parsed from `raw`. Without escapes (no
    backslash at all: one memchr) a colon can only be written as itself, so every key
    separator and every colon inside a string of `raw` is one byte `:`; the dump has exactly
    one per key it kept and the same colons inside the strings it kept. A repeated key leaves
    at least one more colon in `raw` than in the dump. So equal counts (nearly always; two C
    passes over the line) prove there is none; a line with escapes or unequal counts gets
    `repeated_key`'s exact look (benchmarks/test_reliability.py measures both).
    """
    if isinstance(raw, str):
        return "\\" in raw or raw.count(":") != canonical.count(b":")
    return b"\\" in raw or raw.count(b":") != canonical.count(b":")


class _Pairs(list):  # type: ignore[type-arg]
    """An object's (key, value) pairs in text order, as json's object_pairs_hook sees them."""


def repeated_key(raw: str | bytes) -> str | None:
    """The path of the first key a JSON text repeats inside one object ('data.value'), or None."""
    try:
        tree = json.loads(raw, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return None  # not JSON: the parser's own error says so
    stack: list[tuple[str, object]] = [("", tree)]
    while stack:
        path, node = stack.pop(0)
        if isinstance(node, _Pairs):
            seen: set[str] = set()
            for key, value in node:
                where = f"{path}.{key}" if path else key
                if key in seen:
                    return where
                seen.add(key)
                stack.append((where, value))
        elif isinstance(node, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(node))
    return None


def count_lines(paths: Iterable[str | Path]) -> int | None:
    """Total lines in the files (for the progress bar); None when reading stdin."""
    total = 0
    for path in paths:
        if str(path) == "-":
            return None
        with open(path, "rb") as handle:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return total
