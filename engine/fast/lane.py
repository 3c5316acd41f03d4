"""The fast lane of the batch path: a chunk of events sorted into quiet and eventful ones.

Most of a replay is stack and discharge readings that are valid, new, inside every limit
and pass no deadline: their whole effect is a counter, an id remembered and the clock
moved. The fast lane proves that for a chunk by columns and commits those effects in bulk:

* validation: events are grouped by exact shape and checked by column (engine/shapes.py),
  compiled from the composed schemas the per-event validator uses;
* judging: readings are grouped by what the rule index and corrections look at, and the
  threshold screens (engine/screen.py) name the few that could fire;
* idempotency: ids already remembered, repeated in the chunk or shared with any other line
  of the chunk leave the lane; the rest are remembered in one step;
* the clock: a run of quiet events moves the decision clock in one step, unless an open
  order falls due inside the run.

Everything else (other event types, anything invalid or odd, readings that could fire,
duplicates, a run that crosses a deadline) goes through the engine's per-event stages one by
one, in input order, with the state the quiet events before it left. So the output is the
per-event path's, record for record (tests/test_batch.py, tests/test_fastlane.py).

The lane sits below the Engine and sees it through one narrow interface, `Host`: the stages
it reads (validator, judge, dedupe index, decision clock) and the two ways to apply events
(`process_parsed` one by one, `commit_quiet` in bulk).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import itemgetter
from typing import Any, Protocol

import numpy as np
import orjson

from engine.decide.layer import DecisionLayer
from engine.fast.shapes import Path, ShapePlan, plan_shape, rows_by_value
from engine.judge import READING_TYPES, UNAVAILABLE, Gate, Judge
from engine.ingest import may_repeat_keys
from engine.normalise import DedupeIndex, EventClock, IdColumns, canonical_json, digests_of, epoch_of
from engine.records import InputLine, Record
from engine.validate import EventValidator

UNPARSED = object()  # a line orjson could not read: the exact path quarantines it
_EXACT, _QUIET, _UNAVAILABLE = 0, 1, 2  # _EXACT falsy: rows are picked by `compress`
EXACT = _EXACT  # `Sorting.lane` of a line the per-event stages must take
QUIET, FLAGGED = _QUIET, _UNAVAILABLE  # of a quiet line; of a reading flagged unavailable (counted, never judged)
_READING_TYPES = frozenset(READING_TYPES)
_GATE_FIELDS = ("pollutant", "unit", "process", "point", "destination", "period", "flag")
CHUNK_LINES = 256  # lines in a chunk of the batch path: its lines, events and per-line lists stay in the processor's cache


class Host(Protocol):
    """What the fast lane needs from an engine (engine/pipeline.py implements it)."""

    validator: EventValidator
    judge: Judge
    dedupe: DedupeIndex
    clock: EventClock
    decisions: DecisionLayer
    lane_stats: Counter[str]

    @property
    def validation(self) -> str: ...

    def process_line(self, item: InputLine, number: int = 0) -> list[Record]: ...

    def process_parsed(self, event: Any, raw: Any, source: str, line: int, from_json: bool = True,
                       valid: bool = False, digest: int | None = None) -> list[Record]: ...

    def prepare_archived(self, row: Mapping[str, Any]) -> Any: ...  # a Prepared or a Quarantined

    def process_prepared(self, prepared: Any, verdict: Any = None) -> list[Record]: ...

    @property
    def registry(self) -> Mapping[str, Mapping[str, Any]]: ...

    def commit_quiet(self, top: float, ids: list[str], digests: list[int], epochs: list[float], subjects: list[str],
                     unavailable: int) -> None: ...

    def commit_quiet_counted(self, top: float, ids: list[str], digests: list[int], epochs: list[float], strangers: int,
                             unavailable: int) -> None: ...

    def commit_quiet_columns(self, top: float, columns: IdColumns, first: int, last: int, low: float, strangers: int,
                             unavailable: int) -> None: ...


@dataclass(slots=True)
class Sorting:
    """What the fast lane learnt about a chunk, per line: quiet or not, and for quiet lines
    what committing them needs (id, subject, event time, content digest); `valid`: a shape
    plan proved the line valid (the exact path need not validate it again); `unless`: quiet
    lines that are quiet only for an enterprise outside these industries (a benchmark rule of
    those industries could not make its correction), checked when they are committed."""

    lane: list[int]
    ids: list[Any]
    subjects: list[Any]
    epochs: list[float]
    digests: list[int | None]
    valid: list[bool]
    unless: dict[int, frozenset[str]] = field(default_factory=dict)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled compactly (a worker process sends one per chunk, engine/fast/workers.py): the
        per-line lists as one JSON text and the event times as 8-byte floats, which unpickle in
        less than half the time of pickle's object-by-object form. A value JSON cannot carry
        exactly (none is expected) falls back to that form."""
        try:
            text = orjson.dumps((self.lane, self.ids, self.subjects, self.digests, self.valid))
        except orjson.JSONEncodeError:
            return Sorting, (self.lane, self.ids, self.subjects, self.epochs, self.digests, self.valid, self.unless)
        return _unpacked, (text, array("d", self.epochs).tobytes(), self.unless)


