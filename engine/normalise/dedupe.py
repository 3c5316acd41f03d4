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
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from enum import Enum
from typing import Any

import orjson

from engine.state import finite, infinite

DAY = 86400.0


class Seen(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


Verdict = tuple[bool, Seen]  # (beyond the horizon when it arrived, new / duplicate / conflict)


_blake2b, _dumps, _SORTED = hashlib.blake2b, orjson.dumps, orjson.OPT_SORT_KEYS


def content_digest(event: Any) -> bytes:
    """What "the same content" means for an id: blake2b-96 of the event's sorted-key JSON."""
    return _blake2b(_dumps(event, option=_SORTED), digest_size=12).digest()


def canonical_json(event: Any) -> bytes:
    """The event's sorted-key JSON, the text `content_digest` hashes (`digest_of`)."""
    return _dumps(event, option=_SORTED)


def digest_of(canonical: bytes) -> bytes:
    """`content_digest` of the event whose `canonical_json` this is."""
    return _blake2b(canonical, digest_size=12).digest()


class DedupeIndex:
    """Remembers (digest, event time) per id within the horizon; purges in event time."""

    def __init__(self, horizon_days: float | None = 7.0) -> None:
        self.horizon = None if horizon_days is None else horizon_days * DAY
        self._ids: dict[str, tuple[bytes, float]] = {}
        self._newest = float("-inf")
        self._purged_at = float("-inf")

    def __len__(self) -> int:
        return len(self._ids)

    def beyond_horizon(self, epoch: float) -> bool:
        """Whether an event this old may have had its duplicate forgotten already."""
        return self.horizon is not None and epoch < self._newest - self.horizon

    def verdict(self, event_id: str, digest: bytes, epoch: float) -> Verdict:
        """Whether the event is beyond the horizon (`beyond_horizon`), and `check`'s verdict (remembered when new)."""
        horizon = self.horizon
        return horizon is not None and epoch < self._newest - horizon, self.check(event_id, digest, epoch)

    def remembers(self, ids: Iterable[str]) -> set[str]:
        """Which of these ids are remembered now."""
        return set(filter(self._ids.__contains__, ids))

    def check(self, event_id: str, digest: bytes, epoch: float) -> Seen:
        """Classify an id and remember it when new (the clock moves by `advance`)."""
        previous = self._ids.get(event_id)
        if previous is not None:
            return Seen.DUPLICATE if previous[0] == digest else Seen.CONFLICT
        self._ids[event_id] = (digest, epoch)
        return Seen.NEW

    def advance(self, epoch: float) -> None:
        """The stream's clock moved to `epoch`: the horizon follows (ids behind it are purged in time)."""
        if epoch > self._newest:
            self._newest = epoch
            if self.horizon is not None and epoch - self._purged_at > self.horizon / 2:
                self._purge()

    def add_new(self, ids: list[str], digests: list[bytes], epochs: list[float]) -> int:
        """Remember ids known to be new whose times move the clock (the batch path's quiet events):
        what `check` and `advance` would do for each, in order.

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
            self.advance(epoch)
        return beyond

    def _purge(self) -> None:
        assert self.horizon is not None
        oldest = self._newest - self.horizon
        self._ids = {k: v for k, v in self._ids.items() if v[1] >= oldest}
        self._purged_at = self._newest

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The ids remembered, with digest (hex) and event time, as JSON data."""
        return {"ids": [[k, d.hex(), e] for k, (d, e) in self._ids.items()], "newest": finite(self._newest),
                "purged_at": finite(self._purged_at)}

    def restore(self, state: dict[str, Any]) -> None:
        self._ids = {k: (bytes.fromhex(d), e) for k, d, e in state["ids"]}
        self._newest = infinite(state["newest"])
        self._purged_at = infinite(state["purged_at"])
