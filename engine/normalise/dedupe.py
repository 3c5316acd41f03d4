"""Duplicate detection by event id (the CloudEvents idempotency key), with bounded memory.

The same id with the same content is a duplicate; with other content it is an error. Ids
are remembered for an event-time horizon behind the stream's clock (default 7 days), so
memory follows the event rate and the number of enterprises, not the length of the log.
The clock is the guarded event-time clock (engine/normalise/clock.py), handed in with
`advance`: a far-future event that did not move it cannot make the index forget the ids
of everyone else.
An event older than the horizon cannot be checked against ids already forgotten: it is
processed and counted (`beyond_dedupe_horizon` in the summary), never dropped silently.
`horizon_days=None` keeps every id (memory grows with the log).

Ids come in two ways. One at a time (`check`, and `add_new` for the JSONL batch path's quiet
lines) they are kept in a dict of Python strings. A window of an archive's quiet rows comes as
columns (`IdColumns`: Arrow strings, each id's `id_hash`, digests, times) and stays columns:
sorted blocks of 64-bit id hashes, the ids beside them as Arrow strings, and a bitmap of the
hashes in front, so an id is looked up by its hash and then compared exactly. Neither way makes
a Python object per quiet row. The hash only says where to look, so a collision costs a compare,
never a wrong verdict; nothing stores it (`state()` writes the ids).

Ids are forgotten in steps: each time the clock reaches a new multiple of half the horizon
(counted from the Unix epoch) the ids older than that multiple minus the horizon are purged. So
what is remembered at a line depends on the clock's value before it and before the id's own
line, not on the path the clock took: a partition holding some of the ids
(engine/distributed/) forgets exactly what one machine forgets, told only the few places
where the clock reached a new step (`steps`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from enum import Enum
from operator import le
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from engine.state import finite, infinite

DAY = 86400.0


class Seen(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


Verdict = tuple[bool, Seen]  # (beyond the horizon when it arrived, new / duplicate / conflict)


_xxh3, _dumps, _SORTED = xxhash.xxh3_64_intdigest, orjson.dumps, orjson.OPT_SORT_KEYS
DIGEST = "xxh3_64(orjson sorted-key JSON)"  # what a digest is; archives and snapshots name it


def content_digest(event: Any) -> int:
    """What "the same content" means for an id: XXH3-64 of the event's sorted-key JSON, an
    unsigned 64-bit int. XXH3 is a specified, seedless hash (same value in every process,
    version and platform), so snapshots and archives that store digests stay valid."""
    return _xxh3(_dumps(event, option=_SORTED))


def canonical_json(event: Any) -> bytes:
    """The event's sorted-key JSON, the text `content_digest` hashes (`digest_of`)."""
    return _dumps(event, option=_SORTED)


def digest_of(canonical: bytes) -> int:
    """`content_digest` of the event whose `canonical_json` this is."""
    return _xxh3(canonical)


def digests_of(canonicals: Iterable[bytes]) -> list[int]:
    """`digest_of` each of these `canonical_json` texts, in one C loop."""
    return list(map(_xxh3, canonicals))


def id_hash(event_id: str) -> int:
    """Where the index looks an id up among those it keeps as columns: XXH3-64 of its UTF-8, an
    unsigned 64-bit int (the archive stores it beside each typed row, engine/ingest/archive.py)."""
    return _xxh3(event_id.encode("utf-8", "surrogatepass"))


def id_hashes(ids: Iterable[str]) -> np.ndarray:
    """`id_hash` of each id, as a uint64 array."""
    return np.fromiter(map(id_hash, ids), dtype=np.uint64)


def content_digests(events: Iterable[Any]) -> list[int]:
    """`content_digest` of each event, in one loop (the batch path; tests/test_batch.py checks they agree)."""
    return [_xxh3(_dumps(event, option=_SORTED)) for event in events]


def hash_order(keys: np.ndarray) -> np.ndarray:
    """Positions of `keys` (uint64 hashes) in ascending order, equal keys in their own order: the
    same order on every platform. numpy's unstable sort is five times faster than its stable
    one here, and, keys being hashes, ties (where the two could differ) all but never occur:
    then the stable sort decides."""
    order = np.argsort(keys)
    ranked = keys[order]
    if len(ranked) > 1 and (ranked[1:] == ranked[:-1]).any():
        order = np.argsort(keys, kind="stable")
    return order


