"""Distributed replay on Dask (engine/distributed.py): byte-identical to the single-process run.

The tests start a real LocalCluster (2 worker processes, one thread each) and compare the
JSONL bytes of the distributed run with `Engine.run` on one machine, record for record.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import orjson
import pytest

pytest.importorskip("dask.distributed")

from click.testing import CliRunner  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402

from engine.devtools.demo import AUTHORITY, generate_city, with_follow_up  # noqa: E402
from engine.ingest import JsonlFiles  # noqa: E402
from engine.distributed import DistributedRun, partition_of, run_distributed  # noqa: E402
from engine.distributed.node import SWITCH  # noqa: E402
from engine.pipeline import Engine  # noqa: E402
from engine.records import Decision  # noqa: E402
from engine.output import dumps  # noqa: E402
from engine.validate import make_uscc  # noqa: E402
from engine.version import __version__  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        c.wait_for_workers(2)
        yield c


def single(lines, as_of=None, **engine_kwargs) -> tuple[bytes, dict]:
    engine = Engine(**engine_kwargs)
    data = b"".join(dumps(r.to_dict()) for r in engine.run(lines, as_of=as_of))
    return data, engine.summary.to_dict()


def distributed(lines, client, as_of=None, chunk_size=50_000, **engine_kwargs) -> tuple[bytes, dict, DistributedRun]:
    job = DistributedRun(lines, client=client, as_of=as_of, chunk_size=chunk_size, **engine_kwargs)
    data = b"".join(dumps(r.to_dict()) for r in job)
    return data, job.summary.to_dict(), job


def assert_same(expected: bytes, got: bytes) -> None:
    if expected != got:  # say where, not just that
        a, b = expected.split(b"\n"), got.split(b"\n")
        for n, (x, y) in enumerate(zip(a, b)):
            assert x == y, f"record {n} differs"
        assert len(a) == len(b)
    assert expected == got


# ---- the generated log: orders whose deadlines fall due through other enterprises' events -----

def code(n: int) -> str:
    return make_uscc(f"91330200MA2D{n:05d}")


FIRMS = [code(n) for n in range(14)]


def generated_log() -> list[bytes]:
    """Orders on several enterprises (both partitions), deadlines passed only by other firms'
    events, a failing inspection, verifications before and after deadlines, a year close with a
    closed-by-law firm, a late finance record, a second close, a second year (consecutive D),
    duplicates, an id reused by another enterprise, bad lines, out-of-order and minute data."""
    number = 0

    def ev(type_: str, subject: str, time: str, data: dict, id: str | None = None) -> dict:
        nonlocal number
        number += 1
        return {"specversion": "1.0", "id": id or f"g-{number}", "source": "test", "type": type_, "subject": subject,
                "time": time, "data": data}

    def finance_of_everyone(year: int, time: str) -> list[dict]:
        """The same figures every year, so the low scorers stay low (consecutive D years)."""
        out = []
        for n, firm in enumerate(FIRMS):
            tax = 30_000 * (3 + (n * 7) % 20) + 9_000 * ((n * 13) % 17)
            out.append(ev("finance.reported", firm, time,
                          {"year": year, "tax_yuan": tax, "value_added_yuan": tax * (4 + n % 5), "revenue_yuan": tax * 20,
                           "rd_expense_yuan": tax * ((n * 3) % 7) // 10, "employees_fte": 10 + (n * 11) % 40,
                           "energy_tce": 50 + (n * 17) % 300, "electricity_kwh": 100_000 + n * 1_000,
                           "emissions_kg": 20 + (n * 5) % 90}))
        return out

    def exceed(subject: str, time: str, value: float = 45, period: str = "hour") -> dict:
        return ev("emission.measured", subject, time, {"outlet": "DA001", "process": "melting.electric",
                                                       "pollutant": "a34013", "value": value, "unit": "mg/m3",
                                                       "period": period})

    events: list[dict] = []
    for n, firm in enumerate(FIRMS):
        industry = "foundry" if n < 9 else "other"
        events.append(ev("enterprise.registered", firm, "2023-12-01T08:00:00+08:00",
                         {"name": f"firm {n}", "industry": industry, "district": ("Beilun", "Cixi")[n % 2],
                          "in_park": n % 3 != 0, "eia_approved_on": "2010-01-01", "land_area_mu": 3 + (n * 7) % 20,
                          "permits": {"emission_permit": True}, "scale": "above" if n % 4 else "below"}))
    # three exceedances each for the foundries: orders on 2024-01-09 (deadline 2024-04-08, 90 days);
    # firms 0 and 1 share the deadline to the second (a tie across partitions, ordered by enterprise)
    for day in ("01", "05", "09"):
        for n in range(9):
            events.append(exceed(FIRMS[n], f"2024-01-{day}T{10 + (n % 3 if n > 1 else 0):02d}:00:00+08:00"))
    dup = events[-1]
    events.append(dict(dup))  # an exact duplicate: counted, no output
    events.append(dict(dup, subject=FIRMS[12], type="energy.reported", data={"period": "2024-01"}))  # id reused
    # firm 2 fails an inspection while its order is open: escalates at the inspection's time
    events.append(ev("inspection.recorded", FIRMS[2], "2024-02-10T09:00:00+08:00", {"result": "fail", "violations": ["x"]}))
    # finance for 2023 for everyone, then the close (firm 2 is closed by law by then)
    events.extend(finance_of_everyone(2023, "2024-02-20T08:00:00+08:00"))
    events.append(ev("evaluation.closed", AUTHORITY, "2024-03-01T00:00:00+08:00", {"year": 2023}))
    # verifications: firm 3 passes in time (closed), firm 4 fails, firm 5 passes too late (see below)
    events.append(ev("rectification.verified", FIRMS[3], "2024-03-15T00:00:00+08:00", {"decision": "?", "passed": True}))
    events.append(ev("finance.reported", FIRMS[6], "2024-03-20T08:00:00+08:00", {"year": 2023, "tax_yuan": 1}))  # late
    events.append(ev("evaluation.closed", AUTHORITY, "2024-03-21T00:00:00+08:00", {"year": 2023}))  # again: nothing
    # the deadlines pass through events of the "other" firms only (in either partition)
    for n, when in ((9, "2024-04-01T00:00:00+08:00"), (10, "2024-04-08T10:00:00+08:00"),
                    (11, "2024-04-08T10:30:00+08:00"), (12, "2024-04-09T00:00:00+08:00"),
                    (13, "2024-05-01T00:00:00+08:00")):
        events.append(ev("energy.reported", FIRMS[n], when, {"period": "2024-03"}))
    events.append(ev("energy.reported", FIRMS[9], "2024-04-20T00:00:00+08:00", {"period": "2024-03"}))  # out of order
    # new orders on firms 0 and 7 (after escalation firm 0 is closed by law: no new order), minute data
    for day in ("02", "06", "10"):
        events.append(exceed(FIRMS[7], f"2024-05-{day}T08:00:00+08:00"))
    for minute in range(0, 60, 15):
        events.append(exceed(FIRMS[8], f"2024-05-11T09:{minute:02d}:00+08:00", 60, "minute"))
        events.append(exceed(FIRMS[1], f"2024-05-11T09:{minute:02d}:00+08:00", 70, "minute"))
    events.append(exceed(FIRMS[8], "2024-05-11T10:05:00+08:00", 80, "minute"))  # an hour left open at the end
    events.append(exceed(FIRMS[3], "2024-05-11T10:10:00+08:00", 80, "minute"))
    # year two: consecutive D years for the low scorers
    events.extend(finance_of_everyone(2024, "2025-02-20T08:00:00+08:00"))
    events.append(ev("evaluation.closed", AUTHORITY, "2025-03-01T00:00:00+08:00", {"year": 2024}))
    events.append(ev("energy.reported", FIRMS[11], "2025-03-02T00:00:00+08:00", {"period": "2025-02"}))
    lines = [orjson.dumps(e) for e in events]
    lines.insert(5, b"{not json")
    lines.insert(9, b"")
    lines.insert(30, orjson.dumps(dict(events[3], id="bad-subject", subject="123")))
    lines.insert(40, b'["a list"]')
    return lines


def adversarial_log() -> list[bytes]:
    """What one machine does that partitions must reproduce exactly: an id reused by another
    enterprise at once (a conflict) and 12 days later with content ahead of the clock (forgotten,
    so new: it moves the clock, and the shards find out only after the clock is composed), an
    exact duplicate at once and one 12 days later (beyond the horizon, new again), events far
    ahead held by the guarded clock, a gap of 85 days corroborated by a second firm, where
    deadlines of orders on other firms fall due, minute data, a year close, bad lines of every
    kind (not JSON, empty, a list, bad UTF-8, a bad subject, a repeated key)."""
    tz = timezone(timedelta(hours=8))
    start = datetime(2024, 1, 1, tzinfo=tz)
    firms = [make_uscc(f"91330200MA2E{n:05d}") for n in range(12)]
    events, number = [], 0
    def at(days):
        return (start + timedelta(days=days)).isoformat()
    def ev(type_, subject, days, data, id=None):
        nonlocal number
        number += 1
        e = {"specversion": "1.0", "id": id or f"a-{number}", "source": "adv", "type": type_, "subject": subject,
             "time": at(days), "data": data}
        events.append(e)
        return e
    def reading(subject, days, value=12.0, period="hour", id=None):
        return ev("emission.measured", subject, days, {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013",
                                                      "value": value, "unit": "mg/m3", "period": period}, id)
    for n, firm in enumerate(firms):
        ev("enterprise.registered", firm, 0, {"name": f"f{n}", "industry": "foundry" if n < 8 else "other",
            "district": "Beilun", "in_park": n % 3 != 0, "eia_approved_on": "2010-01-01", "land_area_mu": 5 + n,
            "permits": {"emission_permit": n != 7}, "scale": "above"})
    first = reading(firms[0], 0.1, id="kept-long")            # its duplicate comes 12 days later (forgotten)
    old = reading(firms[1], 0.1, id="reused-later")            # reused with other content 12.5 days later (forgotten, ahead)
    for h in range(1, 24):
        for n in range(12):
            reading(firms[n], h / 24)
    events.append(dict(events[-5]))                              # an exact duplicate, at once
    ev("energy.reported", firms[5], 1.0, {"period": "2024-01"}, id="shared")
    ev("energy.reported", firms[6], 1.01, {"period": "2024-01", "energy_tce": 3}, id="shared")  # id reused by another firm
    for day in (1.2, 1.3, 1.4):                                  # orders for firms 1 and 2 (deadline + 90 days)
        reading(firms[1], day, 45.0)
        reading(firms[2], day + 0.01, 48.0)
    reading(firms[7], 1.5)                                       # no permit: a decision on its next reading
    ev("inspection.recorded", firms[4], 2000.0, {"result": "fail", "violations": ["x"]})        # far ahead: held
    ev("inspection.recorded", firms[4], 2001.0, {"result": "fail", "violations": ["y"]})        # same firm: still held
    for day in range(2, 15):                                     # the clock walks on: purge steps every 3.5 days
        for n in range(12):
            reading(firms[n], day + n / 100)
        if day == 12:
            events.append(dict(first))                           # forgotten: new again, beyond the horizon
            reading(firms[9], 12.6, 20.0, id="reused-later")     # forgotten and ahead of the clock: moves it
    for minute in range(0, 60, 10):                              # minute data across an hour and a block edge
        reading(firms[3], 14.5 + minute / 1440, 30.0, "minute")
    finance = {"tax_yuan": 100000, "value_added_yuan": 400000, "revenue_yuan": 2000000, "rd_expense_yuan": 1000,
               "employees_fte": 20, "energy_tce": 80, "electricity_kwh": 100000, "emissions_kg": 40}
    for n, firm in enumerate(firms):
        ev("finance.reported", firm, 15, {**finance, "year": 2023, "tax_yuan": 10000 * (n + 1)})
    ev("evaluation.closed", AUTHORITY, 16, {"year": 2023})
    reading(firms[10], 100.0)                                    # a gap: held ...
    reading(firms[11], 100.5)                                    # ... until a second firm agrees: deadlines fall due here
    ev("rectification.verified", firms[2], 101.0, {"decision": "?", "passed": True})
    reading(firms[5], 101.2)
    lines = [orjson.dumps(e) for e in events]
    for at_line, bad in ((3, b"{not json"), (40, b""), (41, b'["a list"]'), (200, b"\xff\xfe not utf-8"),
                         (300, orjson.dumps({**events[10], "id": "bad-subject", "subject": "123"})),
                         (301, b'{"specversion":"1.0","id":"rep","id":"rep2"}'), (len(lines) - 2, b"{")):
        lines.insert(at_line, bad)
    return lines


def test_the_adversarial_log_has_what_it_says():
    engine = Engine()
    records = [r.to_dict() for r in engine.run(adversarial_log())]
    summary = engine.summary
    assert (summary.duplicate, summary.quarantined, summary.beyond_dedupe_horizon, summary.clock_held) == (1, 8, 1, 3)
    escalated = [r for r in records if r.get("action") == "close_by_law"]
    assert len(escalated) == 3 and all(r["time"] < "2024-04-10" for r in escalated)  # fell due at the corroborated gap
    assert any("already used by a different event" in r.get("error", "") for r in records)


@pytest.mark.parametrize("chunk_size", [100_000, 60, 7])
def test_adversarial_log_is_byte_identical(client, chunk_size):
    lines = adversarial_log()
    expected, summary = single(lines)
    got, got_summary, job = distributed(lines, client, chunk_size=chunk_size)
    assert_same(expected, got)
    assert got_summary == summary
    if chunk_size == 100_000:  # the reused id 12 days later is found new only after the clock: composed again
        assert job.reclocked == 1


@pytest.mark.parametrize("block_bytes", [97, 3000])
def test_files_read_by_byte_ranges_are_byte_identical(client, tmp_path, block_bytes):
    """Workers read the file themselves: lines split across ranges, bad lines at range edges,
    a byte order mark, no newline at the end; quarantine records name the file and line."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(adversarial_log()))
    expected = b"".join(dumps(r.to_dict()) for r in Engine().run(JsonlFiles([path])))
    assert str(path).encode() in expected
    job = DistributedRun([str(path)], client=client, block_bytes=block_bytes)
    got = b"".join(dumps(r.to_dict()) for r in job)
    assert_same(expected, got)


