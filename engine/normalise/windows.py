"""Event-time windows: means of a stream over clock hours or local days.

Hourly means from minute data (GB 39726 §8.3 judges 1-hour means); daily means of wastewater
from hourly values (online wastewater data are judged as daily means; the standards' benchmark
water volume is counted over one working day). A stream (enterprise, type, outlet, process or
point, pollutant) has one open window. A value of a later window closes it; the end of input
closes the rest (in a sorted order, so the output never depends on dict order). A value for a
window already closed is late: counted, not judged (a side output, as Flink does, rather than
a silent change). Hours are clock hours of the epoch; days are local calendar days of the
reading's UTC offset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from engine.normalise.readings import Reading, calendar_edge

StreamKey = tuple[str, str, str, str, str]


@dataclass(slots=True)
class _Hour:
    start: float
    offset: timedelta
    values: list[float] = field(default_factory=list)
    o2: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    first: Reading | None = None


def stream_of(reading: Reading) -> StreamKey:
    """The stream a reading belongs to: (enterprise, type, outlet, process or point, pollutant)."""
    return (reading.enterprise, reading.type, reading.outlet, reading.process or reading.point or "", reading.pollutant)


class MeanWindows:
    """Folds readings (flag N only) into mean Readings of `period` ("hour": clock hours of the
    epoch; "day": local calendar days)."""

    def __init__(self, period: str = "hour") -> None:
        if period not in ("hour", "day"):
            raise ValueError(f"period must be hour or day, got {period!r}")
        self.period = period
        self._span = 3600.0 if period == "hour" else 86400.0
        self._open: dict[StreamKey, _Hour] = {}
        self._closed_until: dict[StreamKey, float] = {}

    def add(self, reading: Reading) -> tuple[list[Reading], bool]:
        """Add one reading; returns (windows it closed, whether it was late)."""
        key = stream_of(reading)
        offset: timedelta | None = None
        if self.period == "hour":
            start = reading.epoch - reading.epoch % 3600
        else:
            offset = datetime.fromisoformat(reading.time.replace("Z", "+00:00")).utcoffset() or timedelta(0)
            local = reading.epoch + offset.total_seconds()
            start = local - local % 86400 - offset.total_seconds()
        if start < self._closed_until.get(key, float("-inf")):
            return [], True
        closed: list[Reading] = []
        hour = self._open.get(key)
        if hour is not None and start > hour.start:
            closed.append(self._close(key, hour))
            hour = None
        if hour is None:
            if offset is None:
                offset = datetime.fromisoformat(reading.time.replace("Z", "+00:00")).utcoffset() or timedelta(0)
            hour = _Hour(start=start, offset=offset)
            self._open[key] = hour
        if hour.first is None:
            hour.first = reading
        hour.values.append(reading.value)
        if reading.o2 is not None:
            hour.o2.append(reading.o2)
        hour.ids.extend(reading.event_ids)
        return closed, False

    def _close(self, key: StreamKey, hour: _Hour) -> Reading:
        del self._open[key]
        self._closed_until[key] = hour.start + self._span
        first = hour.first
        assert first is not None
        local = _local_start(hour.start, hour.offset)
        o2 = sum(hour.o2) / len(hour.o2) if len(hour.o2) == len(hour.values) else None
        return Reading(
            enterprise=first.enterprise,
            type=first.type,
            time=local.isoformat(),
            epoch=hour.start,
            event_ids=tuple(hour.ids),
            outlet=first.outlet,
            process=first.process,
            point=first.point,
            destination=first.destination,
            pollutant=first.pollutant,
            value=sum(hour.values) / len(hour.values),
            unit=first.unit,
            raw_unit=first.raw_unit,
            o2=o2,
            period=self.period,
            flag="N",
            data=first.data,
            count=len(hour.values),
        )

    def flush(self) -> list[Reading]:
        """Close every open window (end of input), ordered by time then stream."""
        pending = sorted(self._open.items(), key=lambda item: (item[1].start, item[0]))
        return [self._close(key, hour) for key, hour in pending]

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Open hours and where each stream's closed hours end, as JSON data."""
        return {
            "open": [[list(key), {"start": h.start, "offset": h.offset.total_seconds(), "values": h.values, "o2": h.o2,
                                  "ids": h.ids, "first": _reading_state(h.first)}]
                     for key, h in self._open.items()],
            "closed_until": [[list(key), until] for key, until in self._closed_until.items()],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._open = {
            tuple(key): _Hour(start=h["start"], offset=timedelta(seconds=h["offset"]), values=list(h["values"]),
                              o2=list(h["o2"]), ids=list(h["ids"]), first=_restore_reading(h["first"]))
            for key, h in state["open"]
        }
        self._closed_until = {tuple(key): until for key, until in state["closed_until"]}


_EPOCH = datetime(1970, 1, 1)


def _local_start(start: float, offset: timedelta) -> datetime:
    """The start of a window (seconds since the epoch) as wall time in the readings' offset.

    Computed on the local wall clock, never through UTC: the first hour of 0001-01-01 at +14:00
    is in year 0 UTC, the last hours of 9999-12-31 at -05:00 in year 10000, yet both are valid
    event times. The wall time of a window start is that of one of its readings or earlier by
    less than a window, so it can only fall before year 1 for an hour under an offset of
    fractional hours (0001-01-01T00:10+05:30 is in the hour from 0000-12-31T23:30+05:30): such a
    start is written as the first second of the calendar (`calendar_edge`), as deadlines past it
    are; its epoch stays exact. The same as datetime.fromtimestamp otherwise.
    """
    try:
        wall = _EPOCH + (timedelta(seconds=start) + offset)  # the sum first: UTC may be past year 9999
    except OverflowError:
        return calendar_edge(False, timezone(offset))
    return wall.replace(tzinfo=timezone(offset))


def _reading_state(reading: Reading | None) -> dict[str, Any] | None:
    return None if reading is None else {f.name: getattr(reading, f.name) for f in dataclasses.fields(reading)}


def _restore_reading(data: dict[str, Any] | None) -> Reading | None:
    return None if data is None else Reading(**{**data, "event_ids": tuple(data["event_ids"])})