class IdColumns:
    """Ids known to be new, as columns by position (a window of an archive's quiet rows): `ids`
    Arrow strings, `hashes` their `id_hash` (uint64; another hash would hide them from `check`),
    `digests` content digests (uint64), `epochs` event times (float64).
    `DedupeIndex.add_columns` remembers ranges of them."""

    __slots__ = ("_late_before", "_order", "added", "digests", "epochs", "hashes", "ids", "late")

    def __init__(self, ids: pa.Array, hashes: np.ndarray, digests: np.ndarray, epochs: np.ndarray) -> None:
        if not len(ids) == len(hashes) == len(digests) == len(epochs):
            raise ValueError("IdColumns: ids, hashes, digests and epochs differ in length")
        self.ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        self.digests = np.ascontiguousarray(digests, dtype=np.uint64)
        self.epochs = np.ascontiguousarray(epochs, dtype=np.float64)
        self.added = np.zeros(len(ids), dtype=bool)  # remembered, not yet moved into a block
        self._order: np.ndarray | None = None
        self.late: np.ndarray | None = None  # rows that may yet be taken one by one (`hold`)
        self._late_before: list[int] = []

    def hold(self, late: np.ndarray) -> None:
        """Rows that may yet be taken one by one, not added (e.g. an enterprise's whose next event
        decides): `DedupeIndex` marks them in its bitmap only if they are added, so its `check`
        of such a row does not search every block for an id no block holds. Before `add_columns`."""
        if late.any():
            self.late = late
            self._late_before = np.concatenate(([0], np.cumsum(late))).tolist()

    def marked(self) -> np.ndarray:
        """The hashes `DedupeIndex` marks when the window comes: all but the `late` rows not added."""
        return self.hashes if self.late is None else self.hashes[~self.late | self.added]

    def late_among(self, first: int, last: int) -> np.ndarray | None:
        """The hashes of the `late` rows among rows first..last-1, or None without one."""
        if self.late is None or self._late_before[last] == self._late_before[first]:
            return None
        return self.hashes[first:last][self.late[first:last]]

    def __len__(self) -> int:
        return len(self.hashes)

    def order(self) -> np.ndarray:
        """Positions by hash (`hash_order`, made once)."""
        if self._order is None:
            self._order = hash_order(self.hashes)
        return self._order


class _Block:
    """Ids remembered as columns, sorted by `id_hash` (`keys`, with their `digests` and `epochs`);
    the ids themselves stay where they came (a window's Arrow strings, copied by nobody): the
    key at i is the hash of `ids[rows[i]]`. `lane`: the bit its ids are marked with in the
    index's bitmap (`_lane`)."""

    __slots__ = ("digests", "epochs", "ids", "keys", "lane", "rows")

    def __init__(self, keys: np.ndarray, ids: pa.Array, rows: np.ndarray, digests: np.ndarray, epochs: np.ndarray,
                 lane: int = 0) -> None:
        self.keys, self.ids, self.rows, self.digests, self.epochs, self.lane = keys, ids, rows, digests, epochs, lane

    @classmethod
    def by_hash(cls, keys: np.ndarray, ids: pa.Array, digests: np.ndarray, epochs: np.ndarray) -> _Block:
        """A block of these ids (`keys` their hashes), sorted by hash (marked by `_mark_all`)."""
        order = hash_order(keys)
        return cls(keys[order], ids, order, digests[order], epochs[order])

    def __len__(self) -> int:
        return len(self.keys)

    def ids_at(self, positions: np.ndarray) -> pa.Array:
        """The ids of these positions (in hash order)."""
        return self.ids.take(self.rows[positions])

    def listed(self) -> pa.Array:
        """The block's ids in hash order."""
        return self.ids_at(np.arange(len(self.keys)))

    def kept(self, keep: np.ndarray) -> _Block:
        """The block with the ids `keep` marks (a purge). Their strings are copied only when the
        ids kept are fewer than half of those `ids` holds, so what is forgotten is freed."""
        rows = self.rows[keep]
        ids = self.ids
        if 2 * len(rows) < len(ids):
            ids, rows = ids.take(rows), np.arange(len(rows))
        return _Block(self.keys[keep], ids, rows, self.digests[keep], self.epochs[keep], self.lane)

    def find(self, key: np.uint64, event_id: str) -> int | None:
        """The digest of `event_id`, whose hash is `key`, if this block holds it."""
        keys = self.keys
        i = int(np.searchsorted(keys, key))
        while i < len(keys) and keys[i] == key:
            if self.ids[int(self.rows[i])].as_py() == event_id:
                return int(self.digests[i])
            i += 1
        return None


