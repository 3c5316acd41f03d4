"""The pieces distributed replay composes without a cluster: the guarded clock over blocks of
events (engine/normalise/clock.py), the de-duplication index told only where the clock reached a
new purge step (engine/normalise/dedupe.py), and byte ranges of JSONL files read as `read_jsonl`
reads them (engine/ingest/jsonl.py).

Each is checked against the one-event-at-a-time reference on generated inputs (hypothesis,
derandomized in CI).
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ingest import JsonlFiles, read_jsonl
from engine.distributed.blocks import plan
from engine.ingest.jsonl import KEPT_BYTES, byte_ranges, overlong_parts, read_range
from engine.normalise import DedupeIndex, EventClock, Seen

DAY = 86400.0

# event times in days: mostly close together, some far ahead (held, corroborated), some behind
times = st.one_of(st.floats(0, 3), st.floats(0, 40), st.sampled_from([0.0, 8.0, 8.5, 30.0, 1000.0]))
events = st.lists(st.tuples(times, st.sampled_from("abc")), max_size=60)


def reference(clock: EventClock, block: list[tuple[float, str]]) -> list[float]:
    out = []
    for epoch, subject in block:
        clock.observe(epoch, subject)
        out.append(clock.time)
    return out


def state_of(clock: EventClock) -> tuple:
    s = clock.state()
    return s["time"], s["held"], s["stranded"]


@settings(max_examples=300, deadline=None)
@given(st.lists(events, min_size=1, max_size=4), st.sampled_from([7.0, 1.0, None]), st.integers(1, 3))
def test_blocks_fold_to_the_one_event_at_a_time_clock(blocks, lead, quorum):
    """`run` per block equals `observe` per event; where a clock `runs_through` a block's
    summary, `skip` leaves the same state as folding it."""
    one = EventClock(lead, quorum, max_held=8)
    composed = EventClock(lead, quorum, max_held=8)
    for block in blocks:
        block = [(t * DAY, s) for t, s in block]
        expected = reference(one, block)
        epochs = np.array([t for t, _ in block], dtype=float)
        summary = composed.summary(epochs)
        if composed.runs_through(summary):
            skipped = EventClock(lead, quorum, max_held=8)
            skipped.restore(composed.state())
            skipped.skip(summary)
            got = composed.run(epochs, [s for _, s in block])
            assert state_of(skipped) == state_of(composed)
        else:
            got = composed.run(epochs, [s for _, s in block])
        assert got.tolist() == expected
        assert state_of(composed) == state_of(one)


def test_a_block_with_a_far_event_does_not_run_through():
    clock = EventClock(7.0, 2)
    clock.run(np.array([0.0, 1.0]), ["a", "b"])
    assert clock.time == 1.0
    assert clock.runs_through(clock.summary(np.array([2.0, 3.0 * DAY])))
    assert not clock.runs_through(clock.summary(np.array([2.0, 30.0 * DAY])))
    assert not EventClock(7.0, 2).runs_through(EventClock(7.0, 2).summary(np.array([1.0])))  # not started


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("uvwxyz"), st.sampled_from("pq"), st.floats(0, 30)), max_size=80),
       st.sampled_from([1.0, 7.0, None]))
def test_an_index_told_only_the_steps_forgets_what_one_index_forgets(lines, horizon):
    """One index sees every clock move; a second holds only some of the ids and sees the clock only
    where it reached a new purge step (`steps`): the same verdicts."""
    one = DedupeIndex(horizon)
    part = DedupeIndex(horizon)
    clock = -math.inf
    afters = []
    for _, _, day in lines:  # the clock after each line: a running maximum of the event times
        clock = max(clock, day * DAY)
        afters.append(clock)
    purges = set(part.steps(-math.inf, np.array(afters)).tolist())
    for n, (event_id, content, day) in enumerate(lines):
        expected = one.check(event_id, hash_of(content), day * DAY)
        one.advance(afters[n])
        if event_id in "uvw":  # the partition holds these ids only
            assert part.check(event_id, hash_of(content), day * DAY) == expected
        if n in purges:
            part.advance(afters[n])
    assert len(part) == len([i for i in one.state()["ids"] if i[0] in "uvw"])


def hash_of(content: str) -> int:
    return {"p": 1, "q": 2}[content]


def test_remember_is_check_for_new_ids():
    a, b = DedupeIndex(1.0), DedupeIndex(1.0)
    ids, epochs = ["x", "y", "z", "w"], [5.0, 6.0, 2.0, 7.0]
    for i, e in zip(ids, epochs):
        assert a.check(i, 1, e) is Seen.NEW
    b.remember(ids, [1] * 4, epochs)
    assert a.state() == b.state()


# ---- byte ranges ----------------------------------------------------------------------------

pieces = st.lists(st.sampled_from([b'{"a":1}', b"", b"\r", b"{bad", b"x" * 30, "é".encode(), b"\xff"]), max_size=12)


@settings(max_examples=200, deadline=None)
@given(pieces, st.booleans(), st.booleans(), st.integers(1, 40))
def test_byte_ranges_read_the_lines_read_jsonl_reads(tmp_path_factory, lines, bom, trailing, size):
    path = tmp_path_factory.mktemp("ranges") / "log.jsonl"
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + (b"\n" if trailing and lines else b"")
    path.write_bytes(data)
    expected = [line for _, _, chunk in JsonlFiles([path]).chunks(7) for line in chunk]  # what `rectify run` reads
    if data != b"\xef\xbb\xbf":
        assert expected == [item.text for item in read_jsonl([path])]
    got = []
    ranges = byte_ranges(str(path), size)
    assert not data or (ranges[0][0] == 0 and ranges[-1][1] == len(data))
    for start, stop in ranges:
        got.extend(read_range(str(path), start, stop))
    assert got == expected


long_pieces = st.lists(st.one_of(st.sampled_from([b'{"a":1}', b"", b"\xff", "é".encode()]),
                                 st.integers(0, 60).map(lambda n: b"x" * n)), max_size=10)


@settings(max_examples=300, deadline=None)
@given(long_pieces, st.booleans(), st.booleans(), st.integers(1, 40), st.integers(1, 50), st.integers(1, 30))
def test_every_reader_gives_a_line_past_the_limit_as_its_start_and_length(tmp_path_factory, lines, bom, trailing,
                                                                         limit, block, size):
    """`JsonlFiles.chunks`, `read_jsonl` and `read_range` agree line for line with a `max_line_bytes`,
    however blocks and ranges fall, and each line is the line itself or, past the limit, its start
    with its length and the limit (engine/ingest/jsonl.py)."""
    path = tmp_path_factory.mktemp("long") / "log.jsonl"
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + (b"\n" if trailing and lines else b"")
    path.write_bytes(data)
    chunked = [line for _, _, chunk in JsonlFiles([path], block_bytes=block, max_line_bytes=limit).chunks(3)
               for line in chunk]
    ranged = [line for start, stop in byte_ranges(str(path), size) for line in read_range(str(path), start, stop, limit)]
    assert chunked == ranged
    if data != b"\xef\xbb\xbf":
        assert chunked == [item.text for item in read_jsonl([path], max_line_bytes=limit)]
    if lines and not lines[-1] and not trailing:  # the file ends with the newline before it: no line after
        lines = lines[:-1]
    assert len(chunked) == len(lines)
    for got, line in zip(chunked, lines):
        if len(line) <= limit:
            assert got == line
        else:
            assert overlong_parts(got) == (line[:KEPT_BYTES], len(line), limit)


def test_a_line_past_the_limit_is_not_held(tmp_path):
    """A 48 MiB line with no newline (a disk image, say) read with a 1 MiB limit: no reader holds
    more than a few MiB of it (tracemalloc's peak); each keeps its start and counts the rest."""
    path = tmp_path / "image.jsonl"
    with path.open("wb") as handle:
        handle.write(b'{"id":"before"}\n')
        for _ in range(48):
            handle.write(b"\0" * (1 << 20))
        handle.write(b'\n{"id":"after"}\n')
    readers = {
        "chunks": lambda: [x for _, _, c in JsonlFiles([path], max_line_bytes=1 << 20).chunks(256) for x in c],
        "read_jsonl": lambda: [item.text for item in read_jsonl([path], max_line_bytes=1 << 20)],
        "read_range": lambda: [x for a, b in byte_ranges(path, 1 << 22) for x in read_range(path, a, b, 1 << 20)],
    }
    for name, read in readers.items():
        tracemalloc.start()
        try:
            lines = read()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 12 << 20, (name, peak)
        assert lines[0] == b'{"id":"before"}' and lines[2] == b'{"id":"after"}' and len(lines) == 3, name
        assert overlong_parts(lines[1]) == (b"\0" * KEPT_BYTES, 48 << 20, 1 << 20), name


def test_a_line_split_across_ranges_belongs_to_the_range_it_starts_in(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"first line\nsecond, a long line\nthird")
    assert read_range(str(path), 0, 12) == [b"first line", b"second, a long line"]
    assert read_range(str(path), 12, 25) == []
    assert read_range(str(path), 25, 35) == [b"third"]
    assert read_range(str(path), 11, 12) == [b"second, a long line"]


@pytest.mark.parametrize("size", [1, 3])
def test_empty_and_bom_only_files(tmp_path, size):
    for data, lines in ((b"", []), (b"\xef\xbb\xbf", []), (b"\xef\xbb\xbf\n", [b""]), (b"\n\n", [b"", b""])):
        path = tmp_path / "log.jsonl"
        path.write_bytes(data)
        got = [line for start, stop in byte_ranges(str(path), size) for line in read_range(str(path), start, stop)]
        assert got == lines


@pytest.mark.parametrize(("size", "block", "readers"), [(304_000_000, 32 << 20, 2), (1000, 97, 2), (1000, 97, 3),
                                                         (10, 4, 4), (1, 32, 2), (130_000, 1 << 17, 2)])
def test_blocks_are_even_and_a_multiple_of_the_readers(tmp_path, size, block, readers):
    """A file is cut into blocks of equal size (none larger than asked), as many as a multiple of
    the readers where the bytes allow: each round hands every reader a block of the same size."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"x" * size)
    blocks = list(plan([str(path)], block, 1000, 1 << 17, readers))
    sizes = [b.stop - b.start for b in blocks]
    assert blocks[0].start == 0 and blocks[-1].stop == size
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
    assert max(sizes) <= block and max(sizes) - min(sizes[:-1] or sizes) == 0
    assert len(blocks) % readers == 0 or max(sizes) == 1 or len(blocks) == 1
    assert sizes[-1] >= max(sizes) - len(blocks)  # the last block is short by the rounding only
