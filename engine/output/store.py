"""The embedded default store: findings, decisions and quarantine records in SQLite (WAL).

One table of records in output order (`seq`), each the exact JSON line a JSONL log would hold
(with its `prev`/`hash` chain fields), plus columns indexed for queries by enterprise, list,
action, rule and time. `export` writes the records back out as a chained JSONL log, byte for
byte what `rectify run --out` writes.

Crash safety: the run driver (engine/run.py) writes the records of N input lines and a
checkpoint (input offset + engine snapshot) in one transaction. A run killed at any moment
leaves the store at its last checkpoint; started again with the same store it restores the
engine, skips the lines already done and ends with exactly the records of an uninterrupted
run.

A live service (engine/serve/) also keeps every input it accepted, in arrival order, in
`events` (`seq`, `source`, the line as the engine read it, or the quarantine record a source
made of a bad packet), written in the same transaction as the records they gave: `inputs()`
hands them back as the engine's input, for a restart and for `rectify replay --verify STORE`.
Its checkpoints are files beside the store (`STORE.checkpoint-SEQ`, written and synced by
`write_checkpoint_file`, ending with their SHA-256), named in the store's meta table by
`keep_checkpoint_file` in a short transaction: tens of megabytes of snapshot never pass
through the store's transactions (a service's writes wait for nothing that large). The events
kept make the file an accelerator only: without it a restart replays every kept event.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from engine.normalise.readings import epoch_of
from engine.output.chain import GENESIS, ChainedWriter
from engine.records import InputLine, Quarantined

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    id TEXT,
    enterprise TEXT,
    list TEXT,
    action TEXT,
    rule TEXT,
    time TEXT,
    epoch REAL,
    hash TEXT NOT NULL,
    line BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_enterprise ON records (enterprise, epoch);
CREATE INDEX IF NOT EXISTS records_list ON records (list, action);
CREATE INDEX IF NOT EXISTS records_action ON records (action);
CREATE INDEX IF NOT EXISTS records_rule ON records (rule);
CREATE INDEX IF NOT EXISTS records_epoch ON records (epoch);
CREATE INDEX IF NOT EXISTS records_id ON records (id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    offset INTEGER NOT NULL,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    rejected INTEGER NOT NULL DEFAULT 0,
    line BLOB NOT NULL
);
"""


SQLITE_MAGIC = b"SQLite format 3\x00"


def is_store(path: str) -> bool:
    """Whether a file is a SQLite database (a store) rather than a JSONL log."""
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def binary_problem(path: str) -> str | None:
    """Why a file that is not a SQLite store cannot be a JSONL log either, or None: a log is
    text, so NUL bytes in its first 64 KiB mean a damaged store (e.g. an overwritten header)."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(1 << 16)
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if b"\x00" in start:
        return (f"it holds NUL bytes, so it is no JSONL log, and it does not start with the SQLite header "
                f"(starts with {start[:16]!r}): a store whose header was overwritten?")
    return None


def log_lines(path: str) -> list[bytes]:
    """A decision log's lines: a JSONL file, or the records of a SQLite store (DamagedStore if
    the file is neither)."""
    if not is_store(path):
        problem = binary_problem(path)
        if problem is not None:
            raise DamagedStore(f"{path}: {problem}")
    if is_store(path):
        with Store(path) as store:
            try:
                return list(store.lines())
            except sqlite3.DatabaseError as exc:
                raise damaged(path, exc) from None
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    return lines[:-1] if data.endswith(b"\n") or not data else lines  # an empty file holds no line


class StoreError(RuntimeError):
    """The store does not fit the run (other rule set or input), or is already complete."""


class CheckpointFileError(StoreError):
    """The checkpoint file a store names is missing, unreadable or not whole (its digest differs)."""


CHECKPOINT_TRAILER = b"\n#sha256:"


def checkpoint_file(store_path: str | Path, seq: int) -> Path:
    """Where a service's checkpoint after input `seq` lives: beside the store."""
    return Path(f"{store_path}.checkpoint-{seq}")


def write_checkpoint_file(path: Path, state: bytes) -> None:
    """`state` (a snapshot) to `path` for good: written to `path.partial` with its SHA-256 after
    it, synced, renamed, the directory synced. A crash leaves either no `path` or a whole one."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        handle.write(state)
        handle.write(CHECKPOINT_TRAILER + hashlib.sha256(state).hexdigest().encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_checkpoint_file(path: Path) -> bytes:
    """The snapshot in a checkpoint file; CheckpointFileError if it is missing or not whole."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointFileError(f"checkpoint file {path}: {exc.strerror or exc}") from None
    state, found, digest = data.rpartition(CHECKPOINT_TRAILER)
    if not found or digest.rstrip(b"\n").decode("ascii", "replace") != hashlib.sha256(state).hexdigest():
        raise CheckpointFileError(f"checkpoint file {path} is not whole (its SHA-256 does not match)")
    return state