def _digest_of(key: np.uint64, event_id: str, hashes: np.ndarray, order: np.ndarray, ids: pa.Array,
               digests: np.ndarray, added: np.ndarray) -> int | None:
    """The digest of `event_id`, whose hash is `key`, among a window's rows (`hashes` sorted in
    `order`) that are `added`: the rows with its hash, their ids compared (as `_Block.find`)."""
    i = int(np.searchsorted(hashes, key, sorter=order))
    while i < len(hashes):
        row = int(order[i])
        if hashes[row] != key:
            break
        if added[row] and ids[row].as_py() == event_id:
            return int(digests[row])
        i += 1
    return None


_MAX_BLOCKS = 64  # more blocks than this are merged into one (a lookup visits each)
_LANES = 8  # bits of a bitmap slot: the block numbered b (and the window that will become it) sets bit b % 8


def _lane(index: int) -> int:
    """The bit that the block numbered `index` sets in the bitmap slots of its hashes."""
    return 1 << (index % _LANES)


class DedupeIndex:
    """Remembers the content digest and event time of each id within the horizon; purges in event time.

    Besides the id map, ids are kept in the order they came: `_queue` holds those that arrived
    in event-time order (their times never decrease), `_late` the few that arrived older than
    the queue's last. A purge cuts the queue at the horizon (bisect) and filters `_late`, so it
    costs what it removes, not what is remembered. What the index answers depends only on the
    ids remembered, the newest time and the last purge; `state()` writes the queue, then the
    late ids, so a restored index is the same index.

    Ids added as columns (`add_columns`) live in `_blocks` (and, for the window being added,
    `_columns` with the runs in `_pending`); a purge filters the blocks by event time. Whether
    an id is remembered never depends on which way it came.
    """

    def __init__(self, horizon_days: float | None = 7.0) -> None:
        self.horizon = None if horizon_days is None else horizon_days * DAY
        self.step = None if self.horizon is None else self.horizon / 2  # ids are purged each time the clock reaches a new step
        self._ids: dict[str, int] = {}  # id -> content digest
        self._queue: list[str] = []
        self._queue_epochs: list[float] = []
        self._late: dict[str, float] = {}
        self._newest = float("-inf")
        self._purged_at = float("-inf")  # the step the last purge was made at
        self._blocks: list[_Block] = []
        self._columns: IdColumns | None = None  # the window whose rows `add_columns` is adding
        self._pending = 0  # rows of `_columns` added and not yet in a block
        self._in_columns = 0  # ids in blocks and pending
        # per hash prefix, a bit per lane: may a block with that `lane`, or `_columns` (the next block's
        # bit), hold it. A superset: a purge leaves the marks of the ids it drops (`_stale`)
        self._bits: np.ndarray | None = None
        self._serial = 0  # the number the next block gets (its bit: `_lane`)
        self._columns_block = -1  # the number of the block `_columns` is marked for
        self._marked = 0  # hashes marked since the bitmap was made afresh, those purged since too
        self._shift = np.uint64(64)

    def __len__(self) -> int:
        return len(self._ids) + self._in_columns

    def beyond_horizon(self, epoch: float) -> bool:
        """Whether an event this old may have had its duplicate forgotten already."""
        return self.horizon is not None and epoch < self._newest - self.horizon

    def verdict(self, event_id: str, digest: int, epoch: float) -> Verdict:
        """Whether the event is beyond the horizon (`beyond_horizon`), and `check`'s verdict (remembered when new)."""
        horizon = self.horizon
        return horizon is not None and epoch < self._newest - horizon, self.check(event_id, digest, epoch)

    def remembers(self, ids: Iterable[str]) -> set[str]:
        """Which of these ids are remembered now."""
        if not self._in_columns:
            return set(filter(self._ids.__contains__, ids))
        ids = list(ids)
        found = set(filter(self._ids.__contains__, ids))
        found.update(i for i in ids if i not in found and self._column_digest(i) is not None)
        return found

    def remembered(self, columns: IdColumns) -> np.ndarray:
        """Which rows of `columns` have an id remembered now, as a bool array (by column: no
        Python object per row)."""
        self._flush()
        self._columns = None
        found = np.zeros(len(columns), dtype=bool)
        if not len(columns):
            return found
        if self._ids:
            listed = pa.array(list(self._ids), type=pa.string())
            found |= pc.fill_null(pc.is_in(columns.ids, value_set=listed), False).to_numpy(zero_copy_only=False)
        if self._blocks:
            assert self._bits is not None
            slots = self._bits[columns.hashes >> self._shift]
            candidates = np.flatnonzero(slots)
            # by hash: numpy's searchsorted of sorted keys starts each one where the last ended
            candidates = candidates[np.argsort(columns.hashes[candidates])]  # (which row is found is all that counts)
            keys, lanes = columns.hashes[candidates], slots[candidates]
            for block in self._blocks:
                mine = (lanes & block.lane) != 0  # only the rows whose slot has this block's bit
                if not mine.any():
                    continue
                block_rows, block_keys = candidates[mine], keys[mine]
                at = np.minimum(np.searchsorted(block.keys, block_keys), len(block) - 1)
                hit = block.keys[at] == block_keys
                if not hit.any():
                    continue
                rows = block_rows[hit]
                same = pc.equal(block.ids_at(at[hit]), columns.ids.take(rows)).to_numpy(zero_copy_only=False)
                found[rows[same]] = True
                for row in rows[~same].tolist():  # two ids with one hash: look at each
                    found[row] |= self._find(columns.hashes[row], columns.ids[row].as_py(), int(slots[row])) is not None
        return found

    def _column_digest(self, event_id: str) -> int | None:
        """The digest remembered for `event_id` among the ids kept as columns, or None."""
        assert self._bits is not None
        hashed = id_hash(event_id)
        slot = int(self._bits[hashed >> int(self._shift)])
        if not slot:
            return None
        return self._find(np.uint64(hashed), event_id, slot)

    def _find(self, key: np.uint64, event_id: str, slot: int) -> int | None:
        """The digest of `event_id`, whose hash is `key`, among the ids kept as columns: in the
        blocks whose bit its bitmap `slot` has, and the rows of `_columns` added so far."""
        for block in self._blocks:
            if slot & block.lane:
                found = block.find(key, event_id)
                if found is not None:
                    return found
        columns = self._columns
        if columns is not None and self._pending:
            return _digest_of(key, event_id, columns.hashes, columns.order(), columns.ids, columns.digests, columns.added)
        return None

    def check(self, event_id: str, digest: int, epoch: float) -> Seen:
        """Classify an id and remember it when new (the clock moves by `advance`)."""
        previous = self._ids.get(event_id)
        if previous is None and self._in_columns:
            previous = self._column_digest(event_id)
        if previous is not None:
            return Seen.DUPLICATE if previous == digest else Seen.CONFLICT
        self._ids[event_id] = digest
        if not self._queue_epochs or epoch >= self._queue_epochs[-1]:
            self._queue.append(event_id)
            self._queue_epochs.append(epoch)
        else:
            self._late[event_id] = epoch
        return Seen.NEW

    def step_of(self, epoch: float) -> float:
        """The purge step the clock is in at `epoch`: the multiple of half the horizon at or below it."""
        assert self.step is not None
        return math.floor(epoch / self.step) * self.step

    def steps(self, before: float, times: np.ndarray) -> np.ndarray:
        """Where a clock that was at `before` and then at each of `times` (not decreasing) reached a
        new step, i.e. where `advance` purges: the positions in `times` (none without a horizon)."""
        if self.step is None or not len(times):
            return np.empty(0, dtype=np.int64)
        finite = np.where(np.isfinite(times), times, -np.inf)
        steps = np.floor(finite / self.step)
        previous = np.empty_like(steps)
        previous[0] = math.floor(before / self.step) if math.isfinite(before) else -np.inf
        previous[1:] = steps[:-1]
        return np.flatnonzero(steps > previous)

    def advance(self, epoch: float) -> None:
        """The stream's clock moved to `epoch`: the horizon follows (ids behind the step it
        reached, minus the horizon, are purged when it reaches a new step)."""
        if epoch > self._newest:
            self._newest = epoch
            if self.step is not None and self.step_of(epoch) > self._purged_at:
                self._purge(self.step_of(epoch))

    def add_new(self, ids: list[str], digests: list[int], epochs: list[float]) -> int:
        """Remember ids known to be new whose times move the clock (the batch path's quiet events):
        what `check` and `advance` would do for each, in order.

        Returns how many were beyond the horizon when they arrived. When no purge can fall
        due, none is beyond the horizon and the times do not decrease (nearly always), the
        ids are remembered in two bulk steps.
        """
        if not ids:
            return 0
        top = max(epochs)
        newest = max(self._newest, top)
        if (self.horizon is None or (self.step_of(top) <= self._purged_at and min(epochs) >= newest - self.horizon)) \
                and (not self._queue_epochs or epochs[0] >= self._queue_epochs[-1]) and all(map(le, epochs, epochs[1:])):
            self._ids.update(zip(ids, digests))
            self._queue.extend(ids)
            self._queue_epochs.extend(epochs)
            self._newest = newest
            return 0
        beyond = 0
        for event_id, digest, epoch in zip(ids, digests, epochs):
            beyond += self.beyond_horizon(epoch)
            self.check(event_id, digest, epoch)
            self.advance(epoch)
        return beyond

    def add_columns(self, columns: IdColumns, first: int, last: int, top: float, low: float) -> int:
        """`add_new` for rows first..last-1 of `columns` (`top` and `low` their latest and earliest
        times): the ids stay columns. Returns how many were beyond the horizon when they arrived.
        A window's rows are added run by run, in order; they move into a block when the next
        window comes, a purge falls due, or the index is asked about columns or its state."""
        if columns is not self._columns:
            self._flush()
            self._columns = columns
            self._make_room(len(columns))
            self._mark_columns()  # a superset of the rows added does no harm
        if last <= first:
            return 0
        newest = max(self._newest, top)
        if self.horizon is None or (self.step_of(top) <= self._purged_at and low >= newest - self.horizon):
            self._take(columns, first, last)
            self._newest = newest
            return 0
        beyond = 0
        start = first
        for row, epoch in enumerate(columns.epochs[first:last].tolist(), first):  # as `check` and `advance`, row by row
            beyond += self.beyond_horizon(epoch)
            if epoch > self._newest:
                self._newest = epoch
                if self.step is not None and self.step_of(epoch) > self._purged_at:
                    self._take(columns, start, row + 1)
                    start = row + 1
                    self._purge(self.step_of(epoch))
        self._take(columns, start, last)
        return beyond

    def _take(self, columns: IdColumns, first: int, last: int) -> None:
        if last > first:
            if self._columns_block != self._serial:  # the rows added so far became a block (`state`, a purge)
                self._mark_columns()
            late = columns.late_among(first, last)
            if late is not None:
                assert self._bits is not None
                self._bits[late >> self._shift] |= _lane(self._columns_block)
                self._marked += len(late)
            columns.added[first:last] = True
            self._pending += last - first
            self._in_columns += last - first

    def _flush(self) -> None:
        """The rows of `_columns` added so far become a block."""
        columns = self._columns
        if columns is None or not self._pending:
            return
        order = columns.order()  # made once per window: a lookup among the pending rows uses it too
        rows = order[columns.added[order]]  # the added rows, by hash
        assert self._columns_block == self._serial  # `_take` marked them for this block
        self._blocks.append(_Block(columns.hashes[rows], columns.ids, rows, columns.digests[rows], columns.epochs[rows],
                                   _lane(self._serial)))
        self._serial += 1
        columns.added[:] = False
        self._pending = 0
        if len(self._blocks) > _MAX_BLOCKS:
            self._blocks = [_merged(self._blocks)]
            self._mark_all()  # the blocks' bits changed

    def _make_room(self, more: int) -> None:
        """A bitmap with at least 8 slots per id kept as columns, `more` besides (a slot is a byte:
        a bit per lane, `_lane`)."""
        needed = 8 * (self._in_columns + more)
        if self._bits is None or len(self._bits) < needed:
            size = max(1 << 16, 1 << (2 * needed - 1).bit_length())
            self._bits = np.zeros(size, dtype=np.uint8)
            self._shift = np.uint64(64 - (size.bit_length() - 1))
            self._mark_all()

    def _mark_all(self) -> None:
        """The bitmap made afresh: block b numbered b, its hashes marked with its bit, nothing stale."""
        assert self._bits is not None
        self._bits[:] = 0
        for index, block in enumerate(self._blocks):
            block.lane = _lane(index)
            self._bits[block.keys >> self._shift] |= block.lane
        self._serial = len(self._blocks)
        self._marked = self._in_columns - self._pending
        if self._columns is not None:
            self._mark_columns()

    def _mark_columns(self) -> None:
        """`_columns`' hashes (`IdColumns.marked`) get the bit of the block their rows will go to."""
        assert self._bits is not None and self._columns is not None
        self._columns_block = self._serial
        marked = self._columns.marked()
        self._bits[marked >> self._shift] |= _lane(self._columns_block)
        self._marked += len(marked)

    def _stale(self) -> bool:
        """Whether the marks of ids no longer kept outnumber those kept: a lookup then meets more
        slots marked for nothing, and a purge makes the bitmap afresh. Until then the marks a
        purge leaves cost a lookup only a slot that is a false alarm (the blocks keep their bits)."""
        return self._marked > 2 * self._in_columns

    def remember(self, ids: list[str], digests: list[int], epochs: list[float]) -> None:
        """Remember ids known to be new (remembered by no one), in order, as `check` would; the
        clock does not move (a partition of the ids, engine/distributed/, is told where it moves)."""
        if not ids:
            return
        if (not self._queue_epochs or epochs[0] >= self._queue_epochs[-1]) and all(map(le, epochs, epochs[1:])):
            self._ids.update(zip(ids, digests))
            self._queue.extend(ids)
            self._queue_epochs.extend(epochs)
            return
        for event_id, digest, epoch in zip(ids, digests, epochs):
            self.check(event_id, digest, epoch)

    def _purge(self, step: float) -> None:
        assert self.horizon is not None
        oldest = step - self.horizon
        if self._blocks or self._pending:
            self._flush()
            kept = []
            for block in self._blocks:
                keep = block.epochs >= oldest
                if keep.all():
                    kept.append(block)
                elif keep.any():
                    kept.append(block.kept(keep))
            self._blocks = kept
            self._in_columns = sum(map(len, kept))
            if self._stale():
                self._mark_all()
        cut = bisect_left(self._queue_epochs, oldest)
        if cut:
            ids = self._ids
            for event_id in self._queue[:cut]:
                del ids[event_id]
            del self._queue[:cut], self._queue_epochs[:cut]
        if self._late:
            for event_id in [k for k, e in self._late.items() if e < oldest]:
                del self._ids[event_id], self._late[event_id]
        self._purged_at = step

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The ids remembered, with digest (16 hex digits) and event time, as JSON data: those
        that came one at a time in time order, then the `late` ones: those that came one at a
        time out of order, and those kept as columns (a purge goes by event time, so the order
        they came in changes nothing the index answers)."""
        self._flush()
        ids = self._ids
        entries = [[k, f"{ids[k]:016x}", e] for k, e in zip(self._queue, self._queue_epochs)]
        entries += [[k, f"{ids[k]:016x}", e] for k, e in self._late.items()]
        for block in self._blocks:
            entries += [[k, f"{d:016x}", e] for k, d, e in
                        zip(block.listed().to_pylist(), block.digests.tolist(), block.epochs.tolist())]
        return {"ids": entries, "late": len(entries) - len(self._queue), "newest": finite(self._newest),
                "purged_at": finite(self._purged_at)}

    def restore(self, state: dict[str, Any]) -> None:
        entries = state["ids"]
        split = len(entries) - state["late"]
        late = entries[split:]
        self._blocks, self._columns, self._pending, self._in_columns, self._bits = [], None, 0, 0, None
        self._ids = {k: int(d, 16) for k, d, _ in entries[:split]}
        self._queue = [k for k, _, _ in entries[:split]]
        self._queue_epochs = [e for _, _, e in entries[:split]]
        if len(late) > _AS_COLUMNS and all(type(k) is str for k, _, _ in late):  # many: kept as columns
            # (a purge treats both alike)
            self._late = {}
            ids = [k for k, _, _ in late]
            self._blocks = [_Block.by_hash(id_hashes(ids), pa.array(ids, type=pa.string()),
                                           np.array([int(d, 16) for _, d, _ in late], dtype=np.uint64),
                                           np.array([e for _, _, e in late], dtype=np.float64))]
            self._in_columns = len(late)
            self._make_room(0)
        else:
            self._ids.update((k, int(d, 16)) for k, d, _ in late)
            self._late = {k: e for k, _, e in late}
        self._newest = infinite(state["newest"])
        self._purged_at = infinite(state["purged_at"])


_AS_COLUMNS = 4096  # a restored index keeps more late ids than this as a block


def _merged(blocks: list[_Block]) -> _Block:
    return _Block.by_hash(np.concatenate([b.keys for b in blocks]), pa.concat_arrays([b.listed() for b in blocks]),
                          np.concatenate([b.digests for b in blocks]), np.concatenate([b.epochs for b in blocks]))
