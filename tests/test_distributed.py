"""Distributed replay on Dask (engine/distributed.py): byte-identical to the single-process run.

The tests start a real LocalCluster (2 worker processes, one thread each) and compare the
JSONL bytes of the distributed run with `Engine.run` on one machine, record for record.
"""

from __future__ import annotations

import orjson
import pytest

pytest.importorskip("dask.distributed")

from click.testing import CliRunner  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402

from engine.devtools.demo import AUTHORITY, generate_city, with_follow_up  # noqa: E402
from engine.distributed import DistributedRun, partition_of, run_distributed  # noqa: E402
from engine.pipeline import Engine  # noqa: E402
from engine.records import Decision  # noqa: E402
from engine.output import dumps  # noqa: E402
from engine.validate import make_uscc  # noqa: E402


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


def test_partitioning_is_stable():
    assert partition_of(FIRMS[0], 2) == __import__("zlib").crc32(FIRMS[0].encode()) % 2