def _unpacked(text: bytes, epochs: bytes, unless: dict[int, frozenset[str]]) -> Sorting:
    lane, ids, subjects, digests, valid = orjson.loads(text)
    times = array("d")
    times.frombytes(epochs)
    return Sorting(lane, ids, subjects, times.tolist(), digests, valid, unless)


class FastLane:
    """Per engine: shape plans and threshold gates are compiled on first sight and kept."""

    def __init__(self, engine: Host) -> None:
        self.engine = engine
        self._plans: dict[tuple[Any, ...], tuple[ShapePlan, tuple[Path, ...]] | None] = {}
        self.stats: Counter[str] = engine.lane_stats
        self._gates: dict[tuple[Any, ...], dict[tuple[Any, ...], Gate | int]] = {}

    def process(self, events: Sequence[Any], raws: Sequence[bytes], source: str, first_line: int) -> Iterator[Record]:
        """The records of a chunk (line numbers from `first_line`), as the per-event path gives them
        (sorted just before it is applied: the registry as it stands helps)."""
        yield from self.apply(self.sort(events, raws, self.engine.registry, defer=True), events, raws, source, first_line)

    def sort(self, events: Sequence[Any], raws: Sequence[bytes] | None = None,
             registry: Mapping[str, Mapping[str, Any]] | None = None, registered: Set[Any] | None = None,
             defer: bool = False) -> Sorting:
        """Find the quiet events of a chunk. Reads no engine state, so a worker process can do it.

        `raws`: the lines the events were parsed from; a line that may repeat a key inside an
        object is not quiet (the exact path checks it and quarantines it if it does).
        `registry`: the registrations as they stand before the chunk, when it is sorted just before
        it is applied: a reading that a rule fires on is then judged by the rules of its
        enterprise's industry only, unless `registered` (default: the chunk's registrations)
        names its enterprise. Other such readings are exact, or with `defer` (for a caller that
        commits through `apply`, which honours `Sorting.unless`) quiet `unless` their enterprise
        is of the industry of a rule that fires, which `apply` checks when it commits them."""
        n = len(events)
        sorting = Sorting([_EXACT] * n, [None] * n, [None] * n, [0.0] * n, [None] * n, [False] * n)
        times: list[Any] = [None] * n
        industry = None
        if registry is not None:
            if registered is None:
                registered = _registered(events)
            industry = Industry(registry, registered)
        for rows in _group(events):
            self._classify(rows, events, sorting, times, industry, defer)
        lane = sorting.lane
        quiet = list(compress(range(n), lane))  # not _EXACT
        if not quiet:
            return sorting
        canonicals = list(map(canonical_json, map(events.__getitem__, quiet)))
        if raws is not None:
            lines = list(map(raws.__getitem__, quiet))
            # may_repeat_keys (engine/ingest/jsonl.py) for the whole chunk at once: without a
            # backslash a line's strings are spelt as in its sorted-key JSON, so its colons are
            # that JSON's plus one per repeated key; the chunk's totals agree only if every line's do
            text = b"".join(lines) if _BYTES.issuperset(map(type, lines)) else None
            if text is None or b"\\" in text or _colons(text) != _colons(b"".join(canonicals)):
                kept = [p for p, (line, canonical) in enumerate(zip(lines, canonicals))
                        if not (b"\\" in line or line.count(b":") != canonical.count(b":")
                                if type(line) is bytes else may_repeat_keys(line, canonical))]
                for p in set(range(len(quiet))).difference(kept):
                    i = quiet[p]
                    lane[i], sorting.ids[i], sorting.subjects[i] = _EXACT, None, None
                    sorting.unless.pop(i, None)
                quiet = [quiet[p] for p in kept]
                canonicals = [canonicals[p] for p in kept]
        epochs, digests = sorting.epochs, sorting.digests
        for i, epoch, digest in zip(quiet, map(epoch_of, map(times.__getitem__, quiet)), digests_of(canonicals)):
            epochs[i] = epoch
            digests[i] = digest
        return sorting

    def apply(self, sorting: Sorting, events: Sequence[Any], raws: Sequence[bytes], source: str,
              first_line: int) -> Iterator[Record]:
        """Commit the quiet runs of a sorted chunk and take every other event exactly, in input order."""
        lane = sorting.lane
        exact = [i for i, kind in enumerate(lane) if kind == _EXACT]
        if self._exclude_repeated_ids(events, lane, sorting.ids, exact):
            exact = [i for i, kind in enumerate(lane) if kind == _EXACT]
        n = len(lane)
        self.stats["quiet"] += n - len(exact)
        self.stats["exact"] += len(exact)
        start = 0
        for index in exact + [n]:
            if index > start:
                yield from self._commit(range(start, index), events, raws, source, first_line, sorting)
            if index < n:
                yield from self._exact(events[index], raws[index], source, first_line + index, sorting.valid[index])
            start = index + 1

    # ---- sorting ----------------------------------------------------------------------

    def _classify(self, rows: list[int], events: Sequence[Any], sorting: Sorting, times: list[Any],
                  industry: Industry | None = None, defer: bool = False) -> None:
        """Mark the quiet readings among `rows` (events of one type and key counts), and those a
        shape plan proved valid."""
        lane, ids, subjects, valid = sorting.lane, sorting.ids, sorting.subjects, sorting.valid
        group = [events[i] for i in rows]
        first = group[0]
        signature = (first["type"], frozenset(first), frozenset(first["data"]), _nested(first["data"]))
        planned = self._plan(signature)
        if planned is None:
            return
        plan, paths = planned
        datas = list(map(itemgetter("data"), group))
        columns: dict[Path, Sequence[Any]] = {}
        try:  # every key of the first event's shape, in every event: with equal counts, equal key sets
            for level, rows_of_level in ((1, group), (2, datas)):  # a level's keys in one pass over its objects
                keys = [path for path in paths if len(path) == level]
                if len(keys) > 1:
                    columns.update(zip(keys, zip(*map(itemgetter(*[path[-1] for path in keys]), rows_of_level))))
                elif keys:
                    columns[keys[0]] = list(map(itemgetter(keys[0][-1]), rows_of_level))
            for path in paths:
                if len(path) > 2:  # a key of an object inside data: the objects have the first event's key count
                    inner = columns.get(path[:2])
                    if inner is None:
                        inner = columns[path[:2]] = list(map(itemgetter(path[1]), datas))
                        if set(map(type, inner)) != {dict} or len(set(map(len, inner))) != 1:
                            raise KeyError(path[:2])
                    columns[path] = list(map(itemgetter(path[2]), inner))
        except KeyError:
            for subgroup in _exact_shapes(rows, events):
                self._classify(subgroup, events, sorting, times, industry, defer)
            return
        invalid = plan.failing(columns)
        event_type, _, data_keys, nested = signature
        has_o2 = "o2_percent" in data_keys
        has_inputs = "volume_m3" in data_keys and any(key == "production" for key, _ in nested)
        gates = self._gates.setdefault((event_type, has_o2, has_inputs), {})
        fields = [columns.get(("data", name)) or repeat("N" if name == "flag" else None, len(rows)) for name in _GATE_FIELDS]
        values, oxygen = columns[("data", "value")], columns.get(("data", "o2_percent"))
        id_column, time_column, subject_column = columns[("id",)], columns[("time",)], columns[("subject",)]
        for p, key, value in zip(range(len(rows)), zip(*fields), values):
            if invalid and p in invalid:
                continue
            row = rows[p]
            valid[row] = True
            gate = gates.get(key)
            if gate is None:
                gate = gates[key] = self._gate(event_type, key, has_o2, has_inputs)
            if isinstance(gate, int):  # _EXACT, or _UNAVAILABLE (counted, never judged)
                if gate == _EXACT:
                    continue
                status = gate
            else:
                inside = gate.low <= value <= gate.high and (  # every cut, the O₂-corrected one too
                    gate.o2_free is None or value * gate.o2_free / (21.0 - oxygen[p]) <= gate.o2_high)  # type: ignore[index]
                if not inside or gate.benchmarks:  # else quiet at once: most readings
                    o2: Any = oxygen[p] if oxygen is not None else None
                    unless = gate.benchmark_quiet(value, datas[p]) if gate.benchmarks else None
                    if not inside or (gate.benchmarks and unless is None):
                        known = industry.of(subject_column[p]) if industry is not None else _UNKNOWN
                        day = time_column[p][:10]  # the local date, as the judge reads it (a valid time here)
                        if known is _UNKNOWN:  # with `defer`: quiet unless one of the industries whose rules fire
                            unless = gate.firing(value, o2, datas[p], day) if defer else \
                                (None if gate.fires(value, o2, datas[p], day) else frozenset())
                            if unless is None:
                                continue
                        elif gate.fires_for(value, o2, datas[p], known, day):
                            continue
                        else:
                            unless = None
                    if unless:
                        known = industry.of(subject_column[p]) if industry is not None else _UNKNOWN
                        if known is _UNKNOWN:
                            if not defer:
                                continue
                            sorting.unless[row] = unless
                        elif known in unless:
                            continue
                status = _QUIET
            lane[row] = status
            ids[row], times[row], subjects[row] = id_column[p], time_column[p], subject_column[p]

    def _plan(self, signature: tuple[Any, ...]) -> tuple[ShapePlan, tuple[Path, ...]] | None:
        if signature not in self._plans:
            event_type, envelope_keys, data_keys, nested = signature
            planned = None
            if event_type in self.engine.validator.schemas and {"id", "time", "subject", "data"} <= envelope_keys:
                objects = dict(nested)
                shape: dict[str, Any] = {key: None for key in sorted(envelope_keys)}
                shape["data"] = {key: ({k: None for k in sorted(objects[key])} if key in objects else None)
                                 for key in sorted(data_keys)}
                plan = plan_shape(self.engine.validator.schemas[event_type], shape, self.engine.validator.compile_leaf)
                if plan is not None and {"value", "pollutant", "unit", "period"} <= data_keys:
                    paths = tuple(sorted({(k,) for k in envelope_keys if k != "data"}
                                         | {("data", k) for k in data_keys if k not in objects}
                                         | {("data", k, inner) for k, keys in nested for inner in keys}))
                    planned = (plan, paths)
            self._plans[signature] = planned
        return self._plans[signature]

    def _gate(self, event_type: str, key: tuple[Any, ...], has_o2: bool, has_inputs: bool = False) -> Gate | int:
        screened = self.engine.judge.screen(event_type, *key, has_o2, has_inputs)
        if screened is None:
            return _EXACT  # a unit error, the hourly window, or a rule beyond thresholds
        if screened == UNAVAILABLE:
            return _UNAVAILABLE  # counted, never judged
        return screened  # type: ignore[return-value]

    def _exclude_repeated_ids(self, events: Sequence[Any], lane: list[int], ids: list[Any], exact: list[int]) -> bool:
        """Send every line whose id is remembered, repeated, or used by an exact line to the exact path.

        `ids` holds the id of each quiet line and None elsewhere; `exact` the other lines.
        True when some line was sent."""
        quiet_ids = [i for i in ids if i is not None]
        if not quiet_ids:
            return False
        unique = set(quiet_ids)
        clash = self.engine.dedupe.remembers(unique)
        if len(unique) != len(quiet_ids):
            clash.update(i for i, count in Counter(quiet_ids).items() if count > 1)
        for i in exact:
            event = events[i]
            other = event.get("id") if type(event) is dict else None
            if type(other) is str and other in unique:
                clash.add(other)
        if not clash:
            return False
        for i, event_id in enumerate(ids):
            if event_id in clash:
                lane[i], ids[i] = _EXACT, None
        return True

    # ---- effects ------------------------------------------------------------------------

    def _commit(self, run: range, events: Sequence[Any], raws: Sequence[bytes], source: str, first_line: int,
                sorting: Sorting) -> Iterator[Record]:
        """A run of quiet events: counters, ids and the clock in bulk.

        An event that moves the clock past an open order's deadline is not quiet after all
        (the order escalates at its place), nor is one of an enterprise the decision layer
        watches (its next measurement decides, e.g. discharging without a permit), nor one further
        ahead of the clock than it may move on its own (engine/normalise/clock.py): it is taken
        exactly, and the run goes on after it. Each is judged on the state the rows before left.
        """
        decisions, clock = self.engine.decisions, self.engine.clock
        epochs = sorting.epochs[run.start:run.stop]
        subjects = sorting.subjects
        # quiet only outside some industries: who is registered as what cannot change inside a run
        blocked = blocked_rows(sorting.unless, run, subjects, self.engine.registry) if sorting.unless else ()
        start = 0
        while start < len(epochs):
            highest = max(epochs[start:])
            # nothing can fall due below the clock: the deadline search only when time moves on
            limit = min(decisions.clock if highest <= decisions.clock else decisions.quiet_until(),
                        clock.plausible_until())
            watched = decisions.watched
            stop = start
            top = -math.inf
            if not watched and not blocked and highest <= limit:
                stop, top = len(epochs), highest
            else:
                while (stop < len(epochs) and epochs[stop] <= limit
                       and not (watched and subjects[run.start + stop] in watched)
                       and run.start + stop not in blocked):
                    top = max(top, epochs[stop])
                    stop += 1
            if stop > start:
                self._remember(top, run.start + start, run.start + stop, sorting)
            if stop < len(epochs):
                row = run.start + stop
                self.stats["quiet"] -= 1
                self.stats["exact"] += 1
                yield from self._exact(events[row], raws[row], source, first_line + row, sorting.valid[row])
            start = stop + 1

    def _remember(self, top: float, start: int, stop: int, sorting: Sorting) -> None:
        self.engine.commit_quiet(top, sorting.ids[start:stop], sorting.digests[start:stop],  # type: ignore[arg-type]
                                 sorting.epochs[start:stop], sorting.subjects[start:stop],
                                 sorting.lane[start:stop].count(_UNAVAILABLE))

    def _exact(self, event: Any, raw: bytes, source: str, line: int, valid: bool = False) -> list[Record]:
        if event is UNPARSED:
            return self.engine.process_line(InputLine(source, line, raw))
        return self.engine.process_parsed(event, raw, source, line, valid=valid)