def _collector() -> tuple[tuple[int, int, int], int, float]:
    import gc
    import sys

    return gc.get_threshold(), gc.get_freeze_count(), sys.getswitchinterval()


def test_workers_collect_garbage_for_the_run_and_as_before_after_it(client, tmp_path):
    """A worker's process is the run's while it runs (engine/run.py `long_run_collector`: the
    start-up objects frozen, young objects collected less often; node.py `long_slices`: threads
    switch every 20 ms) and as it was afterwards."""
    before = client.run(_collector)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(adversarial_log()))
    job = DistributedRun([str(path)], client=client)
    records = iter(job)
    first = next(records)
    during = client.run(_collector)
    rest = list(records)
    assert first is not None and rest
    assert all(threshold == (10_000, 20, 100) and frozen > 0 and switch == SWITCH
               for threshold, frozen, switch in during.values())
    assert client.run(_collector) == before


def test_an_archive_read_by_row_ranges_is_byte_identical(client, tmp_path):
    from engine.run import archive_files

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(adversarial_log()) + b"\n")
    archive_files(Engine(), [path], tmp_path / "archive", buckets=4)
    engine = Engine()
    expected = b"".join(dumps(r.to_dict()) for r in engine.run(JsonlFiles([path])))
    job = DistributedRun([str(tmp_path / "archive")], client=client, block_rows=50)
    got = b"".join(dumps(r.to_dict()) for r in job)
    assert_same(expected, got)
    assert job.summary.to_dict() == engine.summary.to_dict()


