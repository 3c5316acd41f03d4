"""The batch path on more than one core: chunks of files sorted in worker processes.

What the fast lane learns about a chunk before it touches engine state (parsing, shape
plans, gates, event times, content digests) is a pure function of the lines. Worker
processes do that part. They are forked from the process that holds the engine, so they
share its compiled rules, schemas and plugins without pickling any of them. Each worker
reads the input files itself (chunks are fixed runs of lines, engine/ingest/jsonl.py), sorts
each chunk nobody has taken yet, and sends the sorting back through its own pipe. The engine's
process reads the files too, sorts the chunks no worker took in time, takes the sortings in
input order, parses again only the lines that take the exact path, and makes every decision.
Only sortings cross a pipe, one way; the shared count of chunks taken is held only for a test
and an increment. No worker can reorder anything: the output is the single-process output,
record for record (tests/test_fastlane.py).

An archive (engine/ingest/archive.py) is read and sorted by one forked process: it reads
each window of rows, sorts it by column (`ColumnLane.sort_apart`), and hands over the window
(an Arrow file in shared memory) with its sorting; the engine's process only applies them
(engine/fast/columns.py). One process suffices: reading and sorting a window takes less
than applying it.

This needs files (standard input cannot be read twice) and a POSIX system (fork);
otherwise the batch path sorts in-process.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from engine.fast.columns import ColumnLane, Windows, WindowSorting
from engine.fast.lane import UNPARSED, FastLane, Sorting, parse_lines
from engine.ingest.archive import Archive, ArchiveError
from engine.ingest.jsonl import JsonlFiles


class HelperFailed(RuntimeError):
    """A forked helper (a sorting process, the what-if's replay of B) ended before it handed over
    its work: killed (the out-of-memory killer sends SIGKILL) or failed. The replay stops there, so
    what it wrote is incomplete. `detail`: the helper's traceback when it failed (a bug to report)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def freeze_existing() -> bool:
    """Freeze the objects that exist now out of the garbage collector (`gc.freeze`) until
    `thaw`; returns whether it froze: not when objects are frozen already (by the process
    itself, or by engine/run.py `long_run_collector` around rectify's command line and service),
    whose freeze is left as it is. Garbage made before is collected after `thaw`; the output
    does not depend on it.

    Taken before forking helpers (no exec), as the gc module's documentation advises: a
    collection in either process then leaves those objects alone, so neither writes to the pages
    the two still share and has the kernel copy them. (Before it, in a long-lived process with a
    large heap, a replay with one sorting process was at times slower than one without; README,
    Performance.)"""
    if gc.get_freeze_count():
        return False
    gc.freeze()
    return True


def thaw(frozen: bool) -> None:
    """What `freeze_existing` froze (when it did) goes back to the collector."""
    if frozen:
        gc.unfreeze()


def ended_early(process: Any, work: str) -> HelperFailed:
    """The error for a helper whose pipe closed before it handed over `work`: how it ended (its
    exit code or signal, waited for up to 5 s)."""
    process.join(5)
    code = process.exitcode
    if code is None:
        how = "it closed its pipe"
    elif code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        how = f"killed by {name}" + (", which the out-of-memory killer sends" if -code == signal.SIGKILL else "")
    else:
        how = f"exit code {code}"
    return HelperFailed(f"{process.name} ended before it handed over {work} ({how}); the replay stopped there, "
                        "so its outputs are incomplete")


def failed(name: str, work: str, detail: str) -> HelperFailed:
    """The error for a helper that sent its traceback (`detail`) instead of `work`: its last line says what."""
    last = detail.strip().splitlines()[-1] if detail.strip() else "no reason given"
    return HelperFailed(f"{name} failed on {work}: {last}", detail)


class LazyEvents(Sequence[Any]):
    """A chunk's lines parsed on first use: the exact path needs only a few of them."""

    def __init__(self, texts: list[bytes]) -> None:
        self._texts = texts
        self._parsed: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._texts)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        found = self._parsed.get(index, self)
        if found is self:
            try:
                found = orjson.loads(self._texts[index])
            except orjson.JSONDecodeError:
                found = UNPARSED
            self._parsed[index] = found
        return found


def can_share(files: Any) -> bool:
    """Whether worker processes can sort these inputs: re-readable files or an archive, and fork."""
    return (isinstance(files, Archive) or isinstance(files, JsonlFiles) and files.rereadable) \
        and "fork" in multiprocessing.get_all_start_methods()


