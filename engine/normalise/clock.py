"""The stream's event-time clock, guarded so that one source cannot move time for everyone.

The clock is the latest event time the stream has reached; deadlines (the decision layer's
`advance`) and the de-duplication horizon follow it. An event dated 2999 from one logger,
valid by the schema, would otherwise close every open order of every enterprise. So:

- an event at most `lead_days` ahead of the clock moves it (a live city stream never jumps
  further: thousands of enterprises report every hour);
- an event further ahead does not move it on its own: its time is *held* (the event itself
  is processed, for its own enterprise, and counted as `clock_held` in the run summary);
- held times are corroborated by other enterprises: when events of `quorum` different
  enterprises (the CloudEvents `subject`) lie within `lead_days` of each other ahead of
  the clock, the clock jumps to the latest of them (a real gap in a log, e.g. a replay that
  resumes after a quiet month, is corroborated by the second enterprise that reports);
- at the start the clock has not started: it starts the same way, when `quorum`
  enterprises agree, so a future-dated first line cannot start it either (events held
  before the start count as held when the start leaves them more than `lead_days` ahead);
- `--as-of` (`Engine.flush(as_of)`) stays the explicit way to move time, unguarded.

Event time only and deterministic: what is held and what corroborates depends on the input
order alone. Bounded: at most `max_held` held times are kept (the farthest ahead are
dropped first). `lead_days=None` turns the guard off (every later event moves the clock).

In: (event time, subject) of each admitted event. Out: the new clock time when it moved, else
None. State: `state()` / `restore()`.

Blocks (distributed replay, engine/distributed/): the clock is a fold over the admitted events
in input order, and a block of them composes cheaply. `summary(epochs)` of a block is its
latest time, the latest time among its *jumps* (an event more than `lead_days` after every
earlier event of the block, the first event included) and its size. When a clock `runs_through`
a summary (it has started and no jump lies more than `lead_days` ahead of it), folding the block
moves it as a running maximum and `skip(summary)` gives the same state without the events;
otherwise `run(epochs, subjects)` folds the block exactly (vectorised between the events that
are far ahead) and gives the time after each event. Partitions `follow` the clock so composed:
they move only by `move_to`, so the bytes are those of one machine.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from engine.state import finite, infinite

DAY = 86400.0
_WINDOW = 1024  # events looked at per vectorised step of `run` (bounds the work per far-ahead event)


class Summary(NamedTuple):
    """A block of admitted events for the clock: the latest time, the latest time among its
    jumps (-inf for none) and how many events (see `EventClock.summary`)."""

    latest: float
    jumps: float
    events: int


class EventClock:
    """The guarded event-time clock (see the module docstring)."""

    def __init__(self, lead_days: float | None = 7.0, quorum: int = 2, max_held: int = 4096) -> None:
        if lead_days is not None and not (math.isfinite(lead_days) and lead_days > 0):
            raise ValueError(f"lead_days must be a positive number of days or None, got {lead_days!r}")
        if quorum < 1 or max_held < 1:
            raise ValueError("quorum and max_held must be at least 1")
        self.lead_days, self.quorum, self.max_held = lead_days, quorum, max_held
        self.lead = math.inf if lead_days is None else lead_days * DAY
        self.time = -math.inf
        self.following = False
        self._held: list[tuple[float, str]] = []  # (event time, subject), sorted
        self.held_count = 0  # events held while the clock ran (a follower counts those its leader held)
        self.stranded = 0  # events held before the start that the start left more than `lead` ahead

    @property
    def parameters(self) -> dict[str, Any]:
        """What makes another clock behave like this one (for the distributed driver and manifests)."""
        return {"lead_days": self.lead_days, "quorum": self.quorum, "max_held": self.max_held}

    def follow(self) -> None:
        """From now on move only by `move_to` (a distributed partition following the driver's clock)."""
        self.following = True

    def observe(self, epoch: float, subject: str) -> float | None:
        """An admitted event's time: the new clock time when the event moves the clock, else None
        (at or behind the clock, or held: see `holds`)."""
        if epoch <= self.time:
            return None
        if self.following:
            self.held_count += self.time > -math.inf
            return None
        if epoch <= self.time + self.lead or self.lead == math.inf:
            return self._move(epoch)
        low, high = bisect_left(self._held, (epoch - self.lead, "")), bisect_right(self._held, (epoch + self.lead, "\uffff"))
        witnesses = {held_subject for _, held_subject in self._held[low:high] if held_subject != subject}
        if len(witnesses) + 1 >= self.quorum:
            return self._move(epoch)
        insort(self._held, (epoch, subject))
        if len(self._held) > self.max_held:
            self._held.pop()  # the farthest ahead goes first
        self.held_count += self.time > -math.inf
        return None

    @property
    def counted(self) -> int:
        """Events whose time was held: while the clock ran, and those its start left far ahead."""
        return self.held_count + self.stranded

    # ---- blocks of events (distributed replay) -------------------------------------------

    def summary(self, epochs: np.ndarray) -> Summary:
        """What `runs_through` and `skip` need of a block of admitted event times (in input order)."""
        if not len(epochs):
            return Summary(-math.inf, -math.inf, 0)
        before = np.empty_like(epochs)
        before[0] = -math.inf
        np.maximum.accumulate(epochs[:-1], out=before[1:])
        jumps = epochs[epochs > before + self.lead] if self.lead != math.inf else epochs[:0]
        return Summary(float(epochs.max()), float(jumps.max()) if len(jumps) else -math.inf, len(epochs))

    def runs_through(self, summary: Summary) -> bool:
        """Whether folding the block moves this clock as a running maximum: no event of it is more
        than `lead_days` ahead of the clock when it arrives (every event that could be is a jump,
        and a jump within `lead_days` of the clock is not), so `skip` is exact."""
        if summary.events == 0 or self.lead == math.inf:
            return True
        return self.time > -math.inf and summary.jumps <= self.time + self.lead

    def skip(self, summary: Summary) -> None:
        """Fold a block this clock `runs_through`, from its summary alone."""
        if summary.latest > self.time:
            self._move(summary.latest)

    def run(self, epochs: np.ndarray, subjects: Sequence[str]) -> np.ndarray:
        """`observe` each admitted event of a block in order; the clock's time after each.

        Runs of events within `lead_days` of the clock move it as a running maximum (numpy);
        each event further ahead is observed on its own (held, corroborated or starting the clock).
        """
        out = np.empty(len(epochs))
        start = 0
        while start < len(epochs):
            window = epochs[start:start + _WINDOW]
            running = np.maximum.accumulate(np.maximum(window, self.time))
            before = np.empty_like(running)
            before[0] = self.time
            before[1:] = running[:-1]
            with np.errstate(invalid="ignore"):  # -inf + inf (the guard off, before the start): not far
                far = np.flatnonzero(window > before + self.lead) if self.lead != math.inf else window[:0]
            stop = int(far[0]) if len(far) else len(window)
            if stop:
                out[start:start + stop] = running[:stop]
                self.move_to(float(running[stop - 1]))
            if stop < len(window):
                self.observe(float(window[stop]), subjects[start + stop])
                out[start + stop] = self.time
                stop += 1
            start += stop
        return out

    def plausible_until(self) -> float:
        """The latest event time that moves the clock without corroboration (-inf before it started)."""
        if self.following:
            return -math.inf
        return self.time + self.lead if self.lead != math.inf else math.inf

    def move_to(self, epoch: float) -> None:
        """Move the clock (never back): ticks of the distributed driver, or quiet events the batch
        path proved to be at most `plausible_until()`."""
        if epoch > self.time:
            self._move(epoch)

    def _move(self, epoch: float) -> float:
        if self.time == -math.inf and not self.following:
            self.stranded += len(self._held) - bisect_right(self._held, (epoch + self.lead, "\uffff"))
        self.time = epoch
        if self._held and self._held[0][0] <= epoch:
            del self._held[:bisect_right(self._held, (epoch, "\uffff"))]  # reached: nothing to corroborate
        return epoch

    # ---- checkpoints ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The clock, its parameters and the held times, as JSON data."""
        return {"time": finite(self.time), "held": [[e, s] for e, s in self._held], "held_count": self.held_count,
                "stranded": self.stranded, **self.parameters}

    def restore(self, state: dict[str, Any]) -> None:
        if (state.get("lead_days"), state.get("quorum"), state.get("max_held")) != \
                (self.lead_days, self.quorum, self.max_held):
            raise ValueError(f"the snapshot's clock has {state.get('lead_days')!r} days lead and quorum "
                             f"{state.get('quorum')!r}, this engine {self.lead_days!r} and {self.quorum}")
        self.time = infinite(state["time"])
        self._held = [(e, s) for e, s in state["held"]]
        self.held_count, self.stranded = state["held_count"], state["stranded"]
