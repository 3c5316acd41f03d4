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


def content_digests(events: Iterable[Any]) -> list[int]:
    """`content_digest` of each event, in one loop (the batch path; tests/test_batch.py checks they agree)."""
    return [_xxh3(_dumps(event, option=_SORTED)) for event in events]


class DedupeIndex:
    """Remembers the content digest and event time of each id within the horizon; purges in event time.

    Besides the id map, ids are kept in the order they came: `_queue` holds those that arrived
    in event-time order (their times never decrease), `_late` the few that arrived older than
    the queue's last. A purge cuts the queue at the horizon (bisect) and filters `_late`, so it
    costs what it removes, not what is remembered. What the index answers depends only on the
    ids remembered, the newest time and the last purge; `state()` writes the queue, then the
    late ids, so a restored index is the same index.
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

    def __len__(self) -> int:
        return len(self._ids)

    def beyond_horizon(self, epoch: float) -> bool:
        """Whether an event this old may have had its duplicate forgotten already."""
        return self.horizon is not None and epoch < self._newest - self.horizon

    def verdict(self, event_id: str, digest: int, epoch: float) -> Verdict:
        """Whether the event is beyond the horizon (`beyond_horizon`), and `check`'s verdict (remembered when new)."""
        horizon = self.horizon
        return horizon is not None and epoch < self._newest - horizon, self.check(event_id, digest, epoch)

    def remembers(self, ids: Iterable[str]) -> set[str]:
        """Which of these ids are remembered now."""
        return set(filter(self._ids.__contains__, ids))

    def check(self, event_id: str, digest: int, epoch: float) -> Seen:
        """Classify an id and remember it when new (the clock moves by `advance`)."""
        previous = self._ids.get(event_id)
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
        that came in time order, then the `late` ones."""
        ids = self._ids
        entries = [[k, f"{ids[k]:016x}", e] for k, e in zip(self._queue, self._queue_epochs)]
        entries += [[k, f"{ids[k]:016x}", e] for k, e in self._late.items()]
        return {"ids": entries, "late": len(self._late), "newest": finite(self._newest),
                "purged_at": finite(self._purged_at)}

    def restore(self, state: dict[str, Any]) -> None:
        entries = state["ids"]
        split = len(entries) - state["late"]
        self._ids = {k: int(d, 16) for k, d, _ in entries}
        self._queue = [k for k, _, _ in entries[:split]]
        self._queue_epochs = [e for _, _, e in entries[:split]]
        self._late = {k: e for k, _, e in entries[split:]}
        self._newest = infinite(state["newest"])
        self._purged_at = infinite(state["purged_at"])
