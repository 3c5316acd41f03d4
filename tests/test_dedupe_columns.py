"""The de-duplication index answers the same whichever way its ids came: one at a time (Python
strings) or as an archive window's columns (engine/normalise/dedupe.py `IdColumns`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.normalise import DedupeIndex, IdColumns, Seen, id_hash, id_hashes
from engine.normalise.dedupe import hash_order

DAY = 86400.0


def columns_of(rows, hashes=None):
    """IdColumns of (id, digest, epoch) rows; `hashes` replaces the ids' own hashes."""
    ids = [r[0] for r in rows]
    return IdColumns(pa.array(ids, type=pa.string()),
                     id_hashes(ids) if hashes is None else np.array(hashes, dtype=np.uint64),
                     np.array([r[1] for r in rows], dtype=np.uint64), np.array([r[2] for r in rows], dtype=np.float64))


def remembered(index: DedupeIndex) -> tuple:
    """The index's state in no particular order (ids kept as columns are listed last)."""
    state = index.state()
    return sorted(map(tuple, state["ids"])), state["newest"], state["purged_at"]


def lane_like(reference: DedupeIndex, index: DedupeIndex, window: list[tuple[str, str, int, float]]) -> list:
    """Drive both indexes through one window as the archive's lane does: quiet rows whose id is
    remembered or repeated in the window are taken exactly; runs of quiet rows between exact
    ones are added in bulk (`add_new` to `reference`, `add_columns` to `index`). Returns what
    each answered, which must agree."""
    answers = []
    counts: dict[str, int] = {}
    for _, event_id, _, _ in window:
        counts[event_id] = counts.get(event_id, 0) + 1
    quiet = [(i, row) for i, row in enumerate(window) if row[0] == "quiet" and counts[row[1]] == 1]
    columns = columns_of([(row[1], row[2], row[3]) for _, row in quiet])
    remembered = index.remembered(columns)
    expected = reference.remembers([row[1] for _, row in quiet])
    assert [row[1] in expected for _, row in quiet] == remembered.tolist()
    position = {i: p for p, (i, _) in enumerate(quiet) if not remembered[p]}
    # rows of digest 2 are held as ones the lane may yet take exactly: marked only when added
    columns.hold(np.array([row[2] == 2 for _, row in quiet], dtype=bool))
    run: list[int] = []

    def commit() -> None:
        if run:
            first, last = run[0], run[-1] + 1
            assert run == list(range(first, last))
            rows = [(quiet[p][1][1], quiet[p][1][2], quiet[p][1][3]) for p in run]
            epochs = [r[2] for r in rows]
            a = reference.add_new([r[0] for r in rows], [r[1] for r in rows], epochs)
            b = index.add_columns(columns, first, last, max(epochs), min(epochs))
            answers.append(("bulk", a, b))
            run.clear()

    for i, (_, event_id, digest, epoch) in enumerate(window):
        if i in position and (not run or position[i] == run[-1] + 1):
            run.append(position[i])
            continue
        commit()
        if i in position:
            run.append(position[i])
            continue
        a = reference.verdict(event_id, digest, epoch)
        b = index.verdict(event_id, digest, epoch)
        answers.append(("exact", a, b))
        reference.advance(epoch)
        index.advance(epoch)
    commit()
    return answers


ROW = st.tuples(st.sampled_from(["quiet", "quiet", "quiet", "exact"]),
                st.integers(0, 60).map(lambda n: f"id-{n}"), st.integers(1, 3),
                st.one_of(st.floats(0, 0.4), st.floats(-2.0, 0.0), st.floats(0.5, 1.6)))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(ROW, max_size=25), max_size=12), st.integers(-1, 11))
def test_columns_and_strings_give_the_same_answers_and_state(windows, restore_at):
    reference, index = DedupeIndex(1.0), DedupeIndex(1.0)
    clock = 0.0
    for number, window in enumerate(windows):
        rows = []
        for kind, event_id, digest, step in window:  # times mostly go on, some jump ahead, some lag
            clock = clock + step * DAY if step > 0 else clock
            rows.append((kind, event_id, digest, clock + step * DAY if step < 0 else clock))
        for _, a, b in lane_like(reference, index, rows):
            assert a == b
        assert len(reference) == len(index)
        assert remembered(reference) == remembered(index)
        probe = [f"id-{n}" for n in range(61)]
        assert reference.remembers(probe) == index.remembers(probe)
        if number == restore_at:  # a checkpoint: the index restored from it is the same index
            restored = DedupeIndex(1.0)
            restored.restore(index.state())
            index = restored


def test_an_id_added_in_this_window_is_known_before_the_window_ends():
    index = DedupeIndex(7.0)
    columns = columns_of([("a", 1, 10.0), ("b", 2, 11.0), ("c", 3, 12.0)])
    assert not index.remembered(columns).any()
    index.add_columns(columns, 0, 2, 11.0, 10.0)
    assert index.check("b", 2, 11.5) is Seen.DUPLICATE
    assert index.check("a", 9, 11.5) is Seen.CONFLICT
    assert index.check("c", 3, 11.5) is Seen.NEW  # not added yet: new, and now remembered one at a time
    assert index.remembers(["a", "b", "c", "d"]) == {"a", "b", "c"}
    assert len(index) == 3


