"""JSONL sources: input lines from files or standard input, each tagged with its file and line number.

A UTF-8 byte order mark at the start of a file is not part of its first line: it is dropped,
as JSON tools do (RFC 8259 section 8.1 lets a parser ignore it). A line that is not UTF-8 or
not JSON is quarantined downstream with `json_problem`'s reason.

A line longer than `max_line_bytes` (16 MiB unless the caller says otherwise; the largest body
`rectify serve` accepts) is never held whole: every reader keeps its first `KEPT_BYTES` and
counts the rest, and gives `overlong(...)` in its place, a text no JSON parser reads, which is
quarantined with the line's length (a file with no newline, such as a disk image, would
otherwise be read into memory as one line).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from engine.records import InputLine

BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 16 << 20
KEPT_BYTES = 4096
_MARK = b"\xff\x00rectify:overlong:"  # invalid UTF-8 and a NUL: no line that parses can hold it
_OVERLONG = re.compile(rb"\xff\x00rectify:overlong:([0-9]+):([0-9]+)\Z")


def overlong(start: bytes, length: int, limit: int) -> bytes:
    """What the readers give for a line of `length` bytes, longer than `limit`: its first
    `KEPT_BYTES` and a mark with both numbers (bytes, so it travels wherever lines do: worker
    processes, byte ranges, an archive's invalid rows)."""
    return start[:KEPT_BYTES] + _MARK + b"%d:%d" % (length, limit)


def overlong_parts(raw: bytes) -> tuple[bytes, int, int] | None:
    """(the kept start, the line's length, the limit) of what `overlong` made; None for a line."""
    if _MARK not in raw:
        return None
    found = _OVERLONG.search(raw)
    if found is None:
        return None
    return raw[:found.start()], int(found[1]), int(found[2])


class _Line:
    """A line read in pieces (it spans blocks): held whole up to `limit` bytes, then only its
    first `KEPT_BYTES`, with its length counted."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit, self.parts, self.size = limit, [], 0  # type: int, list[bytes], int

    def add(self, piece: bytes) -> None:
        if self.size <= self.limit:
            self.parts.append(piece)
            if self.size + len(piece) > self.limit:  # too long: from now on only its start is kept
                self.parts = [b"".join(self.parts)[:KEPT_BYTES]]
        elif (room := KEPT_BYTES - len(self.parts[0])) > 0:
            self.parts[0] += piece[:room]
        self.size += len(piece)

    def take(self) -> bytes:
        """The line (or `overlong`'s text for it); the next line starts empty."""
        line = b"".join(self.parts) if self.size <= self.limit else overlong(self.parts[0], self.size, self.limit)
        self.parts, self.size = [], 0
        return line


def _rest_of_line(handle: IO[bytes], line: _Line) -> bool:
    """Read the rest of an unfinished line into `line`; whether a newline ended it."""
    while more := handle.readline(1 << 20):
        if more.endswith(b"\n"):
            line.add(more[:-1])
            return True
        line.add(more)
    return False


@contextmanager
def opened(name: str | Path) -> Iterator[IO[bytes]]:
    """A binary input by name ('-' is standard input, which is left open)."""
    if str(name) == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb") as handle:
        yield handle


def read_jsonl(paths: Iterable[str | Path], max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[InputLine]:
    """Lines of JSONL files in the given order ('-' is standard input), as raw bytes, each as
    soon as it has arrived.

    Files are read in binary so a line with bad UTF-8 is quarantined, not fatal. A line longer
    than `max_line_bytes` is given as `overlong`'s text (module docstring).
    """
    for path in paths:
        name = str(path)
        with opened(name) as handle:
            number, read = 0, handle.readline
            while raw := read(max_line_bytes + (4 if number == 0 else 1)):  # + the newline (+ a mark)
                number += 1
                if number == 1 and raw.startswith(BOM):
                    raw = raw[3:]
                ended = raw.endswith(b"\n")
                if ended:
                    raw = raw[:-1]
                if len(raw) > max_line_bytes:
                    line = _Line(max_line_bytes)
                    line.add(raw)
                    if not ended:
                        _rest_of_line(handle, line)
                    raw = line.take()
                yield InputLine(source=name, number=number, text=raw)


class JsonlFiles:
    """JSONL files as input: iterates like `read_jsonl`, and the batch path reads them in blocks.

    `chunks(size)` yields (source, first line number, [line, ...]) without an object per
    line; lines and numbers are exactly those `read_jsonl` gives, with the same `max_line_bytes`.
    """

    def __init__(self, paths: Iterable[str | Path], block_bytes: int = 1 << 22,
                 max_line_bytes: int = MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1 or block_bytes < 1:
            raise ValueError(f"block_bytes and max_line_bytes must be at least 1, not {block_bytes} and {max_line_bytes}")
        self.paths = [str(p) for p in paths]
        self.block_bytes = block_bytes
        self.max_line_bytes = max_line_bytes

    def __iter__(self) -> Iterator[InputLine]:
        return read_jsonl(self.paths, self.max_line_bytes)

    def chunks(self, size: int, skip: int = 0) -> Iterator[tuple[str, int, list[bytes]]]:
        """(source, first line number, lines): `size` lines of one file each (fewer at a file's end),
        after the first `skip` lines of all the files (a resumed run).

        Chunks depend on the files, `size` and `skip` only, never on how reads were split, so
        worker processes reading the same files see the same chunks (engine/fast/workers.py).
        """
        size_read = min(self.block_bytes, self.max_line_bytes)  # a line inside one block is never too long
        for name in self.paths:
            with opened(name) as handle:
                number, lines, pending = 1, [], _Line(self.max_line_bytes)  # type: int, list[bytes], _Line
                first = True
                while True:
                    block = handle.read1(size_read)  # type: ignore[attr-defined]
                    if not block:
                        break
                    if first:
                        while len(block) < 3 and BOM.startswith(block) and (more := handle.read1(3 - len(block))):
                            block += more  # a read shorter than the mark: complete it before deciding
                        block, first = block[3:] if block.startswith(BOM) else block, False
                        if not block:
                            continue
                    parts = block.split(b"\n")
                    if len(parts) == 1:  # the line goes on (held in pieces: no copy per block)
                        pending.add(block)
                        continue
                    pending.add(parts[0])
                    parts[0] = pending.take()
                    pending.add(parts.pop())
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
                if pending.size:
                    if skip:
                        skip -= 1
                        number += 1
                    else:
                        lines.append(pending.take())
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


def read_range(path: str | Path, start: int, stop: int, max_line_bytes: int = MAX_LINE_BYTES) -> list[bytes]:
    """The lines of a file that start at a byte offset in [start, stop), as `JsonlFiles` reads them
    (the newline removed, a byte order mark dropped from the file's first line, a line longer
    than `max_line_bytes` given as `overlong`'s text).

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
        elif len(data) < 3 and BOM.startswith(data):  # a range shorter than the mark: complete it
            data += handle.read(3 - len(data))
        if not data:
            return []
        if start == 0 and data.startswith(BOM):
            data = data[3:]
        lines = data.split(b"\n")
        last = lines.pop()  # empty when the range ends with a newline
        if len(data) > max_line_bytes:
            lines = [overlong(x, len(x), max_line_bytes) if len(x) > max_line_bytes else x for x in lines]
        if not data.endswith(b"\n"):  # the last line starts in the range and may run past it
            line = _Line(max_line_bytes)
            line.add(last)
            if _rest_of_line(handle, line) or line.size:  # (a file that is only the mark has no line)
                lines.append(line.take())
    return lines


def json_problem(raw: str | bytes, error: Exception) -> str:
    """Why a line is not a JSON value, for its quarantine record: bytes that are not UTF-8 are
    named by position (orjson says "surrogates not allowed"), anything else is orjson's reason."""
    if isinstance(raw, (bytes, bytearray)):
        if (parts := overlong_parts(bytes(raw))) is not None:
            _, length, limit = parts
            return (f"(line): {length} bytes, longer than the limit of {limit} (max_line_bytes): "
                    f"not read; the record keeps its first {min(length, KEPT_BYTES)}")
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
