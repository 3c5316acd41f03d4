"""The Parquet event archive: a JSONL event log kept as typed columns, replayed byte for byte.

Layout of an archive directory:

    _rectify_archive.json                 the manifest: format, writing rectify version, the
                                          validation fingerprint, rows, files (seq ranges)
    month=2024-03/bucket=07/part-00000.parquet
    month=2024-04/bucket=07/part-00001.parquet
    month=unknown/bucket=00/part-...      lines without a valid event time (quarantined lines)

One row per input line, in any partition; `seq` (0, 1, 2, ... over the whole archive) is the
input order, `file` and `line` where the line came from. Partitions are the month of the
event time (`time[:7]`, as written) and an enterprise bucket (crc32 of the subject, mod
`buckets`). Appending a log writes new part files only (a new month is a new partition;
nothing is rewritten), then the manifest.

A row is either *typed* or *raw*:
- typed: a valid reading (emission or discharge) whose keys are all typed columns here and
  whose line is exactly `orjson.dumps` of its parsed event. Its envelope and data fields are
  columns (`value`, `o2_percent`, `volume_m3` as float64; strings dictionary-encoded), and so
  is a daily wastewater reading's `production` object (`production_quantity`,
  `production_unit`, `production_category`; since format 3). `shape` names the key order
  and which numbers were integers, so the line is rebuilt byte for byte (checked when it is
  written). `raw` is null.
- raw: anything else (other event types, invalid lines, lines in another JSON spelling): the
  original bytes in `raw`.

Valid rows also carry what validating and normalising gave: `epoch` (event time), `digest`
(the content digest de-duplication compares), `id_hash` (where de-duplication looks the id up,
engine/normalise/dedupe.py; since format 2) and `valid`. They are trusted only by an engine
with the same validation fingerprint (rectify version, schemas, strict mode); any other
engine replays the rebuilt lines through its own validation. Either way `Engine.run` and
`Engine.run_batch` on an archive give the bytes of the JSONL it was made from. Every page of
a part file carries a CRC-32 (Parquet page checksums, checked when read since format 2): a
changed byte is an error naming the file, never a digest, time or id hash read as another.

This module reads and writes the format; validating lines before they are written is the
run driver's job (engine/run.py `archive_files`), replaying them the batch path's
(engine/fast/columns.py).
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import getitem
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.ingest.jsonl import JsonlFiles
from engine.records import InputLine
from engine.version import __version__

ARCHIVE_FORMAT = 3  # 2: `id_hash`; 3: `production` as columns
READS = (1, 2, 3)  # formats this rectify replays (a format-1 archive's id hashes are made when read)
MANIFEST = "_rectify_archive.json"
ENVELOPE = ("specversion", "id", "source", "type", "subject", "time")
STRINGS = ("outlet", "process", "pollutant", "unit", "period", "flag", "point", "destination")
NUMBERS = ("value", "o2_percent", "volume_m3")
# a `production` object's keys (discharge.measured: `quantity` a number, `unit` and `category` strings)
PRODUCTION = {"quantity": "production_quantity", "unit": "production_unit", "category": "production_category"}
TYPED_TYPES = frozenset({"emission.measured", "discharge.measured"})
_SAFE_INT = 2 ** 53

SCHEMA = pa.schema(
    [("seq", pa.int64()), ("file", pa.string()), ("line", pa.int64()), ("valid", pa.bool_()),
     ("raw", pa.binary()), ("shape", pa.string()), ("epoch", pa.float64()), ("digest", pa.uint64()),
     ("id_hash", pa.uint64())]
    + [(name, pa.string()) for name in ENVELOPE]
    + [(name, pa.string()) for name in STRINGS]
    + [(name, pa.float64()) for name in NUMBERS]
    + [("production_quantity", pa.float64()), ("production_unit", pa.string()), ("production_category", pa.string())]
)
_DATA_COLUMNS = STRINGS + NUMBERS
_PRODUCTION = tuple(PRODUCTION.values())  # columns since format 3
DATA_COLUMNS = (*_DATA_COLUMNS, *_PRODUCTION)  # a typed row's data (`data_of`)
_DICTIONARY = ["file", "shape", "specversion", "source", "type", "subject", "time", *STRINGS, "production_unit",
               "production_category"]


class ArchiveError(Exception):
    """An archive this rectify cannot read or write to; the message says why."""


def is_archive(path: str | Path) -> bool:
    """Whether `path` is an archive directory (it holds a manifest)."""
    return (Path(path) / MANIFEST).is_file()


# ---- rows: typing a line, rebuilding it ------------------------------------------------------

def shape_of(event: Mapping[str, Any]) -> str | None:
    """The key order and number kinds of a reading that fits the typed columns, or None.

    E.g. "specversion,id,source,type,subject,time,data|outlet,pollutant,value:f,unit,period", or
    with "...,volume_m3:f,production{quantity:i,unit,category}" for a `production` object.
    """
    envelope: list[str] = []
    for key, value in event.items():
        if key == "data":
            envelope.append(key)
        elif key in ENVELOPE and type(value) is str:
            envelope.append(key)
        else:
            return None
    data = event.get("data")
    if type(data) is not dict or event.get("type") not in TYPED_TYPES:
        return None
    keys: list[str] = []
    for key, value in data.items():
        if key in STRINGS and type(value) is str:
            keys.append(key)
        elif key in NUMBERS and type(value) is float:
            keys.append(key + ":f")
        elif key in NUMBERS and type(value) is int and -_SAFE_INT <= value <= _SAFE_INT:
            keys.append(key + ":i")
        elif key == "production" and type(value) is dict and value:
            inner = _production_shape(value)
            if inner is None:
                return None
            keys.append(f"production{{{inner}}}")
        else:
            return None
    return ",".join(envelope) + "|" + ",".join(keys)


def _production_shape(production: Mapping[str, Any]) -> str | None:
    keys: list[str] = []
    for key, value in production.items():
        if key == "quantity" and type(value) is float:
            keys.append("quantity:f")
        elif key == "quantity" and type(value) is int and -_SAFE_INT <= value <= _SAFE_INT:
            keys.append("quantity:i")
        elif key in ("unit", "category") and type(value) is str:
            keys.append(key)
        else:
            return None
    return ",".join(keys)


# a shape parsed: the envelope's keys; per data key, (key, column, integer), or for the
# `production` object ("production", None, its keys as (key, column, integer))
_Keys = tuple[tuple[str, str, bool], ...]
_Shape = tuple[tuple[str, ...], tuple[tuple[str, str | None, bool | _Keys], ...]]
_SHAPES: dict[str, _Shape] = {}


def _parsed_keys(keys: str, columns: Mapping[str, str] | None = None) -> _Keys:
    return tuple((name, columns[name] if columns else name, kind == "i")
                 for name, _, kind in (key.partition(":") for key in keys.split(",")))


def _parsed_shape(shape: str) -> _Shape:
    found = _SHAPES.get(shape)
    if found is None:
        envelope, _, data = shape.partition("|")
        keys: list[tuple[str, str | None, bool | _Keys]] = []
        while data:
            if data.startswith("production{"):  # the one object inside data
                inner, _, data = data[len("production{"):].partition("}")
                keys.append(("production", None, _parsed_keys(inner, PRODUCTION)))
                data = data[1:]  # the comma after it, if any
            else:
                key, _, data = data.partition(",")
                keys.extend(_parsed_keys(key))
        found = _SHAPES[shape] = (tuple(envelope.split(",")), tuple(keys))
    return found


def rebuild(row: Mapping[str, Any]) -> dict[str, Any]:
    """The event of a typed row (a mapping of column name to Python value), keys in their order."""
    envelope = _parsed_shape(row["shape"])[0]
    data = data_of(row)
    if type(row) is Row:  # straight from its columns (a finding-heavy replay rebuilds a quarter of its rows)
        columns, i = row._columns, row._index
        return {key: (data if key == "data" else columns[key][i]) for key in envelope}
    return {key: (data if key == "data" else row[key]) for key in envelope}


def data_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The `data` of a typed row, keys in their order: it reads `shape` and the `DATA_COLUMNS` only."""
    data_keys = _parsed_shape(row["shape"])[1]
    if type(row) is Row:
        columns, i = row._columns, row._index
        return {key: (int(columns[column][i]) if kind else columns[column][i]) if column is not None else
                {inner: int(columns[c][i]) if integer else columns[c][i] for inner, c, integer in kind}  # type: ignore[union-attr]
                for key, column, kind in data_keys}
    return {key: (int(row[column]) if kind else row[column]) if column is not None else
            {inner: int(row[c]) if integer else row[c] for inner, c, integer in kind}  # type: ignore[union-attr]
            for key, column, kind in data_keys}


