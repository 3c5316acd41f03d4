"""The batch path: replays and bulk ingestion, parsed a chunk at a time.

A chunk of lines is parsed by one orjson call over `[line,line,...]`; when that fails (a
bad line somewhere) or does not give one object per line, the chunk falls back to parsing
line by line, so a bad line is quarantined exactly as on the per-event path. The stages
after parsing are the Engine's own (`process_parsed`): the output is the per-event path's,
byte for byte (tests/test_batch.py), by construction rather than by a second
implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from engine.pipeline import Engine, InputLine, Record


def _parse_chunk(texts: list[bytes]) -> list[Any] | None:
    """All lines of a chunk parsed at once, or None when the chunk needs line-by-line parsing."""
    for text in texts:
        stripped = text.strip()
        if not stripped or stripped[:1] != b"{" or stripped[-1:] != b"}":
            return None
    try:
        parsed = orjson.loads(b"[" + b",".join(texts) + b"]")
    except orjson.JSONDecodeError:
        return None
    if len(parsed) != len(texts) or not all(type(event) is dict for event in parsed):
        return None
    return parsed


def run_batch(engine: Engine, lines: Iterable[InputLine | str | bytes | Mapping[str, Any]], *, as_of: str | None = None,
              batch_size: int = 4096) -> Iterator[Record]:
    """Stream `lines` through `engine` in chunks; yields what `engine.run` yields, in the same order."""
    from engine.pipeline import InputLine

    iterator = iter(lines)
    number = 0
    while True:
        chunk = list(islice(iterator, batch_size))
        if not chunk:
            break
        if any(isinstance(item, Mapping) for item in chunk):  # events already parsed (e.g. from HJ 212)
            for item in chunk:
                number += 1
                yield from engine.process_line(item, number)
            continue
        places: list[tuple[str, int]] = []
        texts: list[bytes] = []
        for item in chunk:
            number += 1
            if isinstance(item, InputLine):
                places.append((item.source, item.number))
                text = item.text
            else:
                places.append(("<input>", number))
                text = item
            texts.append(text.encode("utf-8") if isinstance(text, str) else text)
        parsed = _parse_chunk(texts)
        if parsed is None:
            for (source, line), text in zip(places, texts):
                yield from engine.process_line(InputLine(source, line, text))
            continue
        for (source, line), text, event in zip(places, texts, parsed):
            yield from engine.process_parsed(event, text, source, line)
    yield from engine.flush(as_of)
