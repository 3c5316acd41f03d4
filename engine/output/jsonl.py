"""Sinks: records out as JSON lines, byte-for-byte reproducible (or kept in memory)."""

from __future__ import annotations

from types import TracebackType
from typing import IO, Any

import orjson


def dumps(record: dict[str, Any]) -> bytes:
    """One record as a JSON line: key order as built, shortest round-trip floats, UTF-8 (the
    newline written by orjson, not appended to a copy)."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


class JsonlSink:
    """Writes records to a binary stream (a file or stdout), one per line."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.written = 0

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(dumps(record))
        self.written += 1

    def close(self) -> None:
        self._stream.flush()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class ListSink:
    """Keeps the records written (replays, reports, tests)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.written = 0

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.written += 1

    def close(self) -> None:
        pass