# ---- a worker that does not see the archive the driver sees: stopped before any block is read ----

@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    """A real archive of a small demo log (rectify's own writer), and a second log to append."""
    from engine.run import archive_files

    root = tmp_path_factory.mktemp("small_archive")
    city = generate_city(enterprises=6, days=1, seed=5)
    log = root / "events.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in city.events[:-4]))
    (root / "more.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in city.events[-4:]))
    archive_files(Engine(), [log], root / "archive", buckets=4)
    return root


@pytest.fixture()
def elsewhere(client, small_archive, tmp_path, monkeypatch):
    """The driver and the first worker work in `here` (holding a copy of the archive), the second
    worker in `there` (empty): the relative path "archive" names another directory on that worker,
    as on a machine whose copy differs. Yields (here, there, the second worker's address)."""
    import os
    import shutil

    here, there = tmp_path / "here", tmp_path / "there"
    shutil.copytree(small_archive / "archive", here / "archive")
    there.mkdir()
    first, second = sorted(client.scheduler_info(n_workers=-1)["workers"])[:2]
    before = client.run(os.getcwd)
    monkeypatch.chdir(here)
    client.run(os.chdir, str(here), workers=[first])
    client.run(os.chdir, str(there), workers=[second])
    try:
        yield here, there, second
    finally:
        for address, cwd in before.items():
            client.run(os.chdir, cwd, workers=[address])


def rewrite_manifest(archive, **changes) -> None:
    manifest = archive / "_rectify_archive.json"
    manifest.write_bytes(orjson.dumps({**orjson.loads(manifest.read_bytes()), **changes}))


@pytest.mark.parametrize("worker_sees", ["nothing", "a damaged manifest", "a plain directory", "the log appended",
                                         "another writer", "a truncated part file"])
def test_a_worker_that_sees_another_archive_stops_the_run_before_any_block(client, small_archive, elsewhere, worker_sees):
    """Each worker reports the archive's manifest and part file sizes (no row read); the first
    that differs from the driver's is named with the path and what differs, before any output."""
    import shutil

    from engine.ingest.archive import ARCHIVE_FORMAT, Archive
    from engine.run import archive_files

    here, there, worker = elsewhere
    if worker_sees != "nothing":
        shutil.copytree(here / "archive", there / "archive")
    rows = Archive(here / "archive").rows
    says = {"nothing": "no such archive",
            "a damaged manifest": "cannot read it: _rectify_archive.json: unreadable manifest: Expecting value: "
                                  "line 1 column 23 (char 22)",
            "a plain directory": "cannot read it: not a rectify archive (no _rectify_archive.json)",
            "the log appended": f"{rows + 4} rows, here {rows}",
            "another writer": f"written by rectify 0.1.0, format {ARCHIVE_FORMAT}, here by rectify {__version__}, "
                              f"format {ARCHIVE_FORMAT}"}.get(worker_sees)
    if worker_sees == "a damaged manifest":
        (there / "archive" / "_rectify_archive.json").write_bytes(b'{"format": 1, "rows": ')
    elif worker_sees == "a plain directory":
        (there / "archive" / "_rectify_archive.json").unlink()
    elif worker_sees == "the log appended":
        archive_files(Engine(), [small_archive / "more.jsonl"], there / "archive")
    elif worker_sees == "another writer":
        rewrite_manifest(there / "archive", rectify="0.1.0")
    elif worker_sees == "a truncated part file":
        path, part_rows, size = Archive(here / "archive").identity()["files"][0]
        (there / "archive" / path).write_bytes((here / "archive" / path).read_bytes()[:100])
        says = f"part file {path}: {part_rows} rows, 100 bytes, here {part_rows} rows, {size} bytes"
    assert_refused_before_any_block(client, "archive", worker, says, block_rows=20)


def assert_refused_before_any_block(client, path: str, worker: str, says: str, **kwargs) -> None:
    """A run of `path` stops with ClusterMismatch naming `worker` and what it `says`, no record out, no chunk read."""
    from engine.distributed import ClusterMismatch

    job = DistributedRun([path], client=client, **kwargs)
    records = []
    with pytest.raises(ClusterMismatch) as raised:
        records.extend(job)
    assert str(raised.value) == (f"worker {worker} cannot read {path} as this machine does ({says}): the workers "
                                 "read the input files and archives themselves (a shared file system)")
    assert records == [] and job.chunks == 0


@pytest.mark.parametrize("worker_sees", ["nothing", "a shorter file", "a directory"])
def test_a_worker_that_sees_another_jsonl_file_stops_the_run_before_any_block(client, small_archive, elsewhere,
                                                                            worker_sees):
    here, there, worker = elsewhere
    data = (small_archive / "events.jsonl").read_bytes()
    (here / "events.jsonl").write_bytes(data)
    if worker_sees == "a shorter file":
        (there / "events.jsonl").write_bytes(data[:1000])
    elif worker_sees == "a directory":
        (there / "events.jsonl").mkdir()
    says = {"nothing": "no such file", "a shorter file": f"1000 bytes, here {len(data)}",
            "a directory": "cannot read it: not a rectify archive (no _rectify_archive.json)"}[worker_sees]
    assert_refused_before_any_block(client, "events.jsonl", worker, says)


def test_the_cli_names_a_worker_without_the_archive_and_writes_nothing(client, elsewhere):
    """`rectify run ARCHIVE --cluster dask`: the message, exit 3, no traceback, no output file."""
    from engine.cli import cli

    here, _, worker = elsewhere
    result = CliRunner().invoke(cli, ["run", "archive", "--out", "out.jsonl", "--no-progress", "--cluster", "dask",
                                      "--scheduler", client.scheduler.address])
    assert result.exit_code == 3, result.output
    assert f"rectify: worker {worker} cannot read archive as this machine does (no such archive)" in result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert sorted(p.name for p in here.iterdir()) == ["archive"]


def test_the_generated_log_spans_both_partitions():
    lines = generated_log()
    engine = Engine()
    made = [r for r in engine.run(lines) if isinstance(r, Decision)]
    orders = {d.enterprise for d in made if d.action == "rectify"}
    escalated = {d.enterprise for d in made if d.action == "close_by_law"}
    assert {partition_of(e, 2) for e in orders} == {0, 1}
    assert len(escalated) >= 4 and {partition_of(e, 2) for e in escalated} == {0, 1}
    assert any(d.evaluation and d.evaluation["year"] == 2024 for d in made)
    assert engine.summary.duplicate == 1 and engine.summary.quarantined == 5


@pytest.mark.parametrize("chunk_size", [50_000, 7])
def test_generated_log_is_byte_identical(client, chunk_size):
    lines = generated_log()
    expected, summary = single(lines)
    got, got_summary, job = distributed(lines, client, chunk_size=chunk_size)
    assert job.partitions == 2
    assert_same(expected, got)
    assert got_summary == summary


@pytest.mark.parametrize("backend", ["compiled", "rete"])
def test_generated_log_with_as_of_is_byte_identical(client, backend):
    lines = generated_log()
    expected, summary = single(lines, as_of="2026-01-01T00:00:00+08:00", backend=backend)
    got, got_summary, _ = distributed(lines, client, as_of="2026-01-01T00:00:00+08:00", chunk_size=40, backend=backend)
    assert b'"close_by_law"' in got
    assert_same(expected, got)
    assert got_summary == summary


def test_demo_log_is_byte_identical(client):
    city = generate_city(enterprises=60, days=2, seed=11)
    assert city.events[-1]["type"] == "evaluation.closed"
    lines = [orjson.dumps(e) for e in city.events]
    expected, summary = single(lines)
    got, got_summary, _ = distributed(lines, client, chunk_size=1_000)
    assert b'"evaluation"' in got
    assert_same(expected, got)
    assert got_summary == summary


def test_demo_log_with_land_and_a_year_of_follow_up_is_byte_identical(client):
    """Parcels, watches, transfers, recoveries and the land the mu-average barrier decides (the
    partitions absorb the driver's class decisions about their enterprises)."""
    city = with_follow_up(generate_city(enterprises=160, days=1, seed=11), seed=11)
    lines = [orjson.dumps(e) for e in city.events]
    expected, summary = single(lines, as_of="2026-06-01T00:00:00+08:00")
    assert b'"redevelop_land"' in expected and b'"idle_land_fee"' in expected and b'"parcel"' in expected
    got, got_summary, _ = distributed(lines, client, as_of="2026-06-01T00:00:00+08:00", chunk_size=2_000)
    assert_same(expected, got)
    assert got_summary == summary


def test_python_api_starts_its_own_cluster_and_reads_paths(tmp_path):
    lines = generated_log()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = b"".join(dumps(r.to_dict()) for r in Engine().run_batch(__import__("engine.ingest").ingest.read_jsonl([path])))
    got = b"".join(dumps(r) for r in run_distributed([str(path)], workers=2))
    assert_same(expected, got)


def test_cli_cluster_dask_matches_the_local_run(tmp_path):
    from engine.cli import cli

    city = generate_city(enterprises=20, days=1, seed=3)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in city.events))
    runner = CliRunner()
    local = runner.invoke(cli, ["run", str(path), "--out", str(tmp_path / "local.jsonl"), "--no-progress"])
    assert local.exit_code == 0, local.output
    dist = runner.invoke(cli, ["run", str(path), "--out", str(tmp_path / "dist.jsonl"), "--no-progress",
                               "--cluster", "dask", "--workers", "2"])
    assert dist.exit_code == 0, dist.output
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "dist.jsonl").read_bytes()