_REGISTERED = "enterprise.registered"
UNKNOWN_INDUSTRY = _UNKNOWN = object()  # an enterprise whose registration may change inside the chunk


class Industry:
    """The industry of an enterprise as the registry says before a chunk; _UNKNOWN for those the
    chunk registers."""

    __slots__ = ("_registry", "registered")

    def __init__(self, registry: Mapping[str, Mapping[str, Any]], registered: Set[Any]) -> None:
        self._registry, self.registered = registry, registered

    def of(self, subject: Any) -> Any:
        if subject in self.registered:
            return _UNKNOWN
        registration = self._registry.get(subject)
        return registration.get("industry") if registration is not None else None


def blocked_rows(unless: Mapping[int, frozenset[str]], rows: range, subjects: Sequence[Any],
                 registry: Mapping[str, Mapping[str, Any]]) -> set[int]:
    """The rows of `rows` that are quiet only outside industries their enterprise is registered in
    (`Sorting.unless`)."""
    blocked = set()
    for row in (range(rows.start, rows.stop) if len(unless) > len(rows) else sorted(unless)):
        industries = unless.get(row)
        if industries is not None and row in rows:
            registration = registry.get(subjects[row])
            if registration is not None and registration.get("industry") in industries:
                blocked.add(row)
    return blocked


