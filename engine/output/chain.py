"""The tamper-evident decision log: a hash chain over output records, and its verifier.

Each record written to a log gets two fields at the sink, after everything the engine put
in it:

    "prev": the previous record's "hash" ("0" * 64 for the first record of a log)
    "hash": sha256 (hex) of the canonical JSON of the record without "hash"
            (orjson, keys sorted, so the chain does not depend on field order)

The engine's records stay the same objects; `ChainedWriter` only adds the two fields to the
dict it writes. Changing any byte of a record changes its hash (or breaks its JSON);
removing, inserting or reordering records breaks the `prev` links. `verify_lines` says which
line, which record id and what happened. Truncating the tail of a log leaves a valid, shorter
chain: compare the head (the last hash, printed by `rectify run` and `rectify verify`, kept by
the store) with the published one, e.g. `rectify verify LOG --head HASH`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from engine.i18n import Message

GENESIS = "0" * 64
CHAIN_FIELDS = ("prev", "hash")


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash covers: sorted-key JSON of every field except `hash`."""
    return orjson.dumps({k: v for k, v in record.items() if k != "hash"}, option=orjson.OPT_SORT_KEYS)


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 (hex) over `canonical(record)`; `prev` is covered, so each hash covers the chain before it."""
    return hashlib.sha256(canonical(record)).hexdigest()


def chain(record: Mapping[str, Any], prev: str) -> dict[str, Any]:
    """A copy of `record` with `prev` and `hash` added (any old chain fields replaced)."""
    if "prev" in record or "hash" in record:
        out = {k: v for k, v in record.items() if k not in CHAIN_FIELDS}
    else:
        out = dict(record)
    out["prev"] = prev
    # `out` has no "hash" yet, so this is `record_hash(out)` without copying it once more
    out["hash"] = hashlib.sha256(orjson.dumps(out, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return out


def unchained(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as the engine made it (without `prev` and `hash`)."""
    return {k: v for k, v in record.items() if k not in CHAIN_FIELDS}