def test_two_ids_with_one_hash_are_told_apart():
    """A hash only says where to look: ids are compared exactly."""
    index = DedupeIndex(7.0)
    index.advance(10.0)  # the purge of the first time seen is behind: both ids go into one block
    index.add_columns(columns_of([("a", 1, 10.0), ("b", 2, 10.0)], hashes=[5, 5]), 0, 2, 10.0, 10.0)
    probe = index.remembered(columns_of([("b", 2, 11.0), ("c", 3, 11.0), ("a", 1, 11.0)], hashes=[5, 5, 5]))
    assert probe.tolist() == [True, False, True]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 5), st.integers(0, 2 ** 64 - 1)), max_size=300))
def test_ids_are_put_in_hash_order_as_a_stable_sort_puts_them(keys):
    """Blocks are kept in this order and a checkpoint lists them in it: equal hashes (two ids with
    one hash) keep the order they came in, on every platform, as numpy's stable sort keeps them."""
    keys = np.array(keys, dtype=np.uint64)
    assert hash_order(keys).tolist() == np.argsort(keys, kind="stable").tolist()


def test_a_window_s_rows_go_into_their_block_in_hash_order_with_ties_as_they_came():
    index = DedupeIndex(7.0)
    index.advance(10.0)
    rows = [("c", 3, 10.0), ("a", 1, 10.0), ("b", 2, 10.0), ("d", 4, 10.0)]
    index.add_columns(columns_of(rows, hashes=[9, 5, 9, 1]), 0, 4, 10.0, 10.0)
    assert [entry[0] for entry in index.state()["ids"]] == ["d", "a", "c", "b"]


def test_ids_kept_as_columns_are_forgotten_in_steps_like_the_others():
    reference, index = DedupeIndex(1.0), DedupeIndex(1.0)
    rows = [(f"e{n}", n, n * 0.1 * DAY) for n in range(40)]  # four days, one window
    columns = columns_of(rows)
    beyond = index.add_columns(columns, 0, 40, rows[-1][2], 0.0)
    assert beyond == reference.add_new([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]) == 0
    assert remembered(index) == remembered(reference)
    assert len(index) == len(reference) < 40
    late = columns_of([("old", 7, 0.0)])
    index.remembered(late)
    assert index.add_columns(late, 0, 1, 0.0, 0.0) == reference.add_new(["old"], [7], [0.0]) == 1


def test_id_hash_is_xxh3_of_the_utf8():
    assert id_hash("") == 0x2D06800538D394C2  # XXH3-64 of no bytes, seed 0 (the xxHash specification's test vector)
    assert id_hashes(["a", "北"]).tolist() == [id_hash("a"), id_hash("北")]
    with pytest.raises(ValueError, match="differ in length"):
        IdColumns(pa.array(["a"]), np.zeros(2, dtype=np.uint64), np.zeros(1, dtype=np.uint64), np.zeros(1))