def sorted_file_chunks(lane: FastLane, files: JsonlFiles, size: int,
                       workers: int, skip: int = 0) -> Iterator[tuple[tuple[str, int, list[bytes]], Sorting, Sequence[Any]]]:
    """Each chunk of `files` with its sorting and its events, in input order, sorted by `workers`
    processes or by this one. Events of a chunk sorted here are the parsed ones; of a worker's,
    parsed on use.

    Who sorts a chunk is decided as the work goes (`_Claims`): every process walks the chunks in
    order and takes the next one nobody has taken. This process sorts a chunk itself when no
    worker has taken it by the time it is needed, and, while it waits for one a worker took, the
    next chunks nobody has taken (up to `_OWN_AHEAD`): the share adapts to how fast each side is,
    on an idle machine or a busy one. A sorting is a function of the chunk's lines alone, so who
    made it does not matter."""
    context = multiprocessing.get_context("fork")
    claims = _Claims(context)
    pipes: list[Any] = []
    processes: list[Any] = []
    frozen = freeze_existing()
    try:
        for index in range(workers):
            receiving, sending = context.Pipe(duplex=False)
            process = context.Process(target=_sort_share, args=(lane, files, size, skip, claims, sending,
                                                                [*pipes, receiving]),
                                      name=f"rectify-sort-{index}", daemon=True)
            process.start()
            sending.close()  # the worker holds the sending end
            pipes.append(receiving)
            processes.append(process)
        arrived: dict[int, Sorting] = {}  # sortings received before their turn
        own: dict[int, tuple[Sorting, list[Any]]] = {}  # chunks this process sorted ahead, while it would have waited
        read: dict[int, tuple[str, int, list[bytes]]] = {}  # chunks read ahead of their turn
        chunks = enumerate(files.chunks(size, skip))
        open_pipes: dict[Any, Any] = dict(zip(pipes, processes))

        def chunk_at(wanted: int) -> tuple[str, int, list[bytes]] | None:
            """Chunk number `wanted` (read on until it comes), None past the end."""
            while wanted not in read:
                found = next(chunks, None)
                if found is None:
                    return None
                read[found[0]] = found[1]
            return read[wanted]

        def sort_here(chunk: tuple[str, int, list[bytes]]) -> tuple[Sorting, list[Any]]:
            events = parse_lines(chunk[2])
            return lane.sort(events, chunk[2], defer=True), events

        number = 0
        while (chunk := chunk_at(number)) is not None:
            del read[number]
            stuck = _workers_alive(processes, number)
            if number in own:
                sorting, events = own.pop(number)
                yield chunk, sorting, events
            elif number not in arrived and claims.take(number, stuck):
                sorting, events = sort_here(chunk)
                yield chunk, sorting, events
            else:
                while number not in arrived:  # a worker took it: receive, or sort the next chunk nobody took meanwhile
                    if not open_pipes:
                        raise HelperFailed(f"no sorting process sent chunk {number}")
                    ready = _ready(open_pipes, 0)
                    if not ready and len(own) < _OWN_AHEAD:
                        ahead = claims.take_next(stuck)
                        found = chunk_at(ahead)
                        if found is not None:
                            own[ahead] = sort_here(found)
                            continue
                    if not ready:
                        ready = _ready(open_pipes, None)
                    for connection in ready:
                        process = open_pipes[connection]
                        try:
                            sent, received = connection.recv()
                        except (EOFError, OSError):  # it sent all it took, unless it was killed with a chunk
                            process.join(5)  # taken (or half sent: "got end of file during message")
                            if process.exitcode != 0:
                                raise ended_early(process, f"chunk {number}") from None
                            del open_pipes[connection]
                            continue
                        if isinstance(received, str):
                            raise failed(process.name, f"chunk {sent}", received)
                        if sent < number or sent in arrived or sent in own:
                            raise HelperFailed(f"{process.name} sent chunk {sent} again")
                        arrived[sent] = received
                yield chunk, arrived.pop(number), LazyEvents(chunk[2])
            number += 1
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()  # a worker holds nothing to clean up; a stopped one would not see SIGTERM
            process.join()
        for pipe in pipes:
            pipe.close()
        thaw(frozen)


_OWN_AHEAD = 8  # chunks the engine's process sorts ahead while it waits for a worker's (memory stays bounded)


def _ready(pipes: dict[Any, Any], timeout: float | None) -> list[Any]:
    """The pipes with something to read (a sorting, or their end), waiting up to `timeout` seconds."""
    return list(multiprocessing.connection.wait(list(pipes), timeout=timeout))