@pytest.mark.skipif(sys.platform != "linux", reason="the command forks its workers on Linux only")
def test_the_command_forks_its_own_workers_and_matches_the_local_run(tmp_path):
    """`rectify run --cluster dask` as a command (a process with no other thread) forks the workers
    of its LocalCluster from itself; the bytes are the local run's."""
    city = generate_city(enterprises=20, days=1, seed=5)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in city.events))
    rectify = [sys.executable, "-c", "from engine.cli import main; main()"]
    for args in (["--out", str(tmp_path / "local.jsonl")],
                 ["--out", str(tmp_path / "dist.jsonl"), "--cluster", "dask", "--summary-json", str(tmp_path / "s.json")]):
        done = subprocess.run([*rectify, "run", str(path), "--no-progress", *args], capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        assert b"Traceback" not in done.stderr
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "dist.jsonl").read_bytes()
    assert orjson.loads((tmp_path / "s.json").read_bytes())["distributed"]["workers_started"] == "fork"


def test_the_python_api_spawns_its_workers_unless_told(tmp_path):
    """In a host application the run does not fork the caller's process: Dask's default (spawn),
    or what `start_method` says; a method that does not exist is refused before any cluster starts."""
    lines = generated_log()[:400]
    job = DistributedRun(lines, workers=2)
    expected, _ = single(lines)
    assert_same(expected, b"".join(dumps(r.to_dict()) for r in job))
    assert job.report()["workers_started"] == "spawn"
    with pytest.raises(ValueError, match="start_method 'vfork'"):
        DistributedRun(lines, start_method="vfork")