class _Sink(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class ChainedWriter:
    """Wraps a sink (anything with `write(dict)`): each record goes out with `prev` and `hash`.

    `head` is the hash of the last record written (GENESIS before the first); pass it back as
    `prev` to continue a chain (the SQLite store does, after a restart).
    """

    def __init__(self, sink: _Sink, prev: str = GENESIS) -> None:
        self.sink = sink
        self.head = prev
        self.written = 0

    def write(self, record: Mapping[str, Any]) -> dict[str, Any]:
        chained = chain(record, self.head)
        self.sink.write(chained)
        self.head = chained["hash"]
        self.written += 1
        return chained

    def close(self) -> None:
        self.sink.close()

    def __enter__(self) -> ChainedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- verification ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One break in a chain: where (1-based line, record id if readable), what kind, and a sentence
    (a Message: English in str() and JSON, any language through `Translator.text`)."""

    line: int
    id: str | None
    kind: str  # edited | removed | inserted | reordered | truncated | malformed
    text: Message  # the sentence, put into words in a language by `Translator.text`

    @property
    def message(self) -> str:
        """The sentence in English (as the JSON verdict gives it)."""
        return str(self.text)

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.id, "kind": self.kind, "message": self.message}


@dataclass(slots=True)
class Verdict:
    """The result of verifying a log: records read, the head hash, and the problems found."""

    records: int = 0
    head: str = GENESIS
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head": self.head, "problems": [p.to_dict() for p in self.problems]}


@dataclass(slots=True)
class _Line:
    number: int
    id: str | None
    prev: str | None
    stored: str | None
    valid: bool  # parsed, canonical bytes, and its stored hash matches its content


def _read(number: int, raw: bytes) -> tuple[_Line, Problem | None]:
    def bad(kind: str, message: Message, rid: str | None = None) -> tuple[_Line, Problem]:
        return _Line(number, rid, None, None, False), Problem(number, rid, kind, message)

    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return bad("edited", Message("line {line}: not valid JSON ({error}): the record was edited or damaged",
                                     line=number, error=str(exc)))
    if not isinstance(record, dict):
        return bad("edited", Message("line {line}: not a JSON object: the record was edited or damaged", line=number))
    rid = record.get("id") if isinstance(record.get("id"), str) else None
    where = _where(number, rid)
    prev, stored = record.get("prev"), record.get("hash")
    if not isinstance(prev, str) or not isinstance(stored, str):
        return bad("edited", Message("{where}: no prev/hash fields: not a chained record", where=where), rid)
    if record_hash(record) != stored:  # first: a content edit is one, however the line was written again
        return _Line(number, rid, prev, stored, False), Problem(
            number, rid, "edited", Message("{where}: content does not match its hash: the record was edited", where=where))
    if orjson.dumps(record) != raw:
        return bad("edited", Message("{where}: the bytes are not as written (edited without changing the JSON meaning)",
                                     where=where), rid)
    return _Line(number, rid, prev, stored, True), None


def _where(number: int, rid: str | None) -> Message:
    """"line N" or "line N (id ID)"."""
    return Message("line {line} (id {id})", line=number, id=rid) if rid else Message("line {line}", line=number)


def verify_lines(lines: Iterable[bytes], head: str | None = None) -> Verdict:
    """Check a chained log (one record per item, without the newline).

    Every problem names the line and the record id. Kinds: `edited` (content, hash, or the
    bytes changed), `removed` (a record whose hash the next one names is gone), `inserted`
    (a record that is not in the chain between its neighbours), `reordered` (a record that
    names a later line as its predecessor), `truncated` (the head is not the expected one).
    """
    verdict = Verdict()
    table: list[_Line] = []
    for number, raw in enumerate(lines, start=1):
        line, problem = _read(number, raw)
        table.append(line)
        if problem is not None:
            verdict.problems.append(problem)
    verdict.records = len(table)
    positions: dict[str, list[int]] = {}
    for index, line in enumerate(table):
        if line.stored is not None:
            positions.setdefault(line.stored, []).append(index)
    for index, line in enumerate(table):
        if line.prev is None:
            continue
        previous = table[index - 1] if index else None
        expected = GENESIS if previous is None else previous.stored
        if line.prev == expected:
            continue
        where = _where(line.number, line.id)
        if previous is not None and previous.stored is None:
            continue  # the line before is damaged: already reported
        if previous is not None and not previous.valid and line.prev != previous.stored:
            # an edited record whose hash was recomputed: the next link shows it
            verdict.problems.append(Problem(previous.number, previous.id, "edited",
                                            Message("line {line}: its hash was rewritten; {where} names another predecessor",
                                                    line=previous.number, where=where)))
            continue
        found = positions.get(line.prev, [])
        earlier = [i for i in found if i < index - 1]
        later = [i for i in found if i >= index]
        if later:
            other = table[later[0]]
            verdict.problems.append(Problem(line.number, line.id, "reordered",
                                            Message("{where} belongs after {other}: records were reordered",
                                                    where=where, other=_where(other.number, other.id))))
        elif earlier:
            start = table[earlier[-1]].number + 1
            span = Message("line {line}", line=start) if start == line.number - 1 else \
                Message("lines {first}-{last}", first=start, last=line.number - 1)
            ids = [t.id for t in table[earlier[-1] + 1:index] if t.id]
            verdict.problems.append(Problem(start, ids[0] if ids else None, "inserted", Message(
                "{span} ({ids}) are not in the chain: inserted or moved (line {line} follows line {before})",
                span=span, ids=", ".join(ids) if ids else Message("no id"), line=line.number, before=start - 1)))
        elif line.prev == GENESIS:
            verdict.problems.append(Problem(line.number, line.id, "inserted",
                                            Message("{where} starts a new chain: inserted from another log", where=where)))
        else:
            if previous is None:
                message = Message("record(s) removed at the start, before {where}: its predecessor {prev}… is missing",
                                  where=where, prev=line.prev[:12])
            else:
                message = Message("record(s) removed between line {line} and {where} (its predecessor {prev}… is "
                                  "missing), or line {line} was edited and its hash recomputed",
                                  line=previous.number, where=where, prev=line.prev[:12])
            verdict.problems.append(Problem(line.number, line.id, "removed", message))
    if table and table[-1].stored is not None:
        verdict.head = table[-1].stored
    if head is not None and head != verdict.head:
        verdict.problems.append(Problem(verdict.records, table[-1].id if table else None, "truncated",
                                        Message("the log ends at line {line} with head {head}…, expected {expected}…: "
                                                "records were removed at the end (or added)",
                                                line=verdict.records, head=verdict.head[:12], expected=head[:12])))
    verdict.problems.sort(key=lambda p: (p.line, p.kind))
    return verdict


def read_log(path: str) -> Iterator[bytes]:
    """Lines of a JSONL log as bytes, newline removed; a missing final newline is kept visible."""
    with open(path, "rb") as handle:
        for raw in handle:
            yield raw[:-1] if raw.endswith(b"\n") else raw


def verify_file(path: str, head: str | None = None) -> Verdict:
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:  # a run with no records writes an empty log: nothing to break
        return verify_lines([], head)
    lines = data.split(b"\n")
    verdict = verify_lines(lines[:-1] if data.endswith(b"\n") else lines, head)
    if data and not data.endswith(b"\n"):
        verdict.problems.append(Problem(verdict.records, None, "edited",
                                        Message("line {line}: the log does not end with a newline", line=verdict.records)))
    return verdict