def line_of(row: Mapping[str, Any]) -> bytes:
    """The original line of a row: its raw bytes, or the typed row rebuilt."""
    raw = row["raw"]
    return raw if raw is not None else orjson.dumps(rebuild(row))


def entry_codes(array: pa.DictionaryArray) -> np.ndarray:
    """Each row's entry in the dictionary of a dictionary array, a null row's one past the last:
    a value per entry, with one for null rows appended (`entry_values`), indexed by these gives
    each row's value (one conversion or test per distinct value, not per row)."""
    return pc.fill_null(array.indices, len(array.dictionary)).to_numpy()  # type: ignore[no-any-return]


def entry_values(array: pa.DictionaryArray) -> list[Any]:
    """The values `entry_codes` index: the dictionary's, then None for a null row."""
    return [*array.dictionary.to_pylist(), None]


def python_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """Python values of a column; a dictionary column through its (small) dictionary, whose
    strings are made once, not once per row (pyarrow's own conversion is 20x slower here)."""
    values, codes = _source(column)
    return values[codes].tolist() if codes is not None else values.to_pylist()  # type: ignore[no-any-return]


def _source(column: pa.ChunkedArray | pa.Array) -> tuple[Any, np.ndarray | None]:
    """What a column's Python values are taken from: a dictionary column's values (converted
    once, None for a null row last) and each row's entry among them, or the column as one array."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        return np.array(entry_values(array), dtype=object), entry_codes(array)
    return array, None


class Row(Mapping[str, Any]):
    """One row of a table, read from its converted columns on use."""

    __slots__ = ("_columns", "_index")

    def __init__(self, columns: dict[str, list[Any]], index: int) -> None:
        self._columns, self._index = columns, index

    def __getitem__(self, name: str) -> Any:
        return self._columns[name][self._index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def rows_of(table: pa.Table) -> list[Row]:
    """The rows of a table, each reading Python values from the columns converted once."""
    columns = {name: python_values(table.column(name)) for name in table.column_names}
    return [Row(columns, i) for i in range(table.num_rows)]


def rows_in_order(table: pa.Table, block: int = 1024) -> Iterator[Row]:
    """The rows of a table in order, as `rows_of` gives them, their columns converted `block`
    rows at a time (a dictionary's values once): only a block's Python values are alive at once.

    A finding-heavy window takes a quarter of its 65,536 rows exactly. Converted at once, their
    values (some 600,000 objects) were alive while the window was applied, and each full
    collection of the garbage collector, about every 60,000 rows, went through all of them."""
    columns = _convertible(table)
    for low in range(0, table.num_rows, block):
        converted = _converted(columns, low, block)
        for i in range(min(block, table.num_rows - low)):
            yield Row(converted, i)


Convertible = list[tuple[str, Any, "np.ndarray | None"]]


def _convertible(table: pa.Table) -> Convertible:
    """Per column, what `_converted` takes a block's Python values from (`_source`)."""
    return [(name, *_source(table.column(name))) for name in table.column_names]


def _converted(columns: Convertible, low: int, size: int) -> dict[str, list[Any]]:
    """Rows low..low+size-1 as Python values, by column (the values `python_values` gives)."""
    return {name: values[codes[low:low + size]].tolist() if codes is not None else values.slice(low, size).to_pylist()
            for name, values, codes in columns}


class RowBlocks:
    """Any row of a table, its columns converted a block of rows at a time on first use: rows
    asked for here and there (rows a quiet run takes exactly after all) cost a conversion per
    block, not one per row, which costs about as much as a block's (docs/archive.md). Rows are
    asked for in order, so only the block last converted is kept (a row of another block is
    converted again): a finding-heavy window takes rows of most of its blocks this way."""

    BLOCK = 1024

    def __init__(self, table: pa.Table) -> None:
        self._table = table
        self._columns: Convertible | None = None
        self._number = -1
        self._block: dict[str, list[Any]] = {}

    def __getitem__(self, index: int) -> Row:
        number, offset = divmod(index, self.BLOCK)
        if number != self._number:
            if self._columns is None:
                self._columns = _convertible(self._table)
            self._block = _converted(self._columns, number * self.BLOCK, self.BLOCK)
            self._number = number
        return Row(self._block, offset)


# ---- the manifest ----------------------------------------------------------------------------

@dataclass
class Manifest:
    """What an archive holds: rows, files and how its rows were validated."""

    fingerprint: str
    rows: int = 0
    buckets: int = 16
    files: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    format: int = ARCHIVE_FORMAT
    rectify: str = __version__
    digest: str = ""

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArchiveError(f"{directory}: not a rectify archive (no {MANIFEST})") from None
        except (OSError, ValueError) as exc:
            raise ArchiveError(f"{path}: unreadable manifest: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("format"), int):
            raise ArchiveError(f"{path}: not a rectify archive manifest (no format number)")
        if data["format"] not in READS:
            raise ArchiveError(f"{directory}: archive format {data['format']} (written by rectify "
                               f"{data.get('rectify', '?')}); this rectify {__version__} reads formats "
                               f"{', '.join(map(str, READS))}")
        try:
            return cls(fingerprint=data["fingerprint"], rows=data["rows"], buckets=data["buckets"], files=data["files"],
                       sources=data["sources"], format=data["format"], rectify=data["rectify"], digest=data["digest"])
        except KeyError as exc:
            raise ArchiveError(f"{path}: manifest lacks {exc}") from None

    def save(self, directory: Path) -> None:
        """Written to a temporary file and renamed: a reader sees the old manifest or the new one."""
        path = directory / MANIFEST
        temporary = path.with_suffix(".tmp")
        document = {"format": self.format, "rectify": self.rectify, "fingerprint": self.fingerprint,
                    "digest": self.digest, "rows": self.rows, "buckets": self.buckets, "sources": self.sources,
                    "files": self.files}
        temporary.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, path)


# ---- writing ---------------------------------------------------------------------------------

_NO_DATA: dict[str, Any] = {}
_UNKNOWN_PARTITION = ("unknown", 0)  # lines without a valid event
_STRING_OR_NONE = frozenset({str, type(None)})
_DICT = frozenset({dict})
_MONTH = slice(0, 7)  # of an event time: its partition's month
_UNSEEN = object()


class ArchiveWriter:
    """Appends rows to an archive directory (created when missing). `close()` writes the manifest.

    `fingerprint` names how rows were validated (engine/run.py); appending to an archive
    validated another way is refused. `digest` names the content digest function. Rows come a
    chunk of lines at a time (`add_rows`) and each chunk becomes one Arrow batch at once, in
    input order; every `rows_per_file` rows they are split by partition and written (one part
    file per partition touched), so a write holds at most that many rows in memory.
    """

    def __init__(self, directory: str | Path, fingerprint: str, digest: str, *, buckets: int = 16,
                 rows_per_file: int = 1 << 18) -> None:
        self.directory = Path(directory)
        if is_archive(self.directory):
            self.manifest = Manifest.load(self.directory)
            if self.manifest.format != ARCHIVE_FORMAT:
                raise ArchiveError(f"{self.directory}: archive format {self.manifest.format} (written by rectify "
                                   f"{self.manifest.rectify}); this rectify appends to format {ARCHIVE_FORMAT} "
                                   f"only; write a new archive (`rectify archive {self.directory} --out NEW` "
                                   "writes this one again)")
            if self.manifest.fingerprint != fingerprint or self.manifest.digest != digest:
                raise ArchiveError(
                    f"{self.directory}: the archive was validated by rectify {self.manifest.rectify} with other "
                    f"schemas, plugins or options (fingerprint {self.manifest.fingerprint[:19]}, this run "
                    f"{fingerprint[:19]}); write a new archive")
        else:
            if self.directory.exists() and (not self.directory.is_dir() or any(self.directory.iterdir())):
                raise ArchiveError(f"{self.directory}: exists and is not an empty directory or a rectify archive")
            self.directory.mkdir(parents=True, exist_ok=True)
            self.manifest = Manifest(fingerprint=fingerprint, buckets=buckets, digest=digest)
        self.rows_per_file = rows_per_file
        self._pending: list[pa.RecordBatch] = []  # rows not written yet, in input order
        self._partitions: list[tuple[str, int]] = []  # the partition of each
        self._shapes: dict[tuple[Any, ...], str | None] = {}  # `_shape`'s
        self._simple_shapes: dict[tuple[Any, ...], str | None] = {}  # `_shapes_of`'s
        self._buckets: dict[str, int] = {}
        self._part = len(self.manifest.files)
        self.typed = 0  # rows of this write kept as typed columns

    @property
    def next_seq(self) -> int:
        return self.manifest.rows

    def add_rows(self, files: Sequence[str], lines: Sequence[int], raws: Sequence[bytes], events: Sequence[Any],
                 epochs: Sequence[float | None], digests: Sequence[int | None],
                 id_hashes: Sequence[int | None]) -> None:
        """Input lines in input order, one row each: where the line came from (`files`, `lines`),
        its bytes, and `events[i]` the valid event line i holds (parsed), or None for a line that
        is not valid (kept raw, quarantined when replayed); for a valid event its event time,
        content digest and id hash. Written out whenever `rows_per_file` rows are buffered."""
        start = 0
        while start < len(raws):
            stop = min(len(raws), start + self.rows_per_file - len(self._partitions))
            self._add(files[start:stop], lines[start:stop], raws[start:stop], events[start:stop], epochs[start:stop],
                      digests[start:stop], id_hashes[start:stop])
            start = stop
            if len(self._partitions) >= self.rows_per_file:
                self.flush()

    def _add(self, files: Sequence[str], lines: Sequence[int], raws: Sequence[bytes], events: Sequence[Any],
             epochs: Sequence[float | None], digests: Sequence[int | None], id_hashes: Sequence[int | None]) -> None:
        """A chunk's rows as one Arrow batch, column by column (C loops over the chunk: `map(dict.get,
        ...)`, one `pa.array` per column), and the partition of each row for `flush`."""
        n = len(raws)
        present = [_NO_DATA if event is None else event for event in events]  # valid events are objects
        shapes = self._shapes_of(present, raws)
        typed = [shape is not None for shape in shapes]
        self.typed += typed.count(True)
        columns: dict[str, Any] = {
            "seq": np.arange(self.manifest.rows, self.manifest.rows + n, dtype=np.int64), "file": files,
            "line": lines, "valid": [event is not None for event in events],
            "raw": [None if kept else raw for kept, raw in zip(typed, raws)], "shape": shapes, "epoch": epochs,
            "digest": digests, "id_hash": id_hashes}
        for name in ENVELOPE:  # a valid event's envelope strings (anything else a raw row's bytes hold)
            column = list(map(dict.get, present, repeat(name)))
            if not _STRING_OR_NONE.issuperset(map(type, column)):
                column = [value if type(value) is str else None for value in column]
            columns[name] = column
        datas = [event["data"] if kept else _NO_DATA for event, kept in zip(present, typed)]
        for name in _DATA_COLUMNS:
            columns[name] = list(map(dict.get, datas, repeat(name)))
        productions = [data.get("production") or _NO_DATA for data in datas]
        for key, name in PRODUCTION.items():
            columns[name] = list(map(dict.get, productions, repeat(key)))
        batch = pa.RecordBatch.from_arrays([pa.array(columns[field.name], type=field.type) for field in SCHEMA],
                                           schema=SCHEMA)
        self._pending.append(batch)
        self._partitions.extend(self._partitions_of(events, columns["time"], columns["subject"]))
        sources = self.manifest.sources
        for file in dict.fromkeys(files):
            if file not in sources:
                sources.append(file)
        self.manifest.rows += n

    def _partitions_of(self, events: Sequence[Any], times: list[Any], subjects: list[Any]) -> list[tuple[str, int]]:
        """Each row's partition: the month of a valid event's time (as written) and its
        enterprise's bucket (crc32 of the subject, remembered per subject); "unknown" for the rest."""
        buckets: list[Any] = list(map(self._buckets.get, subjects))
        for i in [i for i, bucket in enumerate(buckets) if bucket is None and events[i] is not None]:
            buckets[i] = self._buckets[subjects[i]] = zlib.crc32(str(subjects[i]).encode()) % self.manifest.buckets
        if None not in events:
            return list(zip(map(getitem, times, repeat(_MONTH)), buckets))
        return [_UNKNOWN_PARTITION if event is None else (time[:7], bucket)
                for event, time, bucket in zip(events, times, buckets)]

    def _shapes_of(self, events: list[dict[str, Any]], raws: Sequence[bytes]) -> list[str | None]:
        """Each row's shape (`shape_of`), None for a row kept raw: not a valid reading that fits the
        typed columns, or a line spelt otherwise than orjson writes its event (checked for the
        whole chunk at once: equal joined texts are equal lines, each line being one JSON value).

        A shape is remembered by the key order and value types of the event and its data, which
        decide it unless the data holds an object or an integer (then `_shape` looks at the values)."""
        shapes: list[str | None] = [None] * len(events)
        candidates = list(compress(range(len(events)), map(TYPED_TYPES.__contains__,
                                                              map(dict.get, events, repeat("type")))))
        picked = list(map(events.__getitem__, candidates))
        datas: list[Any] = list(map(dict.get, picked, repeat("data")))
        if not _DICT.issuperset(map(type, datas)):
            kept = [p for p, data in enumerate(datas) if type(data) is dict]
            candidates, picked, datas = [candidates[p] for p in kept], [picked[p] for p in kept], [datas[p] for p in kept]
        keys = list(zip(map(tuple, picked), map(tuple, map(map, repeat(type), map(dict.values, picked))),
                        map(tuple, datas), map(tuple, map(map, repeat(type), map(dict.values, datas)))))
        chosen = []
        found: Any
        for i, key, found in zip(candidates, keys, map(self._simple_shapes.get, keys, repeat(_UNSEEN))):
            shape: str | None = found
            if found is _UNSEEN:
                if dict in key[3] or int in key[3]:  # decided by values too: never remembered here
                    shape = self._shape(events[i])
                else:
                    shape = shape_of(events[i])
                    if len(self._simple_shapes) < 4096:
                        self._simple_shapes[key] = shape
            if shape is not None:
                shapes[i] = shape
                chosen.append(i)
        if chosen and orjson.dumps([events[i] for i in chosen]) != b"[" + b",".join([raws[i] for i in chosen]) + b"]":
            for i in chosen:
                if orjson.dumps(events[i]) != raws[i]:
                    shapes[i] = None  # spelt differently from what orjson writes: keep the bytes
        return shapes

    def _shape(self, event: Mapping[str, Any]) -> str | None:
        """`shape_of`, remembered by key order and value types (a log has a handful of shapes)."""
        data = event.get("data")
        if type(data) is not dict:
            return None
        production = data.get("production")
        key = (tuple(event), tuple(map(type, event.values())), tuple(data), tuple(map(type, data.values())),
               event.get("type"), tuple(production) if type(production) is dict else None,
               tuple(map(type, production.values())) if type(production) is dict else None)
        found = self._shapes.get(key, _UNSEEN)
        if found is _UNSEEN:
            found = shape_of(event)
            if len(self._shapes) < 4096:
                self._shapes[key] = found
        if found is not None and any(type(v) is int and not -_SAFE_INT <= v <= _SAFE_INT for v in data.values()):
            return None
        if found is not None and type(production) is dict and type(production.get("quantity")) is int \
                and not -_SAFE_INT <= production["quantity"] <= _SAFE_INT:
            return None
        return found  # type: ignore[return-value]

    def flush(self) -> None:
        """Write the buffered rows: one new part file per partition touched (its rows in input order)."""
        if not self._pending:
            return
        rows = pa.Table.from_batches(self._pending, schema=SCHEMA)
        distinct: dict[tuple[str, int], Any] = dict.fromkeys(sorted(set(self._partitions)))
        for number, partition in enumerate(distinct):
            distinct[partition] = number
        codes = np.fromiter(map(distinct.__getitem__, self._partitions), dtype=np.intp, count=len(self._partitions))
        if len(distinct) > 1:  # one take puts each partition's rows together, then zero-copy slices
            rows = rows.take(pa.array(np.argsort(codes, kind="stable")))
        ends = np.cumsum(np.bincount(codes, minlength=len(distinct))).tolist()
        for (month, bucket), start, end in zip(distinct, [0, *ends], ends):
            folder = self.directory / f"month={month}" / f"bucket={bucket:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{self._part:05d}.parquet"
            self._part += 1
            table = rows.slice(start, end - start).replace_schema_metadata(
                {"rectify.archive.format": str(ARCHIVE_FORMAT), "rectify.version": __version__})
            pq.write_table(table, folder / name, compression="zstd", row_group_size=1 << 16,
                           use_dictionary=_DICTIONARY, write_statistics=["seq"], write_page_checksum=True)
            seq = table.column("seq")
            self.manifest.files.append({"path": f"month={month}/bucket={bucket:02d}/{name}", "rows": table.num_rows,
                                        "seq_min": seq[0].as_py(), "seq_max": seq[-1].as_py(), "month": month,
                                        "bucket": bucket})
        self._pending.clear()
        self._partitions.clear()

    def close(self) -> None:
        self.flush()
        self.manifest.save(self.directory)


# ---- reading ---------------------------------------------------------------------------------

class Archive:
    """An archive directory as input: iterates like `read_jsonl` over the lines it was made from
    (rebuilt), and the batch path reads its columns (`tables`).

    Raises ArchiveError for a directory that is not an archive this rectify can read, or whose
    files are missing or of another format.
    """

    def __init__(self, directory: str | Path, window: int = 1 << 16) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.load(self.directory)
        self.window = window
        for entry in self.manifest.files:
            if not (self.directory / entry["path"]).is_file():
                raise ArchiveError(f"{self.directory}: part file {entry['path']} is missing")
        self.paths = [str(self.directory)]

    @property
    def rows(self) -> int:
        return self.manifest.rows

    def identity(self) -> dict[str, Any]:
        """What tells this archive from another without reading a row (the manifest and one
        `stat` per part file): {"rows", "writer" (rectify version and format), "fingerprint" (of
        the validation), "digest" (the content digest function), "files": [[path, rows, bytes],
        ...] by path}. Two machines that see the same archive see the same identity."""
        manifest = self.manifest
        files = []
        for entry in manifest.files:
            try:
                size = (self.directory / entry["path"]).stat().st_size
            except OSError as exc:
                raise ArchiveError(f"{self.directory}: part file {entry['path']}: {exc.strerror or exc}") from None
            files.append([entry["path"], entry["rows"], size])
        return {"rows": manifest.rows, "writer": f"rectify {manifest.rectify}, format {manifest.format}",
                "fingerprint": manifest.fingerprint, "digest": manifest.digest, "files": sorted(files)}

    def trusted_by(self, fingerprint: str, digest: str) -> bool:
        """Whether an engine validating this way may take the archive's `valid`, `epoch` and `digest`."""
        return self.manifest.fingerprint == fingerprint and self.manifest.digest == digest

    def __iter__(self) -> Iterator[InputLine]:
        for table in self.tables():
            for row in rows_of(table):
                yield InputLine(row["file"], row["line"], line_of(row))

    def tables(self, skip: int = 0, columns: Sequence[str] | None = None, stop: int | None = None) -> Iterator[pa.Table]:
        """The rows from `skip` on (up to `stop`, a distributed reader's range), in input order,
        `window` rows per table. While it reads, Arrow allocates from the system allocator
        (`SYSTEM_ALLOCATOR`)."""
        with SYSTEM_ALLOCATOR:
            yield from self._tables(skip, columns, stop)

    def _tables(self, skip: int, columns: Sequence[str] | None, stop: int | None) -> Iterator[pa.Table]:
        files = sorted(self.manifest.files, key=lambda f: f["seq_min"])
        readers: list[_FileRows] = []
        upcoming = 0
        low = skip
        end = self.manifest.rows if stop is None else min(stop, self.manifest.rows)
        while low < end:
            high = min(low + self.window, end)
            while upcoming < len(files) and files[upcoming]["seq_min"] < high:
                if files[upcoming]["seq_max"] >= low:  # a part file wholly before `skip` is not read
                    readers.append(_FileRows(self.directory / files[upcoming]["path"], files[upcoming], columns,
                                             self.manifest.format))
                upcoming += 1
            pieces = [piece for reader in readers for piece in [reader.take_below(low, high)] if piece is not None]
            readers = [reader for reader in readers if not reader.done_below(high)]
            if not pieces:
                raise ArchiveError(f"{self.directory}: rows {low}..{high - 1} are missing; the archive is damaged")
            table = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
            if table.num_rows != high - low:
                raise ArchiveError(f"{self.directory}: rows {low}..{high - 1} are incomplete "
                                   f"({table.num_rows} of {high - low} found); the archive is damaged")
            seq = table.column("seq").to_numpy()
            if len(pieces) > 1 or not np.array_equal(seq, np.arange(low, high)):
                # rows of several partitions (or a damaged one): back into input order, in one copy
                table = table.take(_input_order(seq, low, self.directory))
            yield table.combine_chunks()
            low = high


class _SystemAllocator:
    """Arrow's default memory pool set to the system allocator (glibc's malloc) while archives
    are read, and put back when the last reading ends; entered by `Archive.tables`.

    Arrow's wheels allocate from mimalloc by default, which hands the pages of freed buffers
    back to the kernel soon after and faults them in again for the next window: reading an
    archive spent most of its extra time in the kernel that way (docs/performance.md). The
    pool is process-wide, so the engine's own Arrow work during a replay uses it too; a buffer
    is always freed by the pool that made it, so other Arrow work of the process meanwhile is
    only allocated elsewhere. A pool the process chose is kept: only mimalloc is replaced, and
    nothing when ARROW_DEFAULT_MEMORY_POOL is set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers = 0
        self._before: pa.MemoryPool | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a forked sorting process (engine/fast/workers.py) never waits on the parent's

    def __enter__(self) -> None:
        with self._lock:
            if not self._readers:
                pool = pa.default_memory_pool()
                if pool.backend_name == "mimalloc" and "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
                    self._before = pool
                    pa.set_memory_pool(pa.system_memory_pool())
            self._readers += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._readers -= 1
            if not self._readers and self._before is not None:
                pa.set_memory_pool(self._before)
                self._before = None


SYSTEM_ALLOCATOR = _SystemAllocator()


def _input_order(seq: np.ndarray, low: int, directory: Path) -> np.ndarray:
    """The positions that put a window's rows, whose `seq` should be low..low+n-1 once each, in
    input order: a row's place is its seq - low, so no sort is needed. An ArchiveError for a
    window that holds some seq twice or one outside it (a damaged archive)."""
    count = len(seq)
    if count and (int(seq.min()) < low or int(seq.max()) >= low + count):
        raise ArchiveError(f"{directory}: rows {low}..{low + count - 1} hold a row from outside them; "
                           "the archive is damaged")
    order = np.full(count, -1, dtype=np.int64)
    order[seq - low] = np.arange(count, dtype=np.int64)
    if (order < 0).any():
        raise ArchiveError(f"{directory}: rows {low}..{low + count - 1} hold a row twice; the archive is damaged")
    return order


class _FileRows:
    """The rows of one part file, read a batch at a time in seq order."""

    def __init__(self, path: Path, entry: Mapping[str, Any], columns: Sequence[str] | None,
                 entry_format: int = ARCHIVE_FORMAT) -> None:
        self.path = path
        self.entry = entry
        try:
            dictionary = _DICTIONARY if entry_format >= 3 else [name for name in _DICTIONARY if name not in _PRODUCTION]
            handle = pq.ParquetFile(path, read_dictionary=dictionary, page_checksum_verification=True)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ArchiveError(f"{path}: unreadable part file: {exc}") from None
        metadata = handle.schema_arrow.metadata or {}
        if metadata.get(b"rectify.archive.format") != str(entry_format).encode():
            raise ArchiveError(f"{path}: not a part file of archive format {entry_format}")
        if columns and not set(columns) <= set(handle.schema_arrow.names):
            columns = [name for name in columns if name in handle.schema_arrow.names]  # e.g. no `id_hash` in format 1
        self._batches = handle.iter_batches(batch_size=1 << 16, columns=list(columns) if columns else None)
        self._buffer: pa.Table | None = None
        self._seq: np.ndarray = np.empty(0, dtype=np.int64)
        self._exhausted = False

    def done_below(self, high: int) -> bool:
        return int(self.entry["seq_max"]) < high

    def take_below(self, low: int, high: int) -> pa.Table | None:
        """Rows with low <= seq < high (rows below `low` are dropped: a resumed run)."""
        pieces = []
        while True:
            if self._buffer is None or self._buffer.num_rows == 0:
                if self._exhausted:
                    break
                try:
                    batch = next(self._batches, None)
                except (OSError, pa.ArrowInvalid) as exc:  # a page that does not decode (e.g. changed bytes)
                    raise ArchiveError(f"{self.path}: unreadable part file: {exc}") from None
                if batch is None:
                    self._exhausted = True
                    break
                self._buffer = pa.Table.from_batches([batch])
                self._seq = self._buffer.column("seq").to_numpy()
            start = int(np.searchsorted(self._seq, low))
            stop = int(np.searchsorted(self._seq, high))
            if stop > start:
                pieces.append(self._buffer.slice(start, stop - start))
            if stop < len(self._seq):
                self._buffer, self._seq = self._buffer.slice(stop), self._seq[stop:]
                break
            self._buffer = None
        if not pieces:
            return None
        return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)


def event_sources(paths: Sequence[str | Path]) -> list[JsonlFiles | Archive]:
    """Event inputs named by paths, in their order: runs of JSONL files ('-' is standard input)
    and archives (directories made by `rectify archive`). ArchiveError for a directory that is
    not an archive this rectify can read."""
    sources: list[JsonlFiles | Archive] = []
    files: list[str] = []
    for path in paths:
        name = str(path)
        if name != "-" and Path(name).is_dir():
            if files:
                sources.append(JsonlFiles(files))
                files = []
            sources.append(Archive(name))
        else:
            files.append(name)
    if files:
        sources.append(JsonlFiles(files))
    return sources