def test_cli_on_an_existing_cluster_reads_an_archive_and_reports_cpu(client, tmp_path):
    """`rectify run ARCHIVE --cluster dask --scheduler ADDRESS`: the bytes of the local run of the
    JSONL it was made from; the summary JSON has the driver's and each worker's CPU seconds and rows."""
    from engine.cli import cli

    city = generate_city(enterprises=20, days=1, seed=4)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in city.events))
    runner = CliRunner()
    assert runner.invoke(cli, ["archive", str(path), "--out", str(tmp_path / "archive")]).exit_code == 0
    local = runner.invoke(cli, ["run", str(path), "--out", str(tmp_path / "local.jsonl"), "--no-progress"])
    assert local.exit_code == 0, local.output
    address = client.scheduler.address
    dist = runner.invoke(cli, ["run", str(tmp_path / "archive"), "--out", str(tmp_path / "dist.jsonl"), "--no-progress",
                               "--cluster", "dask", "--scheduler", address, "--summary-json", str(tmp_path / "s.json")])
    assert dist.exit_code == 0, dist.output
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "dist.jsonl").read_bytes()
    assert not list(tmp_path.glob("*.partial")) and (tmp_path / "dist.jsonl.manifest.json").exists()
    report = orjson.loads((tmp_path / "s.json").read_bytes())["distributed"]
    assert report["partitions"] == 2 and report["lines"] == len(city.events) and report["driver_cpu_s"] > 0
    assert report["workers_started"] is None  # not the run's cluster
    assert 0 < report["driver_rounds_cpu_s"] <= report["driver_main_thread_cpu_s"]
    assert [w["cpu_s"] > 0 for w in report["workers"]] == [True, True]
    assert all(0 < w["rounds_cpu_s"] <= w["cpu_s"] for w in report["workers"])
    phases = report["driver_phases_cpu_s"]  # the main thread's CPU by phase, each second counted once
    assert {"engines", "barrier", "flush"} <= set(phases) and all(v >= 0 for v in phases.values())
    assert abs(sum(phases.values()) - report["driver_main_thread_cpu_s"]) < 0.05 + 0.05 * report["driver_main_thread_cpu_s"]
    assert sum(w["read"] for w in report["workers"]) == len(city.events)
    assert sum(w["owned"] for w in report["workers"]) == len(city.events) - 1  # the year close is the driver's


def test_partitioning_is_stable():
    assert partition_of(FIRMS[0], 2) == __import__("zlib").crc32(FIRMS[0].encode()) % 2


_FAULTS = """
import resource, sys
from engine.distributed.node import roomy_heap

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        block = bytearray(8 << 20)  # a block's buffer, allocated and freed again
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

outside = faults()
with roomy_heap():
    inside = faults()
print(outside, inside)
"""


@pytest.mark.skipif(sys.platform != "linux" or __import__("platform").libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_a_worker_keeps_what_it_frees_for_the_next_block():
    """node.py `roomy_heap`: in a process started as Dask's nanny spawns a worker (glibc told to
    trim at 64 KiB, which turns its own threshold adjustment off), every 8 MiB buffer is mapped
    and faulted in anew; inside `roomy_heap` the heap keeps it for the next."""
    import os

    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    done = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    outside, inside = map(int, done.stdout.split())
    assert outside >= 20 * 2000  # 2,048 pages of 4 KiB per buffer
    assert inside < outside / 4
