"""The batch path gives the per-event path's output byte for byte; dedupe memory is bounded."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine, InputLine, load_plugins
from engine.normalise import DedupeIndex, Seen
from engine.devtools.demo import generate_city

PLUGINS = load_plugins()
CITY = generate_city(enterprises=200, days=1, seed=5)
LINES = [orjson.dumps(e) for e in CITY.events]


def both(lines, batch_size=64):
    inputs = [InputLine("log.jsonl", n, text) for n, text in enumerate(lines, start=1)]
    per_event, batch = Engine(plugins=PLUGINS), Engine(plugins=PLUGINS)
    a = b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in per_event.run(inputs))
    b = b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in batch.run_batch(inputs, batch_size=batch_size))
    return a, b, per_event.summary.to_dict(), batch.summary.to_dict()


def test_demo_log_identical():
    a, b, sa, sb = both(LINES, batch_size=512)
    assert a == b and sa == sb and b'"record":"finding"' in a


BAD = [b"{not json", b"[1", b"2]", b"1,2", b"", b'{"a":1},{"b":2}', b'{"a":"}', b"\xff\xfe", b"{}",
       b'{"specversion":"1.0"}', b"NaN"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(LINES[:400]), st.sampled_from(BAD)), max_size=120), st.integers(1, 50))
def test_generated_logs_identical(lines, batch_size):
    a, b, sa, sb = both(lines, batch_size)
    assert a == b
    assert sa == sb


def test_dedupe_forgets_ids_beyond_the_horizon_and_counts_it():
    index = DedupeIndex(horizon_days=1)
    day = 86400.0
    assert index.check("a", b"x", 0.0) is Seen.NEW
    assert index.check("a", b"x", 0.0) is Seen.DUPLICATE
    assert index.check("a", b"y", 0.0) is Seen.CONFLICT
    for n in range(1, 10):
        index.check(f"e{n}", b"x", n * day)
        index.advance(n * day)  # the stream's clock (engine/normalise/clock.py) moves the horizon
    assert len(index) <= 3  # memory follows the horizon, not the log
    assert index.beyond_horizon(0.0) and not index.beyond_horizon(9 * day)


def test_memory_of_ids_is_flat_in_log_length():
    def held(days: int) -> int:
        engine = Engine(plugins=PLUGINS, dedupe_horizon_days=1)
        list(engine.run(generate_city(enterprises=30, days=days, seed=1).events))
        return len(engine.dedupe)

    assert held(6) <= held(3) * 1.2


def test_the_batch_digests_are_the_per_event_digests():
    from engine.normalise import canonical_json, content_digest, digest_of

    events = generate_city(enterprises=20, days=1, seed=5).events[:500] + [{"b": 1, "a": [1.5, None]}, {"a": [1.5, None], "b": 1}]
    batch = [digest_of(text) for text in map(canonical_json, events)]  # how the fast lane computes them
    assert batch == [content_digest(e) for e in events]
    assert content_digest(events[-1]) == content_digest(events[-2])  # key order is not content
    assert len(set(batch[:500])) == 500


def test_the_long_run_collector_restores_the_process_and_keeps_a_freeze_it_did_not_make():
    """engine/run.py `long_run_collector`: thresholds raised and start-up objects frozen for the
    run, then as before; a process that froze objects itself keeps them frozen."""
    import gc

    from engine.run import long_run_collector

    thresholds = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with long_run_collector():
        assert gc.get_threshold() == (10_000, 20, 100) and gc.get_freeze_count() > 0
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with long_run_collector():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen and gc.get_threshold() == thresholds
    finally:
        gc.unfreeze()
