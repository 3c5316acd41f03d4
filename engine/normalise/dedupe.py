"""Duplicate detection by event id (the CloudEvents idempotency key), with bounded memory.

The same id with the same content is a duplicate; with other content it is an error. Ids
are remembered for an event-time horizon behind the newest event seen (default 7 days), so
memory follows the event rate and the number of enterprises, not the length of the log.
An event older than the horizon cannot be checked against ids already forgotten: it is
processed and counted (`beyond_dedupe_horizon` in the summary), never dropped silently.
`horizon_days=None` keeps every id (memory grows with the log).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

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


def content_digests(events: Iterable[Any]) -> list[int]:
    """`content_digest` of each event, in one loop (the batch path; tests/test_batch.py checks they agree)."""
    return [_xxh3(_dumps(event, option=_SORTED)) for event in events]


class DedupeIndex:
    """Remembers (digest, event time) per id within the horizon; purges in event time."""

    def __init__(self, horizon_days: float | None = 7.0) -> None:
        self.horizon = None if horizon_days is None else horizon_days * DAY
        self._ids: dict[str, tuple[int, float]] = {}
        self._newest = float("-inf")
        self._purged_at = float("-inf")

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
        """Classify an id and remember it when new."""
        previous = self._ids.get(event_id)
        if previous is not None:
            return Seen.DUPLICATE if previous[0] == digest else Seen.CONFLICT
        self._ids[event_id] = (digest, epoch)
        if epoch > self._newest:
            self._newest = epoch
            if self.horizon is not None and epoch - self._purged_at > self.horizon / 2:
                self._purge()
        return Seen.NEW

    def add_new(self, ids: list[str], digests: list[int], epochs: list[float]) -> int:
        """Remember ids known to be new (the batch path): what `check` would do for each, in order.

        Returns how many were beyond the horizon when they arrived. When no purge can fall
        due and none is beyond the horizon (nearly always), one dict update does it all.
        """
        if not ids:
            return 0
        top = max(epochs)
        newest = max(self._newest, top)
        if self.horizon is None or (top - self._purged_at <= self.horizon / 2 and min(epochs) >= newest - self.horizon):
            self._ids.update(zip(ids, zip(digests, epochs)))
            self._newest = newest
            return 0
        beyond = 0
        for event_id, digest, epoch in zip(ids, digests, epochs):
            beyond += self.beyond_horizon(epoch)
            self.check(event_id, digest, epoch)
        return beyond

    def _purge(self) -> None:
        assert self.horizon is not None
        oldest = self._newest - self.horizon
        self._ids = {k: v for k, v in self._ids.items() if v[1] >= oldest}
        self._purged_at = self._newest

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The ids remembered, with digest (16 hex digits) and event time, as JSON data."""
        return {"ids": [[k, f"{d:016x}", e] for k, (d, e) in self._ids.items()], "newest": finite(self._newest),
                "purged_at": finite(self._purged_at)}

    def restore(self, state: dict[str, Any]) -> None:
        self._ids = {k: (int(d, 16), e) for k, d, e in state["ids"]}
        self._newest = infinite(state["newest"])
        self._purged_at = infinite(state["purged_at"])