class _Claims:
    """Which chunks have been taken: every process walks the chunks in order, and a chunk is taken
    by whoever reaches it first (the shared count of chunks taken is then its number). A lock
    makes the test and the count one step. Whoever waits for the lock checks every second that the
    others are alive (`stuck`): a process killed while it held the lock never gives it back."""

    def __init__(self, context: Any) -> None:
        self._taken = context.Value("q", 0, lock=False)
        self._lock = context.Lock()

    def take(self, number: int, stuck: Callable[[], None]) -> bool:
        """Take chunk `number` when nobody has (True); False when somebody already has. `stuck`:
        see `_acquire`."""
        _acquire(self._lock, stuck)
        try:
            if self._taken.value != number:
                return False
            self._taken.value = number + 1
            return True
        finally:
            self._lock.release()

    def take_next(self, stuck: Callable[[], None]) -> int:
        """Take the first chunk nobody has taken (which may lie past the end): its number."""
        _acquire(self._lock, stuck)
        try:
            number = self._taken.value
            self._taken.value = number + 1
            return int(number)
        finally:
            self._lock.release()


def _acquire(lock: Any, stuck: Callable[[], None]) -> None:
    """Acquire `lock` (or semaphore), calling `stuck` each second it is not free: `stuck` raises
    when the process that would free it may be dead (`_workers_alive`, `_parent_alive`)."""
    while not lock.acquire(timeout=1.0):
        stuck()


def _workers_alive(processes: Sequence[Any], number: int) -> Callable[[], None]:
    def check() -> None:
        for process in processes:
            if not process.is_alive() and process.exitcode != 0:
                raise ended_early(process, f"chunk {number}")
    return check


def _parent_alive(parent: int) -> Callable[[], None]:
    def check() -> None:
        if os.getppid() != parent:
            raise BrokenPipeError("the engine's process is gone")
    return check


def _sort_share(lane: FastLane, files: JsonlFiles, size: int, skip: int, claims: _Claims, pipe: Any,
                inherited: list[Any]) -> None:
    """A worker: sort each chunk nobody has taken yet, and send (chunk number, sorting) for each.
    When the engine's process is gone, a send fails and the worker ends."""
    for other_end in inherited:  # with them open here, a send could wait forever for a reader that died
        other_end.close()
    number = -1
    stuck = _parent_alive(os.getppid())
    try:
        for number, (_, _, texts) in enumerate(files.chunks(size, skip)):
            if claims.take(number, stuck):
                pipe.send((number, lane.sort(parse_lines(texts), texts, defer=True)))
    except BrokenPipeError:
        pass  # the engine's process is gone
    except BaseException:  # noqa: BLE001 - reported to the engine's process, which raises it
        _report(pipe, number, traceback.format_exc())
    finally:
        pipe.close()


def sorted_windows(lane: ColumnLane, archive: Archive, skip: int = 0) -> Windows:
    """Each window of `archive` from row `skip` on with its sorting, in input order, read and
    sorted by one forked process. An ArchiveError there (a damaged part file) is raised here.

    Windows come through memory, not the pipe: the process writes each as an Arrow IPC file in
    a private directory of /dev/shm (or the temporary directory), which this process maps
    without copying and removes; at most `_AHEAD` windows are written ahead. A window that
    cannot be written there comes through the pipe."""
    context = multiprocessing.get_context("fork")
    # the engine's process id in the name: whose folder it is (a killed replay's, or a running one's)
    folder = tempfile.mkdtemp(prefix=f"rectify-windows-{os.getpid()}-", dir=_shared_memory())
    receiving, sending = context.Pipe(duplex=False)
    room = context.Semaphore(_AHEAD)
    process = context.Process(target=_sort_windows, args=(lane, archive, skip, folder, room, sending, receiving),
                              name="rectify-sort-archive", daemon=True)
    frozen = freeze_existing()
    try:
        process.start()
        sending.close()
        number = 0
        while True:
            try:
                message = receiving.recv()
            except (EOFError, OSError):  # OSError: it was killed half way through sending one
                raise ended_early(process, f"window {number} of the archive") from None
            if message is None:
                return
            sent, path, has_unless = message
            if has_unless is None:  # `path` is what went wrong
                if isinstance(path, ArchiveError):
                    raise path
                raise failed(process.name, f"window {sent} of the archive", path)
            if sent != number:
                raise HelperFailed(f"{process.name} sent window {sent}, expected {number}")
            if isinstance(path, str):
                with pa.memory_map(path) as source:
                    table = pa.ipc.open_file(source).read_all()
                os.unlink(path)  # the mapping stays until the table is dropped
            else:  # no room for the file: the window came through the pipe
                table = path
            room.release()
            yield _sorting_of(table, has_unless)
            number += 1
    finally:
        if process.pid is not None:  # started
            if process.is_alive():
                process.terminate()
            process.join()
        receiving.close()
        shutil.rmtree(folder, ignore_errors=True)
        thaw(frozen)