class DamagedStore(StoreError):
    """A file that is not a readable rectify store: not SQLite, truncated, or corrupt. Says which
    file and what SQLite found (`reason`)."""

    reason: str = ""


def damaged(path: str, error: BaseException) -> DamagedStore:
    """The DamagedStore error for a SQLite error met while using the store at `path`."""
    found = DamagedStore(f"{path} is damaged or not a rectify store (SQLite: {error}); "
                         f"`rectify verify --store {path}` checks it")
    found.reason = str(error)
    return found


class Store:
    """A SQLite decision store. Not thread-safe: one writer, as SQLite wants.

    Opening a file that is not a SQLite database, or whose pages SQLite cannot read, raises
    DamagedStore; `integrity()` runs SQLite's own check of every page and index. A SQLite
    error met later (a store damaged while open) is `sqlite3.DatabaseError`: callers turn it
    into DamagedStore with `damaged(path, error)`.

    `readonly`: a reader beside the writer (WAL lets it read committed data while the writer
    writes); it may be closed from another thread than the one that used it.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        try:
            if readonly:
                uri = Path(self.path).resolve().as_uri() + "?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                return
            self.db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise damaged(self.path, exc) from None
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process kill
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise damaged(self.path, exc) from None

    def manual_checkpoints(self, manual: bool = True) -> None:
        """Turn this connection's automatic WAL checkpoints off (a `WalCheckpointer` does them) or on."""
        self.db.execute(f"PRAGMA wal_autocheckpoint={0 if manual else 1000}")

    def integrity(self) -> list[str]:
        """What SQLite's integrity check finds wrong (every page, index and constraint): [] when sound."""
        try:
            rows = [row[0] for row in self.db.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [] if rows == ["ok"] else rows

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing ---------------------------------------------------------------------------

    def write(self, record: Mapping[str, Any]) -> None:
        """Insert one chained record (a sink for ChainedWriter)."""
        time = record.get("time")
        self.db.execute(
            "INSERT INTO records (record, id, enterprise, list, action, rule, time, epoch, hash, line)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.get("record"), record.get("id"), record.get("enterprise"), record.get("list"), record.get("action"),
             record.get("rule"), time, epoch_of(time) if isinstance(time, str) else None, record["hash"],
             orjson.dumps(record)),
        )

    def sink(self) -> _StoreSink:
        """A sink (write/close) inserting records into this store."""
        return _StoreSink(self)

    def writer(self) -> ChainedWriter:
        """A ChainedWriter continuing this store's chain."""
        return ChainedWriter(self.sink(), prev=self.head())

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def save_checkpoint(self, offset: int, state: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO checkpoint (one, offset, state) VALUES (1, ?, ?)", (offset, state))

    def keep_checkpoint_file(self, offset: int, path: Path, records: int) -> None:
        """Name a checkpoint file (written by `write_checkpoint_file`, beside the store) as the
        checkpoint after input `offset`, with `records` records (call inside a transaction)."""
        self.set_meta("checkpoint_file", {"offset": offset, "file": path.name, "records": records})
        self.db.execute("DELETE FROM checkpoint")

    def checkpoint_file(self) -> Path | None:
        """The checkpoint file the store names, or None."""
        kept = self.meta("checkpoint_file")
        return None if kept is None else Path(self.path).with_name(kept["file"])

    def checkpoint(self) -> tuple[int, bytes] | None:
        """(input offset, snapshot) of the last checkpoint, or None. A checkpoint file that is
        missing or not whole raises CheckpointFileError."""
        kept = self.meta("checkpoint_file")
        if kept is not None:
            return int(kept["offset"]), read_checkpoint_file(Path(self.path).with_name(kept["file"]))
        row = self.db.execute("SELECT offset, state FROM checkpoint WHERE one = 1").fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def checkpoint_records(self) -> int:
        """How many records the store held at its last checkpoint (0 without one)."""
        kept = self.meta("checkpoint_file")
        return int(kept["records"]) if kept is not None else int(self.meta("checkpoint_records") or 0)

    def add_events(self, rows: Iterable[tuple[int, str, bool, bytes]]) -> None:
        """Keep accepted inputs: (seq, source, rejected by its source, line) each."""
        self.db.executemany("INSERT INTO events (seq, source, rejected, line) VALUES (?, ?, ?, ?)", rows)

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, orjson.dumps(value).decode()))

    def meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def registry(self) -> dict[str, Any]:
        """The enterprises' registrations the run knew (names for people's outputs): saved when the
        run completed, from the checkpoint while it runs; {} for a store made before either."""
        saved = self.meta("registry")
        if isinstance(saved, dict):
            return saved
        try:
            found = self.checkpoint()
        except CheckpointFileError:
            return {}
        if found is not None:
            state = orjson.loads(found[1])
            registry = (state.get("enterprises") or {}).get("registry") if isinstance(state, dict) else None
            if isinstance(registry, dict):
                return registry
        return {}

    # ---- reading ---------------------------------------------------------------------------

    def head(self) -> str:
        row = self.db.execute("SELECT hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        return GENESIS if row is None else row[0]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM records").fetchone()[0])

    def last_event(self) -> int:
        """The seq of the last input kept (0 for none)."""
        return int(self.db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def inputs(self, after: int = 0) -> Iterator[InputLine | Quarantined]:
        """The inputs kept after `after`, in arrival order, as the engine reads them: each line
        numbered by its seq, a source's quarantine record as it was made."""
        rows = self.db.execute("SELECT seq, source, rejected, line FROM events WHERE seq > ? ORDER BY seq", (after,))
        for seq, source, rejected, line in rows:
            if rejected:
                record = orjson.loads(line)
                yield Quarantined(line=record["line"], source=record["source"], raw=record["raw"], error=record["error"])
            else:
                yield InputLine(source=source, number=seq, text=bytes(line))

    def page(self, *, after: int = 0, limit: int = 100, enterprise: str | None = None,
             record: str | None = None) -> list[tuple[int, bytes]]:
        """Up to `limit` records after seq `after`, in output order, as (seq, JSON line)."""
        where, args = ["seq > ?"], [after]
        for column, value in (("enterprise", enterprise), ("record", record)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT seq, line FROM records WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        return [(seq, bytes(line)) for seq, line in self.db.execute(sql, (*args, limit))]

    def lines(self) -> Iterator[bytes]:
        """Every record in output order, as its JSON line (no newline)."""
        for (line,) in self.db.execute("SELECT line FROM records ORDER BY seq"):
            yield bytes(line)

    def export(self, stream: IO[bytes]) -> int:
        """The records as a chained JSONL log; returns how many."""
        count = 0
        for line in self.lines():
            stream.write(line + b"\n")
            count += 1
        return count

    def find(self, record_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT line FROM records WHERE id = ? ORDER BY seq LIMIT 1", (record_id,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def query(self, *, enterprise: str | None = None, list: str | None = None, action: str | None = None,
              rule: str | None = None, since: str | None = None, until: str | None = None,
              record: str | None = None) -> Iterator[dict[str, Any]]:
        """Records matching every filter given, in output order. `since`/`until` (RFC 3339) bound
        event time, inclusive."""
        where, args = [], []
        for column, value in (("enterprise", enterprise), ("list", list), ("action", action), ("rule", rule),
                              ("record", record)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("epoch >= ?")
            args.append(epoch_of(since))
        if until is not None:
            where.append("epoch <= ?")
            args.append(epoch_of(until))
        sql = "SELECT line FROM records" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        for (line,) in self.db.execute(sql, args):
            yield orjson.loads(line)


class WalCheckpointer:
    """Copies a store's write-ahead log into the database file from a thread of its own, so a
    live writer's commits never do it. SQLite's automatic checkpoint runs inside the COMMIT that
    takes the log past 1,000 pages, with two fsyncs: measured here, commits of 250 events every
    few milliseconds took 0.1 ms at the median and 15-60 ms whenever one did the checkpoint.

    In: the store's path; the writer's own connection must have turned its automatic
    checkpoints off (`Store.manual_checkpoints`). Every `interval` seconds the thread runs a
    PASSIVE checkpoint (it never blocks the writer; SQLite releases the GIL while it copies and
    syncs), so the log starts over whenever a checkpoint catches up between two commits. Should
    the log still pass `limit` frames, a TRUNCATE checkpoint makes the writer wait for one copy.
    A failure ends the thread and is kept in `error` (the writer then checkpoints again itself).
    Crash safety is SQLite's: a checkpoint killed half way is redone from the log.
    """

    def __init__(self, path: str | Path, *, interval: float = 0.02, limit: int = 32768) -> None:
        self.path, self.interval, self.limit = str(path), interval, limit
        self.error: BaseException | None = None
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rectify-wal-checkpoint", daemon=True)

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self.error = exc
            return
        try:
            while not self._stop.wait(self.interval):
                _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.checkpoints += 1
                if frames > self.limit:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            self.error = exc
        finally:
            db.close()


class _StoreSink:
    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, record: dict[str, Any]) -> None:
        self.store.write(record)

    def close(self) -> None:
        pass


def difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two run configurations, key by key."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: stored {old.get(k)!r}, now {new.get(k)!r}" for k in keys)