def test_a_checkpoint_of_many_ids_kept_as_columns_restores_as_columns():
    """A state whose late part is large is restored as a block: the same answers, the same
    purges, and an index fed one id at a time writes its state as before (queue, then late)."""
    reference, index = DedupeIndex(1.0), DedupeIndex(1.0)
    reference.advance(0.0)
    index.advance(0.0)
    rows = [(f"r{n}", n % 5, n * 10.0) for n in range(6000)]
    reference.add_new([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    index.add_columns(columns_of(rows), 0, 6000, rows[-1][2], 0.0)
    state = index.state()
    assert state["late"] == 6000 and reference.state()["late"] == 0
    restored = DedupeIndex(1.0)
    restored.restore(state)
    assert restored._blocks and not restored._late  # kept as a block, not as Python strings
    assert remembered(restored) == remembered(reference)
    for event_id, digest, epoch in [("r17", 2, 7e4), ("r18", 0, 7e4), ("new", 1, 7e4)]:
        assert restored.check(event_id, digest, epoch) == reference.check(event_id, digest, epoch)
    for clock in (DAY, 2 * DAY):
        restored.advance(clock)
        reference.advance(clock)
        assert remembered(restored) == remembered(reference)
    again = DedupeIndex(1.0)
    again.restore(reference.state())
    assert again.state() == reference.state()


def test_more_blocks_than_a_lookup_should_visit_are_merged():
    """One block per window: past 64 they are merged into one, and nothing is forgotten."""
    reference, index = DedupeIndex(None), DedupeIndex(None)  # no horizon: every block stays
    for window in range(70):
        rows = [(f"w{window}-{n}", n, float(window)) for n in range(3)]
        columns = columns_of(rows)
        assert not index.remembered(columns).any()
        index.add_columns(columns, 0, 3, float(window), float(window))
        reference.add_new([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    assert index.remembered(columns_of([("w3-1", 1, 80.0), ("w69-2", 2, 80.0), ("x", 0, 80.0)])).tolist() == \
        [True, True, False]
    assert len(index._blocks) < 64  # merged, not one per window
    assert remembered(index) == remembered(reference) and len(index) == 210
    assert index.check("w0-0", 0, 81.0) is Seen.DUPLICATE and index.check("w5-1", 9, 81.0) is Seen.CONFLICT


def test_rows_added_after_a_checkpoint_in_the_middle_of_a_window_are_found_in_their_block():
    """`state()` in the middle of a window makes the rows added so far a block; the window's later
    rows go into the next block, and a lookup finds each in its own (the bitmap's bit per block)."""
    reference, index = DedupeIndex(None), DedupeIndex(None)
    for window in range(10):  # more windows than the bitmap has bits per slot
        rows = [(f"w{window}-{n}", n, float(window)) for n in range(10)]
        columns = columns_of(rows)
        assert not index.remembered(columns).any()
        index.add_columns(columns, 0, 5, float(window), float(window))
        middle = index.state()
        index.add_columns(columns, 5, 10, float(window), float(window))
        reference.add_new([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
        assert len(middle["ids"]) == 10 * window + 5
    probe = [(f"w{w}-{n}", n, 20.0) for w in range(10) for n in (2, 7)] + [("w3-10", 0, 20.0)]
    assert index.remembered(columns_of(probe)).tolist() == [True] * 20 + [False]
    assert len(index._blocks) == 20 and remembered(index) == remembered(reference)


def test_a_purge_leaves_the_marks_of_the_ids_it_drops_until_they_outnumber_those_kept():
    """A purge drops whole blocks (a window's ids all older than the horizon) without making the
    bitmap afresh: the blocks keep their bits, and the dropped ids' marks only make false alarms
    that the search clears. The bitmap is made afresh when such marks outnumber the live ones,
    so a replay purging every half horizon remakes it at some purges, not at each."""
    reference, index = DedupeIndex(1.0), DedupeIndex(1.0)
    made, purges = [], []
    mark_all, purge = index._mark_all, index._purge
    index._mark_all = lambda: (made.append(len(index)), mark_all())[1]
    index._purge = lambda step: (purges.append(step), purge(step))[1]
    for window in range(24):  # half a day each: the clock reaches a new purge step in every window
        rows = [(f"w{window}-{n}", n % 3, (window + n / 50) * DAY / 2) for n in range(50)]
        columns = columns_of(rows)
        assert not index.remembered(columns).any()
        epochs = [r[2] for r in rows]
        assert index.add_columns(columns, 0, 50, max(epochs), min(epochs)) == \
            reference.add_new([r[0] for r in rows], [r[1] for r in rows], epochs)
        assert remembered(index) == remembered(reference)
        probe = [f"w{w}-{n}" for w in range(window + 1) for n in (0, 17, 49)]  # dropped ones too
        assert index.remembers(probe) == reference.remembers(probe)
        assert index.remembered(columns_of([(i, 0, 0.0) for i in probe])).tolist() == \
            [i in reference.remembers(probe) for i in probe]
        assert [index.check(i, 1, epochs[-1]) for i in probe[-6:]] == [reference.check(i, 1, epochs[-1]) for i in probe[-6:]]
    assert len(purges) >= 20
    assert 0 < len(made) <= 1 + len(purges) // 2  # the first makes the bitmap


def test_a_block_keeps_its_window_s_strings_and_a_purge_frees_what_it_forgets():
    """A window's ids become a block without a copy of their strings (the block keeps positions
    into the window's array); a purge that keeps fewer than half of a block's strings copies those
    it keeps, so the strings of the ids it forgot are freed with the window's array."""
    reference, index = DedupeIndex(1.0), DedupeIndex(1.0)
    rows = [(f"e{n}", n, n * 0.04 * DAY) for n in range(60)]  # 2.4 days in one window
    columns = columns_of(rows)
    index.add_columns(columns, 0, 30, rows[29][2], 0.0)
    reference.add_new([r[0] for r in rows[:30]], [r[1] for r in rows[:30]], [r[2] for r in rows[:30]])
    index.state()  # the 30 rows added so far become a block
    assert index._blocks[0].ids is columns.ids
    index.add_columns(columns, 30, 60, rows[-1][2], rows[30][2])  # the clock passes 2 days: ids before 1 are purged
    reference.add_new([r[0] for r in rows[30:]], [r[1] for r in rows[30:]], [r[2] for r in rows[30:]])
    assert remembered(index) == remembered(reference)
    kept = [block for block in index._blocks if block.ids is not columns.ids]
    assert kept and all(len(block.ids) == len(block) < 30 for block in kept)
    probe = [r[0] for r in rows] + ["x"]
    assert index.remembers(probe) == reference.remembers(probe)