_AHEAD = 4  # windows the archive's process may have written before the engine's takes them (about 11 MB each)
_KIND, _UNLESS = "rectify.kind", "rectify.unless"  # the columns a window's file carries its sorting in


def _with_sorting(table: pa.Table, sorting: WindowSorting) -> pa.Table:
    """The window with its sorting (`ColumnLane.sort_apart`) as two more columns: each row's kind,
    and the industries a row is quiet only outside of, dictionary-coded (a few distinct sets,
    each as JSON, for a quarter of the rows of a finding-heavy window; null for the others)."""
    kind, unless = sorting
    table = table.append_column(_KIND, pa.array(kind, type=pa.int8()))
    if unless:
        sets = sorted(set(unless.values()), key=sorted)
        code_of = {industries: code for code, industries in enumerate(sets)}
        codes = np.full(table.num_rows, -1, dtype=np.int32)
        codes[np.fromiter(unless.keys(), dtype=np.int64, count=len(unless))] = \
            np.fromiter(map(code_of.__getitem__, unless.values()), dtype=np.int32, count=len(unless))
        column = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0),
                                                pa.array([orjson.dumps(sorted(s)).decode() for s in sets]))
        table = table.append_column(_UNLESS, column)
    return table


def _sorting_of(table: pa.Table, has_unless: bool) -> tuple[pa.Table, WindowSorting]:
    """`_with_sorting` undone: the window and its sorting."""
    kind = table.column(_KIND).to_numpy().copy()  # the window's lane changes it
    unless: dict[int, frozenset[str]] = {}
    if has_unless:
        column = table.select([_UNLESS]).unify_dictionaries().column(0).combine_chunks()
        sets = [frozenset(orjson.loads(text)) for text in column.dictionary.to_pylist()]
        rows = pc.indices_nonzero(pc.is_valid(column))
        unless = dict(zip(rows.to_pylist(), map(sets.__getitem__, column.indices.take(rows).to_pylist())))
    return table.drop_columns([name for name in (_KIND, _UNLESS) if name in table.column_names]), (kind, unless)


def _shared_memory() -> str | None:
    """/dev/shm when it is there with room to spare (a container's may hold only 64 MB; a window
    of rows is about 11 MB, more with long raw lines), else None: the temporary directory."""
    try:
        if os.access("/dev/shm", os.W_OK) and shutil.disk_usage("/dev/shm").free >= 1 << 30:
            return "/dev/shm"
    except OSError:
        pass
    return None


def _sort_windows(lane: ColumnLane, archive: Archive, skip: int, folder: str, room: Any, pipe: Any,
                  other_end: Any) -> None:
    """The archive's process: for each window, write it to `folder` and send (window number, its
    file, its sorting); then None. When the engine's process is gone, it removes `folder` and ends."""
    other_end.close()  # inherited: with it open here, a send would wait forever for a reader that died
    number = 0
    stuck = _parent_alive(os.getppid())  # raises BrokenPipeError once the engine's process was killed
    try:
        for table in archive.tables(skip):
            sorting = lane.sort_apart(table)
            _acquire(room, stuck)
            # the sorting goes with the rows: a message larger than the pipe holds would keep this
            # process waiting until the engine's takes it, one window after another
            pipe.send((number, _handed_over(_with_sorting(table, sorting), os.path.join(folder, f"{number}.arrow")),
                       bool(sorting[1])))
            number += 1
        pipe.send(None)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # the engine's process is gone: nobody will take the windows,
            shutil.rmtree(folder, ignore_errors=True)  # leave nothing behind
        else:
            _report(pipe, number, traceback.format_exc(), None)
    except ArchiveError as exc:
        _report(pipe, number, exc, None)
    except BaseException:  # noqa: BLE001 - reported to the engine's process, which raises it
        _report(pipe, number, traceback.format_exc(), None)
    finally:
        pipe.close()


def _handed_over(table: pa.Table, path: str) -> str | pa.Table:
    """The window written to `path` (returned), or the table itself, to go through the pipe
    (slower), when the file cannot be written (e.g. no room left)."""
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return path
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return table


def _report(pipe: Any, number: int, *problem: Any) -> None:
    try:
        pipe.send((number, *problem))
    except OSError:  # the engine's process is gone
        pass
