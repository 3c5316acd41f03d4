"""The columnar lane: an archive's rows replayed by column (engine/ingest/archive.py).

The archive writer validated and normalised every line once, so a typed row (a valid
reading) arrives with its event time, content digest and rule-relevant fields as columns.
For a window of rows in input order this lane:

* gates: rows are grouped by what the rule index and corrections look at (type, pollutant,
  unit, process, point, destination, period, flag, whether O₂ is given, whether a
  benchmark-volume correction's inputs are); each group gets the judge's own `Gate`
  (`Judge.screen`, engine/judge/thresholds.py: cuts from each rule's threshold and the
  `corrected` arithmetic) of the rules in force on some date of the window's rows, and the
  cuts are compared with the value column in numpy (a benchmark-volume correction by
  `Gate.benchmark_quiet_columns`). A row outside the cuts is judged exactly by `Gate.fires`;
* de-duplicates: a quiet row whose id the index remembers, or that another row of the window
  shares, leaves the lane (the rules of the fast lane, engine/fast/lane.py);
* commits the quiet runs between the other rows in bulk (`Host.commit_quiet`), moving the
  clock only up to the next deadline, and takes every other row exactly, in input order: a
  typed row rebuilt into its event, a raw row as its original line.

Quiet rows never become events, nor their ids Python strings: the ids, hashes, digests and
times are handed to the de-duplication index as columns (`IdColumns`), subjects counted by
code. An archive validated by an engine with another validation fingerprint is replayed from
its rebuilt lines through the JSONL batch path instead: the same output, slower.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from bisect import bisect_left
from collections.abc import Callable, Generator, Iterator, Mapping
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.fast.lane import (
    CHUNK_LINES,
    EXACT,
    FLAGGED,
    QUIET,
    FastLane,
    Host,
    blocked_rows,
    parse_lines,
)
from engine.fast.lane import UNKNOWN_INDUSTRY as _UNKNOWN
from engine.fast.lane import Industry as _Industry
from engine.ingest.archive import (
    DATA_COLUMNS,
    PRODUCTION,
    Archive,
    RowBlocks,
    data_of,
    entry_codes,
    entry_values,
    python_values,
    rows_in_order,
    rows_of,
)
from engine.judge import READING_TYPES, UNAVAILABLE, Gate, Rule
from engine.normalise import DIGEST, IdColumns, id_hashes
from engine.records import Record

_READING_TYPES = pa.array(sorted(READING_TYPES))
_GATE_COLUMNS = ("type", "pollutant", "unit", "process", "point", "destination", "period", "flag")
_LINES = CHUNK_LINES  # raw readings sorted at a time (the JSONL batch path's chunk)
_EXACT, _QUIET, _UNAVAILABLE = EXACT, QUIET, FLAGGED  # the fast lane's kinds (`ColumnLane.sort` gives them)


WindowSorting = tuple[np.ndarray, dict[int, frozenset[str]]]  # `ColumnLane.sort_apart`'s result
Windows = Generator[tuple[pa.Table, WindowSorting | None], None, None]


def archive_batches(engine: Host, archive: Archive, skip: int = 0,
                    sorter: Callable[[ColumnLane, Archive, int], Windows] | None = None,
                    ) -> Iterator[tuple[int, list[Record]]] | None:
    """(rows consumed so far, their records) for each window of the archive, in input order, a
    window's records in parts (`ColumnLane.parts`: the rows counted with its last part); None
    when the engine may not trust the archive's validation (the caller replays its lines).
    `sorter`: gives the windows from `skip` on, each with its `sort_apart` (another process reads
    and sorts them, engine/fast/workers.py); by default this process reads and sorts each."""
    if not archive.trusted_by(engine.validation, DIGEST):
        return None
    lane = ColumnLane(engine)
    windows = _apart_while_it_helps(lane, archive, skip, sorter) if sorter is not None else \
        _sorted_here(lane, archive, skip)
    return _windows(lane, windows, skip)


HEAVY_SHARE = 0.10  # a first window with this share of its rows readings taken exactly: the rest sorted here


def _sorted_here(lane: ColumnLane, archive: Archive, skip: int, ahead: _ReadAhead | None = None) -> Windows:
    """The windows from `skip` on, read ahead by a thread, each sorted here when it is applied.
    `ahead`: that thread, already started at `skip`."""
    with contextlib.closing(ahead or _ReadAhead(archive.tables(skip))) as tables:
        for table in tables:
            lane.stats["windows_sorted_here"] += 1
            yield table, None


def _apart_while_it_helps(lane: ColumnLane, archive: Archive, skip: int,
                          sorter: Callable[[ColumnLane, Archive, int], Windows]) -> Windows:
    """The sorter's windows, unless the first shows a finding-heavy archive: when `HEAVY_SHARE` of
    its rows are readings taken exactly (they fire a rule for some industry, or no gate takes
    them), the engine's process spends its time on those, and the sorting process can take off
    it only the sort, a few per cent, which handing each window over costs again (the
    finding-heavy benchmark archive: about a quarter; the demo archive: under 1 %). The sorting
    process then ends, and the rest is read and sorted here (`windows_sorted_here`), as without
    one: a thread starts reading it before the first window is applied. Either way the records
    are the same."""
    apart = sorter(lane, archive, skip)
    with contextlib.closing(apart):  # stops the sorting process (engine/fast/workers.py)
        first = next(apart, None)
        if first is None:
            return
        table, sorting = first
        lane.stats["windows_sorted_apart"] += 1
        if sorting is None or _readings_taken_exactly(table, sorting) < HEAVY_SHARE * table.num_rows:
            yield first
            for window in apart:
                lane.stats["windows_sorted_apart"] += 1
                yield window
            return
    rest = _ReadAhead(archive.tables(skip + table.num_rows))
    try:
        yield first
    except BaseException:  # e.g. the replay stopped at the first window: the thread too
        rest.close()
        raise
    yield from _sorted_here(lane, archive, skip + table.num_rows, rest)


def _readings_taken_exactly(table: pa.Table, sorting: WindowSorting) -> int:
    """Readings of a window that its `sort_apart` sends to the exact path, or leaves quiet only
    outside some industries (a rule of the others fires on them)."""
    kind, unless = sorting
    return int(np.count_nonzero(_readings(table) & (kind == _EXACT))) + len(unless)


class _ReadAhead:
    """The tables of `tables` in order, the next one read by a thread (started at once) while
    the caller works on this one (Parquet decoding and Arrow's kernels release the GIL). An
    error there is raised here. `close` stops the thread."""

    def __init__(self, tables: Iterator[pa.Table]) -> None:
        self._tables = tables
        self._handed: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._read, name="rectify-archive-read", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for table in self._tables:
                while not self._stop.is_set():
                    try:
                        self._handed.put(("table", table), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._handed.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            self._handed.put(("error", exc))

    def __iter__(self) -> Iterator[pa.Table]:
        return self

    def __next__(self) -> pa.Table:
        if self._done:
            raise StopIteration
        what, value = self._handed.get()
        if what == "table":
            return value
        self._done = True
        if what == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        self._done = True
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            self._handed.get_nowait()  # a reader waiting to hand over one more sees `stop` at once
        self._thread.join()
        close = getattr(self._tables, "close", None)
        if close is not None:  # a generator (`Archive.tables`): its reading ends now, not when it is dropped
            close()


def _days(times: pa.ChunkedArray) -> tuple[str, str] | None:
    """The first and last local date (inclusive) of a column of event times, nulls aside: the
    least and greatest time's date, as the judge reads a date (`time[:10]`). For a dictionary
    column, of its dictionaries (values no row uses only widen the span). None without a time."""
    least, greatest = [], []
    for chunk in times.chunks:
        bounds = pc.min_max(chunk.dictionary if pa.types.is_dictionary(chunk.type) else chunk)
        if bounds["min"].is_valid:
            least.append(bounds["min"].as_py())
            greatest.append(bounds["max"].as_py())
    return (min(least)[:10], max(greatest)[:10]) if least else None


def _windows(lane: ColumnLane, windows: Windows, skip: int) -> Iterator[tuple[int, list[Record]]]:
    """A window's records in parts, as they are made; the rows it consumed counted with its last part."""
    done = skip
    for table, sorting in windows:
        held: list[Record] = []
        for part in lane.parts(table, sorting):
            if held:
                yield done, held
            held = part
        done += table.num_rows
        yield done, held


class ColumnLane:
    """Per engine: gates are built on first sight of a group and kept."""

    PART = 256  # records per part of a window (`parts`)

    def __init__(self, engine: Host) -> None:
        self.engine = engine
        self.stats = engine.lane_stats
        self._gates: dict[tuple[Any, ...], Gate | int] = {}
        self._lines = FastLane(engine)  # for valid readings the archive keeps as lines
        self._unless: dict[int, frozenset[str]] = {}  # rows of the window quiet only outside these industries
        self._unless_rows: list[int] = []

    def window(self, table: pa.Table, sorting: WindowSorting | None = None) -> list[Record]:
        """The records of a window of rows (in input order), as the per-event path gives them.
        `sorting`: the window's `sort_apart`, made by another process (else it is sorted here)."""
        return [record for part in self.parts(table, sorting) for record in part]

    def parts(self, table: pa.Table, sorting: WindowSorting | None = None) -> Iterator[list[Record]]:
        """`window`'s records in parts of about `PART` records, each given as soon as it is made:
        written out at once, they are not all alive until the window ends (a finding-heavy
        window makes some 16,000 findings, which the garbage collector would otherwise keep
        going through). The engine's state between two parts is the one their records leave."""
        n = table.num_rows
        if sorting is None:
            kind = self.sort(table, self.engine.registry, defer=True)
        else:
            kind, unless = sorting
            self._unless = self._resolve(table, kind, unless) if unless else {}
            self._unless_rows = sorted(self._unless)
        quiet = np.flatnonzero(kind != _EXACT)
        columns = _id_columns(table, quiet)
        self._exclude_repeated_ids(table, kind, quiet, columns)
        exact = np.flatnonzero(kind == _EXACT)
        self.stats["quiet"] += n - len(exact)
        self.stats["exact"] += len(exact)
        rows = rows_in_order(table.take(exact))
        out: list[Record] = []
        if not len(quiet):
            for row in rows:
                out.extend(self._exact(row))
                if len(out) >= self.PART:
                    yield out
                    out = []
            yield out
            return
        # the runs of quiet rows between exact ones, and what committing each needs, by column
        starts = np.concatenate(([0], exact + 1))
        stops = np.concatenate((exact, [n]))
        runs = stops > starts
        starts, stops = starts[runs], stops[runs]
        position = np.full(n, -1, dtype=np.int64)
        position[quiet] = np.arange(len(quiet))
        firsts, lasts = position[starts], position[stops - 1] + 1
        still = kind[quiet] != _EXACT  # rows excluded after sorting lie between runs: neutral below
        epochs = columns.epochs
        tops = np.maximum.reduceat(np.where(still, epochs, -np.inf), firsts).tolist()
        lows = np.minimum.reduceat(np.where(still, epochs, np.inf), firsts).tolist()
        unavailable = np.add.reduceat((kind[quiet] == _UNAVAILABLE).astype(np.int64), firsts).tolist()
        subjects = table.column("subject").take(quiet).combine_chunks()
        if pa.types.is_dictionary(subjects.type):
            names, codes = entry_values(subjects), entry_codes(subjects)
        else:
            names, codes = subjects.to_pylist(), np.arange(len(quiet))
        registry = self.engine.registry
        known_size = len(registry)
        unknown = ~np.array([name in registry for name in names], dtype=bool)
        strangers = np.add.reduceat((unknown[codes] & still).astype(np.int64), firsts).tolist()
        # rows that may yet be taken exactly: excluded after sorting, quiet only outside some
        # industries, or of an enterprise watched now (the index marks them only if added)
        late = ~still
        if self._unless_rows:
            late[position[self._unless_rows]] = True
        watched = self.engine.decisions.watched
        if watched:
            late |= np.array([name in watched for name in names], dtype=bool)[codes]
        columns.hold(late)
        epoch_list = epochs.tolist()
        window_rows = RowBlocks(table)  # rows a run takes exactly after all
        window_subjects = _Subjects(table.column("subject"))  # for the rows quiet only outside some industries
        quiet_subjects: list[Any] = []  # the quiet rows' subjects, converted when a run first needs them
        # the loop below reads Python ints: a numpy scalar costs more to index, compare and convert
        exact_rows, run_starts = exact.tolist() + [n], starts.tolist()
        first_of, last_of = firsts.tolist(), lasts.tolist()
        runs_count = len(run_starts)
        run = taken = 0
        exact_count = len(exact)
        while run < runs_count or taken < exact_count:
            # runs and exact rows in input order: a run starts where the previous exact row ended
            if run < runs_count and run_starts[run] <= exact_rows[taken]:
                if len(registry) != known_size:  # a registration in between: who is known has changed
                    known_size = len(registry)
                    unknown = ~np.array([name in registry for name in names], dtype=bool)
                    strangers[run:] = np.add.reduceat((unknown[codes] & still).astype(np.int64), firsts[run:]).tolist()
                self._commit(first_of[run], last_of[run], tops[run], lows[run], columns, epoch_list, strangers[run],
                             unavailable[run], run_starts[run], kind, window_subjects, out, window_rows, subjects,
                             quiet_subjects)
                run += 1
            else:
                out.extend(self._exact(next(rows)))
                taken += 1
            if len(out) >= self.PART:
                yield out
                out = []
        yield out

    # ---- sorting --------------------------------------------------------------------------

    def sort(self, table: pa.Table, registry: Mapping[str, Mapping[str, Any]] | None = None,
             defer: bool = False) -> np.ndarray:
        """_QUIET, _UNAVAILABLE or _EXACT per row: typed valid readings inside every cut (a daily
        wastewater reading's benchmark-volume correction made with its own volume and
        production), and valid readings kept as their lines (e.g. such readings in an archive
        before format 3) that the fast lane finds quiet. `registry`: the registrations before the window (as in
        `FastLane.sort`: a reading a rule fires on is judged by its own industry's rules, unless
        the window registers its enterprise; with `defer` (`window` honours it) such rows wait
        in `_unless` for their run, else they are exact)."""
        n = table.num_rows
        kind = np.zeros(n, dtype=np.int8)
        self._unless = {}
        industry = None
        if registry is not None:
            industry = _Industry(registry, _registered(table))
        valid = pc.fill_null(table.column("valid"), False).to_numpy(zero_copy_only=False)
        has_raw = pc.is_valid(table.column("raw")).to_numpy(zero_copy_only=False)
        raw_rows = np.flatnonzero(has_raw & valid & _readings(table))
        if len(raw_rows):
            # parsed and sorted as the JSONL batch path sorts lines (shape plans, gates, the
            # repeated-key screen): the lines were valid when written, the lane proves it again
            texts = table.column("raw").take(raw_rows).to_pylist()
            rows = raw_rows.tolist()
            window_registered = industry.registered if industry else None
            for start in range(0, len(texts), _LINES):  # a chunk of the JSONL path's size stays in cache
                piece = texts[start:start + _LINES]
                sorting = self._lines.sort(parse_lines(piece), piece, registry, window_registered, defer=defer)
                kind[raw_rows[start:start + _LINES]] = sorting.lane
                self._unless.update((rows[start + p], industries) for p, industries in sorting.unless.items())
        self._unless_rows = sorted(self._unless)
        typed_rows = np.flatnonzero(~has_raw & valid)
        if not len(typed_rows):
            return kind
        span = _days(table.column("time"))  # the rules in force in the window make its gates
        era = self.engine.judge.era(*span) if span is not None else None
        # what gating reads: each column converted whole and combined into one key per row, then
        # the typed rows' keys, values and O₂ picked (nearly every row is typed: filtering the
        # table to them first copied all of it)
        codes, keys = [], []  # per column: each row's entry, and the entries' values (None last, for null)
        for name in _GATE_COLUMNS:
            encoded = pc.dictionary_encode(table.column(name)).combine_chunks()
            keys.append(entry_values(encoded))
            codes.append(entry_codes(encoded).astype(np.int64))
        value, o2 = table.column("value").to_numpy(), table.column("o2_percent").to_numpy()
        inputs = _benchmark_inputs(table)
        combined = np.zeros(n, dtype=np.int64)
        for column, names in zip(codes, keys):
            combined = combined * len(names) + column
        combined = (combined * 2 + ~np.isnan(o2)) * 2 + inputs
        combined, value, o2 = combined[typed_rows], value[typed_rows], o2[typed_rows]
        has_o2 = ~np.isnan(o2)
        hashed = pa.array(combined).dictionary_encode()  # groups by hashing (np.unique sorts: 7x slower)
        inverse = hashed.indices.to_numpy()
        count = len(hashed.dictionary)
        first = np.full(count, len(combined))  # each group's first row
        np.minimum.at(first, inverse, np.arange(len(combined)))
        status = np.zeros(count, dtype=np.int8)
        low, high = np.full(count, np.inf), np.full(count, -np.inf)
        o2_free, o2_high = np.full(count, np.nan), np.full(count, np.inf)
        gates: list[Gate | None] = [None] * count
        corrected = np.zeros(count, dtype=bool)  # groups with benchmark-volume cuts
        for g, (row, at) in enumerate(zip(first.tolist(), typed_rows[first].tolist())):  # at: its row in the window
            key = tuple(keys[c][codes[c][at]] for c in range(len(_GATE_COLUMNS)))
            gate = self._gate(key, bool(has_o2[row]), bool(inputs[at]), span, era)
            if isinstance(gate, int):
                status[g] = gate
                low[g], high[g] = -np.inf, np.inf
                continue
            status[g], gates[g] = _QUIET, gate
            corrected[g] = bool(gate.benchmarks)
            low[g], high[g], o2_high[g] = gate.low, gate.high, gate.o2_high
            if gate.o2_free is not None:
                o2_free[g] = gate.o2_free
        with np.errstate(divide="ignore", invalid="ignore"):
            outside = (value > high[inverse]) | (value < low[inverse]) | (value * o2_free[inverse] / (21.0 - o2) > o2_high[inverse])
        row_status = status[inverse]
        quiet = row_status == _QUIET
        outside &= quiet
        # rows of groups with benchmark-volume cuts, each corrected by its own volume and
        # production: outside a cut they are looked at one by one below; inside every cut, some
        # are quiet only outside the industries whose correction cannot be made
        partly, blocked_of = np.zeros(0, dtype=np.int64), []
        blocked_sets: list[frozenset[str]] = []
        benchmarked = np.flatnonzero(corrected[inverse] & quiet & ~outside)
        if len(benchmarked):
            unquiet, blocked_index, blocked_sets = _benchmark_quiet(table, typed_rows, benchmarked, inverse, gates,
                                                                    value)
            outside[benchmarked[unquiet]] = True
            partly = benchmarked[~unquiet & (blocked_index > 0)]
            blocked_of = blocked_index[~unquiet & (blocked_index > 0)].tolist()
        looked = np.flatnonzero(outside)  # rows outside a cut: judged one by one, as the JSONL lane does
        if len(looked):  # but not those past a rule's `sure` cut that may apply to them: exact by column
            sure = _sure(looked, gates, inverse, value, o2, _industries(table.column("subject").take(typed_rows[looked]),
                                                                       industry), span)
            row_status[looked[sure]] = _EXACT
            looked = looked[~sure]
        looked_list = looked.tolist()
        subjects: dict[int, Any] = {}
        days: dict[int, str] = {}
        datas: dict[int, dict[str, Any]] = {}
        if looked_list:  # who and when, for these rows only
            at = table.select(["subject", "time"]).take(typed_rows[looked])
            subjects = dict(zip(looked_list, python_values(at.column("subject"))))
            days = dict(zip(looked_list, python_values(at.column("time"))))
            corrections = looked[corrected[inverse[looked]]]
            if len(corrections):  # their data as the event has it (integers as integers), for the exact test
                names = [name for name in ("shape", *DATA_COLUMNS) if name in table.column_names]
                datas = {p: data_of(row) for p, row in
                         zip(corrections.tolist(), rows_of(table.select(names).take(typed_rows[corrections])))}

        def quiet_unless(p: int, subject: Any, industries: frozenset[str]) -> None:
            """Row p is quiet unless its enterprise is of one of these industries: exact when it is
            registered in one, quiet when registered otherwise or not at all; when the window
            registers it, it waits for its run (`defer`) or is exact."""
            known = industry.of(subject) if industry is not None else _UNKNOWN
            if known is _UNKNOWN:
                if defer:
                    self._unless[int(typed_rows[p])] = industries
                else:
                    row_status[p] = _EXACT
            elif known in industries:
                row_status[p] = _EXACT

        for p in looked_list:
            gate = gates[inverse[p]]
            assert gate is not None
            reading, oxygen, data = float(value[p]), None if not has_o2[p] else float(o2[p]), datas.get(p)
            day = days[p][:10]  # the local date, as the judge reads it
            unless = gate.benchmark_quiet(reading, data) if data is not None else None
            if outside[p] or (data is not None and unless is None):
                known = industry.of(subjects[p]) if industry is not None else _UNKNOWN
                if known is _UNKNOWN:
                    unless = gate.firing(reading, oxygen, data, day) if defer else \
                        (None if gate.fires(reading, oxygen, data, day) else frozenset())
                    if unless is None:
                        row_status[p] = _EXACT
                        continue
                elif gate.fires_for(reading, oxygen, data, known, day):
                    row_status[p] = _EXACT
                    continue
                else:
                    unless = None
            if unless:  # quiet unless the enterprise is of an industry whose rule fires
                quiet_unless(p, subjects[p], unless)
        if len(partly):  # quiet unless the enterprise is of an industry whose correction cannot be made
            names = python_values(table.column("subject").take(typed_rows[partly]))
            for p, subject, index in zip(partly.tolist(), names, blocked_of):
                quiet_unless(p, subject, blocked_sets[index])
        kind[typed_rows] = row_status
        self._unless_rows = sorted(self._unless)
        return kind

    def sort_apart(self, table: pa.Table) -> WindowSorting:
        """`sort` without the registry, for `window` to apply later (in another process): each row
        a rule fires on for some industries only is quiet unless its enterprise, when its run is
        committed, is registered in one of them. Reads no engine state."""
        kind = self.sort(table, None, defer=True)
        return kind, self._unless

    def _resolve(self, table: pa.Table, kind: np.ndarray, unless: dict[int, frozenset[str]]) -> dict[int, frozenset[str]]:
        """A `sort_apart` brought to what `sort` with the registry gives: a row quiet only outside
        some industries is exact when its enterprise is registered in one of them before the window,
        quiet when it is registered otherwise or not at all, and waits for its run (returned) when
        the window registers its enterprise."""
        industry = _Industry(self.engine.registry, _registered(table))  # as `sort` sees the registry
        rows = sorted(unless)
        distinct, codes = _industries(table.column("subject").take(rows), industry)
        waiting = {}
        for row, code in zip(rows, codes.tolist()):
            known = distinct[code]
            if known is _UNKNOWN:
                waiting[row] = unless[row]
            elif known in unless[row]:
                kind[row] = _EXACT
        return waiting

    def _gate(self, key: tuple[Any, ...], has_o2: bool, has_inputs: bool, days: tuple[str, str] | None,
              era: tuple[int, int] | None) -> Gate | int:
        found = self._gates.get(key + (has_o2, has_inputs, era))
        if found is None:
            event_type, pollutant, unit, process, point, destination, period, flag = key
            screened = self.engine.judge.screen(event_type, pollutant, unit, process, point, destination, period,
                                                flag if flag is not None else "N", has_o2, has_inputs, days)
            found = _EXACT if screened is None else _UNAVAILABLE if screened == UNAVAILABLE else screened  # type: ignore[assignment]
            self._gates[key + (has_o2, has_inputs, era)] = found  # type: ignore[assignment]
        return found  # type: ignore[return-value]

    def _exclude_repeated_ids(self, table: pa.Table, kind: np.ndarray, quiet: np.ndarray, columns: IdColumns) -> None:
        """Quiet rows whose id is remembered, repeated in the window, or used by another row of it leave the lane."""
        if not len(quiet):
            return
        clash = self.engine.dedupe.remembered(columns)
        if _maybe_repeated(table):  # some id appears twice among the window's rows: each one leaves
            all_ids = pc.drop_null(table.column("id"))  # every valid row's id, typed or raw
            counts = pc.value_counts(all_ids)
            repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
            clash |= pc.is_in(columns.ids, value_set=repeated).to_numpy(zero_copy_only=False)
        kind[quiet[clash]] = _EXACT

    # ---- effects ----------------------------------------------------------------------------

    def _commit(self, first: int, last: int, top: float, low: float, columns: IdColumns, epochs: list[float],
                strangers: int, unavailable: int, row: int, kind: np.ndarray, window_subjects: _Subjects,
                out: list[Record], rows: RowBlocks, subjects_column: pa.Array, subjects_list: list[Any]) -> None:
        """A run of quiet rows (positions first..last-1 of the quiet columns, from window row `row`):
        in bulk when it cannot pass a deadline (nothing falls due below the clock, so the deadline
        search runs only when time moves on) and no enterprise is watched, else row by row up to
        the row that would pass one, that belongs to a watched enterprise (its next event
        decides), or that is further ahead of the clock than it may move on its own
        (engine/normalise/clock.py): that row is taken exactly (an order escalates at its place),
        and on after it. `subjects_column` holds the quiet rows' subjects; `subjects_list` is
        filled with them as Python values when a run first needs them (shared by the window's runs)."""
        decisions, clock = self.engine.decisions, self.engine.clock
        registry = self.engine.registry
        # rows quiet only outside some industries (engine/fast/lane.py `Sorting.unless`), as offsets in the run
        blocked: set[int] | tuple[()] = ()
        if self._unless:
            low, high = bisect_left(self._unless_rows, row), bisect_left(self._unless_rows, row + last - first)
            if high > low:
                window = {r: self._unless[r] for r in self._unless_rows[low:high]}
                blocked = {r - row for r in blocked_rows(window, range(row, row + last - first),
                                                         window_subjects, registry)}
        if not decisions.watched and not blocked and top <= clock.plausible_until() and \
                (top <= decisions.clock or top <= decisions.quiet_until()):
            self.engine.commit_quiet_columns(top, columns, first, last, low, strangers, unavailable)
            return
        if not subjects_list and len(subjects_column):
            subjects_list.extend(python_values(subjects_column))
        subjects = subjects_list[first:last]  # a run is consecutive quiet rows: window rows row.. are quiet first..
        begin = 0
        size = last - first
        while begin < size:
            limit = min(decisions.quiet_until(), clock.plausible_until())
            watched = decisions.watched  # an enterprise whose next event decides is taken exactly
            end = begin
            while end < size and epochs[first + end] <= limit and not (watched and subjects[end] in watched) \
                    and end not in blocked:
                end += 1
            if end > begin:
                span = range(first + begin, first + end)
                self.engine.commit_quiet_columns(
                    max(epochs[first + begin:first + end]), columns, first + begin, first + end,
                    min(epochs[first + begin:first + end]), sum(1 for i in span if subjects[i - first] not in registry),
                    int((kind[row + begin:row + end] == _UNAVAILABLE).sum()))
            if end < size:
                self.stats["quiet"] -= 1
                self.stats["exact"] += 1
                out.extend(self._exact(rows[row + end]))
            begin = end + 1

    def _exact(self, row: Mapping[str, Any]) -> list[Record]:
        """A row taken exactly (the lane reads only archives this engine trusts)."""
        return self.engine.process_prepared(self.engine.prepare_archived(row))


def _id_columns(table: pa.Table, rows: np.ndarray) -> IdColumns:
    """The ids, id hashes, digests and times of these rows (the archive's `id_hash` column, or
    the hashes made here for an archive written without it)."""
    ids = table.column("id").take(rows).combine_chunks()
    hashes = table.column("id_hash").take(rows) if "id_hash" in table.column_names else None
    if hashes is not None and not hashes.null_count:
        hashes = hashes.to_numpy()
    else:  # format 1
        hashes = id_hashes(ids.to_pylist())
    return IdColumns(ids, hashes, table.column("digest").take(rows).to_numpy(),
                     table.column("epoch").take(rows).to_numpy())


def _benchmark_inputs(table: pa.Table) -> np.ndarray:
    """Whether each row carries a benchmark-volume correction's inputs: `volume_m3` and a
    `production` object (columns since archive format 3; before, such rows were raw)."""
    if PRODUCTION["unit"] not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    return ~np.isnan(table.column("volume_m3").to_numpy()) & \
        pc.is_valid(table.column(PRODUCTION["unit"])).to_numpy(zero_copy_only=False)


def _industries(subjects: pa.ChunkedArray, industry: _Industry | None) -> tuple[list[Any], np.ndarray]:
    """The industries of these rows' enterprises as `Industry.of` gives them (_UNKNOWN for all
    without a registry): the distinct ones, and each row's position among them."""
    array = subjects.combine_chunks()
    if industry is None:
        return [_UNKNOWN], np.zeros(len(array), dtype=np.int64)
    if pa.types.is_dictionary(array.type):  # the names these rows use (the dictionary has all the window's)
        every = entry_values(array)
        used, codes = np.unique(entry_codes(array), return_inverse=True)
        names = [every[i] for i in used.tolist()]
    else:
        names, codes = array.to_pylist(), np.arange(len(array))
    of_name = [industry.of(name) for name in names]
    distinct = list(dict.fromkeys(of_name))
    position = {value: n for n, value in enumerate(distinct)}
    return distinct, np.array([position[value] for value in of_name], dtype=np.int64)[codes]


def _sure(rows: np.ndarray, gates: list[Gate | None], inverse: np.ndarray, values: np.ndarray, o2: np.ndarray,
          industries: tuple[list[Any], np.ndarray], days: tuple[str, str] | None) -> np.ndarray:
    """Which of these typed rows (positions in the window's typed rows) their gate's exact test
    sends to the exact path without conversions (`Gate.fire_surely`: past a rule's `sure` cut,
    the rule in force on every date of the window and for their enterprise: one of its
    industries, or any enterprise, also one the window registers, `_UNKNOWN`). The exact test
    answers the same for them (`Gate.fires_for`, `Gate.firing`); it is left to answer for the others."""
    sure = np.zeros(len(rows), dtype=bool)
    if days is None:
        return sure
    distinct, codes = industries
    groups = inverse[rows]
    for group in np.unique(groups).tolist():
        gate = gates[group]
        if gate is None:
            continue
        at = np.flatnonzero(groups == group)
        applies = partial(_of_industries, distinct, codes[at])
        sure[at[gate.fire_surely(values[rows[at]], o2[rows[at]], applies, days)]] = True
    return sure


def _of_industries(distinct: list[Any], codes: np.ndarray, rule: Rule) -> np.ndarray | None:
    """Which rows (their positions in `distinct`, `_industries`'s) are of an enterprise `rule`
    may apply to: one of its industries (known before the window); None for a rule of every one."""
    if rule.industries is None:
        return None
    return np.array([known is not _UNKNOWN and known in rule.industries for known in distinct])[codes]


def _benchmark_quiet(table: pa.Table, typed_rows: np.ndarray, rows: np.ndarray, inverse: np.ndarray,
                     gates: list[Gate | None], values: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[frozenset[str]]]:
    """`Gate.benchmark_quiet_columns` of these typed rows (positions in `typed_rows`), group by
    group: where it gives None, and the industries it gives elsewhere as indexes into one list."""
    taken = table.select(["volume_m3", *PRODUCTION.values()]).take(typed_rows[rows])
    volumes = taken.column("volume_m3").to_numpy()
    quantities = taken.column(PRODUCTION["quantity"]).to_numpy()
    categories = python_values(taken.column(PRODUCTION["category"]))
    units = python_values(taken.column(PRODUCTION["unit"]))
    pairs = sorted(set(zip(categories, units)), key=repr)
    code = {pair: n for n, pair in enumerate(pairs)}
    products = np.array([code[pair] for pair in zip(categories, units)], dtype=np.int64)
    unquiet = np.zeros(len(rows), dtype=bool)
    index = np.zeros(len(rows), dtype=np.int64)
    numbered: dict[frozenset[str], int] = {frozenset(): 0}
    groups = inverse[rows]
    for g in np.unique(groups).tolist():
        at = np.flatnonzero(groups == g)
        gate = gates[g]
        assert gate is not None
        none, local, local_sets = gate.benchmark_quiet_columns(values[rows[at]], volumes[at], quantities[at],
                                                               products[at], pairs)
        unquiet[at] = none
        renumber = np.array([numbered.setdefault(found, len(numbered)) for found in local_sets], dtype=np.int64)
        index[at] = renumber[local]
    sets = sorted(numbered, key=numbered.__getitem__)
    return unquiet, index, sets


def _maybe_repeated(table: pa.Table) -> bool:
    """Whether an id may appear twice among a window's rows: by the id hashes of its valid rows
    (one sort; equal ids have equal hashes), their ids compared only when two hashes are equal or
    a row has no hash (format 1)."""
    ids = table.column("id")
    if "id_hash" in table.column_names:
        hashes = table.column("id_hash").filter(pc.is_valid(ids))
        if not hashes.null_count:
            keys = np.sort(hashes.to_numpy())
            if not (keys[1:] == keys[:-1]).any():
                return False
    present = pc.drop_null(ids)
    return len(pc.unique(present)) != len(present)


def _registered(table: pa.Table) -> set[Any]:
    """The enterprises a window of rows registers (or registers again)."""
    registrations = _rows_where(table.column("type"), _is_registration)
    return set(pc.drop_null(table.column("subject").filter(registrations)).to_pylist())


def _is_registration(types: pa.Array) -> pa.Array:
    return pc.equal(types, "enterprise.registered")


def _readings(table: pa.Table) -> np.ndarray:
    """Which rows of a window are readings (stack or discharge), as a bool array."""
    return _rows_where(table.column("type"), partial(pc.is_in, value_set=_READING_TYPES))


def _rows_where(column: pa.ChunkedArray, test: Callable[[pa.Array], pa.Array]) -> np.ndarray:
    """`test` (an Arrow kernel giving booleans) of each row, as a bool array; a null row and a
    null result give False. A dictionary chunk (the archive's string columns) is tested once per
    distinct value, and each row takes its value's result."""
    parts = []
    for chunk in column.chunks:
        if not pa.types.is_dictionary(chunk.type):
            parts.append(pc.fill_null(test(chunk), False).to_numpy(zero_copy_only=False))
            continue
        hits = np.append(pc.fill_null(test(chunk.dictionary), False).to_numpy(zero_copy_only=False), False)
        parts.append(hits[entry_codes(chunk)])  # a null row: the False
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


class _Subjects:
    """A window's subject column, converted to Python values when `blocked_rows` first asks
    (a window registering many enterprises asks about thousands of rows: 8 µs each one by one)."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._column = column
        self._values: list[Any] | None = None

    def __getitem__(self, row: int) -> Any:
        if self._values is None:
            self._values = python_values(self._column)
        return self._values[row]


__all__ = ["ColumnLane", "WindowSorting", "Windows", "archive_batches"]