_BYTES = frozenset({bytes})


def _colons(text: bytes) -> int:
    """How many bytes `:` the text holds (numpy's compare is more than four times as fast as
    `bytes.count`, which loops byte by byte for a single-byte needle: docs/batch-path.md)."""
    return int(np.count_nonzero(np.frombuffer(text, dtype=np.uint8) == _COLON))


_COLON = ord(":")


def parse_lines(texts: list[bytes]) -> list[Any]:
    """orjson per line; a line that does not parse becomes UNPARSED (quarantined downstream)."""
    try:
        return list(map(orjson.loads, texts))
    except orjson.JSONDecodeError:
        parsed: list[Any] = []
        for text in texts:
            try:
                parsed.append(orjson.loads(text))
            except orjson.JSONDecodeError:
                parsed.append(UNPARSED)
        return parsed


def _registered(events: Sequence[Any]) -> set[str]:
    """The enterprises a chunk registers (or registers again)."""
    try:  # a C loop over the chunk's types: most chunks register no one
        if _REGISTERED not in list(map(itemgetter("type"), events)):
            return set()
    except (KeyError, TypeError, IndexError):
        pass
    return {e["subject"] for e in events
            if type(e) is dict and e.get("type") == _REGISTERED and type(e.get("subject")) is str}


def _group(events: Sequence[Any]) -> Iterator[list[int]]:
    """Row numbers of readings by type and key counts (the fast lane then checks the key sets)."""
    try:  # C loops over the whole chunk; any line that is not an object with a type and data: the slow way
        types = list(map(itemgetter("type"), events))
        "".join(types)  # every type a string (hashable), or the slow way
        datas = list(map(itemgetter("data"), events))
        keys = list(zip(types, map(len, events), map(type, datas), map(len, datas)))
    except (KeyError, TypeError, IndexError):
        keys = [_key(event) for event in events]  # type: ignore[misc]
    return iter([rows for key, rows in rows_by_value(keys).items()
                 if key is not None and key[2] is dict and type(key[0]) is str and key[0] in _READING_TYPES])


def _key(event: Any) -> tuple[Any, ...] | None:
    if type(event) is not dict:
        return None
    data = event.get("data")
    event_type = event.get("type")
    if type(data) is not dict or type(event_type) is not str:
        return None
    return (event_type, len(event), dict, len(data))


def _exact_shapes(rows: list[int], events: Sequence[Any]) -> list[list[int]]:
    """Rows split by exact key sets, those of objects inside `data` too (when key counts alone
    grouped different shapes)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i in rows:
        data = events[i]["data"]
        groups.setdefault((frozenset(events[i]), frozenset(data), _nested(data)), []).append(i)
    return list(groups.values())


def _nested(data: Mapping[str, Any]) -> tuple[tuple[str, frozenset[str]], ...]:
    """The key sets of the objects inside `data` (e.g. a wastewater reading's `production`), by key."""
    return tuple(sorted((key, frozenset(value)) for key, value in data.items() if type(value) is dict))
