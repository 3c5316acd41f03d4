"""`rectify serve` as a sender and a reader meet it: a real server process on loopback, real
HTTP (httpx) and real TCP (HJ 212), every endpoint, then a graceful SIGTERM and a replay of the
store that must give the records the service wrote.

`Server` (used by test_serve_crash.py too) starts `rectify serve` as a subprocess on ports the
OS picks and reads the addresses from its stderr.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent

from engine import Engine
from engine.devtools.demo import generate_city, write_jsonl
from engine.output import Store
from engine.serve.service import Service
from test_hj212 import frame

RECTIFY = [sys.executable, "-c", "from engine.cli import main; main()"]
REGISTRY = Path(__file__).parent / "data" / "hj212" / "registry.yaml"
SUBJECT = "91330200MA2AB1234Y"  # station 3302FDY...001 in the registry: cupola DA001
BATCH = "application/cloudevents-batch+json"
CST = timezone(timedelta(hours=8))


class Server:
    """`rectify serve` in a subprocess; stderr to a file, addresses read from its ready line.
    Every one started is killed at the end of its test module if still running (`reap_servers`)."""

    started: list[Server] = []

    def __init__(self, store: Path, *extra: str, http: str = "127.0.0.1:0", env: dict[str, str] | None = None,
                 timeout: float = 60.0) -> None:
        self.store = store
        self.log = store.with_name(store.name + f".{time.monotonic_ns()}.log")
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen([*RECTIFY, "serve", "--store", str(store), "--http", http, *extra],
                                            stdout=subprocess.DEVNULL, stderr=handle, env=env)
        Server.started.append(self)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log.read_text(encoding="utf-8", errors="replace")
            found = re.search(r"rectify serve: listening http=(\S+?)(?: hj212=(\S+?))?;.*\n", text)
            if found:
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"rectify serve did not start (exit {self.process.poll()}):\n{text}")
            time.sleep(0.05)
        self.url = f"http://{found.group(1)}"
        self.hj212 = None
        if found.group(2):
            host, _, port = found.group(2).rpartition(":")
            self.hj212 = (host, int(port))
        self.ready_line = found.group(0).strip()  # what was recovered: events, records, replayed

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module", autouse=True)
def reap_servers():
    """No server outlives its module, whatever failed."""
    yield
    while Server.started:
        server = Server.started.pop()
        if server.process.poll() is None:
            server.kill()


def batches(events: list[dict[str, Any]], size: int) -> list[bytes]:
    return [orjson.dumps(events[i:i + size]) for i in range(0, len(events), size)]


def post_batch(client: httpx.Client, url: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(f"{url}/events", content=body, headers={"content-type": BATCH, **headers})


def emission(event_id: str, hour: int, value: float, subject: str = SUBJECT, day: int = 1) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event_id, "source": "cems/DA009", "type": "emission.measured", "subject": subject,
            "time": f"2024-03-{day:02d}T{hour:02d}:00:00+08:00",
            "data": {"outlet": "DA009", "process": "melting.cupola.cold_blast", "pollutant": "a34013", "value": value,
                     "unit": "mg/m3", "o2_percent": 15.0, "period": "hour"}}


REGISTRATION = {"specversion": "1.0", "id": "reg-serve-1", "source": "registry", "type": "enterprise.registered",
                "subject": SUBJECT, "time": "2024-02-01T08:00:00+08:00",
                "data": {"name": "Beilun Castings", "industry": "foundry", "district": "Beilun", "in_park": True,
                         "land_area_mu": 12.5, "eia_approved_on": "2015-06-01", "permits": {"emission_permit": True},
                         "scale": "above"}}


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> list[dict[str, Any]]:
    return generate_city(enterprises=40, days=2, seed=11).events


@pytest.fixture(scope="module")
def served(tmp_path_factory, city):
    """A server with HTTP and HJ 212, fed the demo city in batches; stopped at the end of the module."""
    folder = tmp_path_factory.mktemp("serve")
    server = Server(folder / "decisions.db", "--hj212", "127.0.0.1:0", "--registry", str(REGISTRY),
                    "--out", str(folder / "out.jsonl"), "--max-body", "200000")
    with httpx.Client(timeout=30) as client:
        for body in batches(city, 500):
            response = post_batch(client, server.url, body)
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == len(orjson.loads(body))
    yield server
    server.stop()


@pytest.fixture
def client():
    with httpx.Client(timeout=30) as client:
        yield client


def test_a_batch_answers_each_event_in_order_with_seq_and_the_records_it_gave(served, client):
    events = [REGISTRATION, emission("m-1", 10, 55.0), emission("m-1", 10, 55.0), emission("m-1", 10, 56.0),
              {"specversion": "1.0", "id": "bad-subject", "source": "x", "type": "emission.measured",
               "subject": "91330200MA2AB12340", "time": "2024-03-01T10:00:00+08:00", "data": {}}, 42]
    response = post_batch(client, served.url, orjson.dumps(events))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["quarantined"]) == (2, 1, 3)
    outcomes = body["events"]
    assert [o["status"] for o in outcomes] == ["accepted", "accepted", "duplicate", "quarantined", "quarantined",
                                               "quarantined"]
    assert [o["id"] for o in outcomes] == ["reg-serve-1", "m-1", "m-1", "m-1", "bad-subject", None]
    seqs = [o["seq"] for o in outcomes]
    assert seqs == list(range(seqs[0], seqs[0] + 6))
    assert [r["record"] for r in body["records"]] == ["finding"]  # what the batch gave, with its place in the chain
    stored = client.get(f"{served.url}/records", params={"after": body["records"][0]["seq"] - 1, "limit": 1}).json()
    assert stored["records"][0]["record"]["id"] == body["records"][0]["id"]
    assert stored["records"][0]["record"]["event"] == ["m-1"]
    assert "already used by a different event" in outcomes[3]["reason"]
    assert "check character" in outcomes[4]["reason"] and outcomes[4]["reason"].startswith("subject")
    assert outcomes[5]["reason"]
    # the quarantine record names the arrival number as its line and `http` as its source
    page = client.get(f"{served.url}/records", params={"record": "quarantine", "limit": 1000}).json()
    mine = [r["record"] for r in page["records"] if r["record"]["line"] == seqs[4]]
    assert len(mine) == 1 and mine[0]["source"] == "http" and mine[0]["error"] == outcomes[4]["reason"]


def test_a_large_batch_of_new_events_takes_the_batch_path_with_the_same_answers(served, client):
    events: list[Any] = [emission(f"big-batch-{i}", i % 24, 12.0 + i % 7, day=3) for i in range(60)]
    events[7] = {**events[7], "subject": "91330200MA2AB12340"}      # bad check character
    events[30] = {**events[30], "data": {**events[30]["data"], "unit": "furlongs"}}
    events[45]["data"]["value"] = 95.0                              # a finding
    body = post_batch(client, served.url, orjson.dumps(events)).json()
    assert (body["accepted"], body["duplicate"], body["quarantined"]) == (58, 0, 2)
    statuses = {i: o["status"] for i, o in enumerate(body["events"]) if o["status"] != "accepted"}
    assert statuses == {7: "quarantined", 30: "quarantined"}
    assert body["events"][7]["reason"].startswith("subject") and "unit" in body["events"][30]["reason"]
    assert [r["record"] for r in body["records"]] == ["finding"]
    again = post_batch(client, served.url, orjson.dumps(events)).json()  # sent again: one by one, all known
    assert (again["accepted"], again["duplicate"], again["quarantined"]) == (0, 58, 2) and again["records"] == []


def test_structured_and_binary_mode_from_the_cloudevents_sdk_are_one_event(served, client):
    event = CloudEvent({"id": "sdk-1", "source": "cems/DA009", "type": "emission.measured", "subject": SUBJECT,
                        "time": datetime(2024, 3, 1, 11, tzinfo=CST)},
                       {"outlet": "DA009", "process": "melting.cupola.cold_blast", "pollutant": "a34013", "value": 61,
                        "unit": "mg/m3", "o2_percent": 15.0, "period": "hour"})
    binary = to_binary_event(event)
    response = client.post(f"{served.url}/events", content=binary.body, headers=binary.headers)
    assert response.status_code == 200, response.text
    first = response.json()["events"][0]
    assert first["status"] == "accepted" and first["id"] == "sdk-1"
    assert [r["record"] for r in response.json()["records"]] == ["finding"]
    structured = to_structured_event(event)
    again = client.post(f"{served.url}/events", content=structured.body, headers=structured.headers).json()
    assert again["events"][0]["status"] == "duplicate"  # same content, whatever the mode
    finding = client.get(f"{served.url}/records", params={"enterprise": SUBJECT, "record": "finding",
                                                          "limit": 1000}).json()["records"][-1]["record"]
    assert finding["event"] == ["sdk-1"] and finding["time"] == "2024-03-01T11:00:00+08:00"  # time kept as sent


def test_binary_mode_percent_decodes_headers_and_plain_json_takes_an_object(served, client):
    headers = {"ce-specversion": "1.0", "ce-id": "bin%20two", "ce-source": "cems/DA009", "ce-type": "emission.measured",
               "ce-subject": SUBJECT, "ce-time": "2024-03-01T12:00:00%2B08:00", "content-type": "application/json"}
    data = {"outlet": "DA009", "process": "melting.cupola.cold_blast", "pollutant": "a34013", "value": 10,
            "unit": "mg/m3", "o2_percent": 15.0, "period": "hour"}
    outcome = client.post(f"{served.url}/events", content=orjson.dumps(data), headers=headers).json()["events"][0]
    assert outcome == {"seq": outcome["seq"], "id": "bin two", "status": "accepted"}
    plain = client.post(f"{served.url}/events", json=emission("plain-1", 13, 12.0)).json()
    assert plain["accepted"] == 1
    missing_data = client.post(f"{served.url}/events", content=b"", headers={**headers, "ce-id": "no-data"}).json()
    assert missing_data["events"][0]["status"] == "quarantined" and "data" in missing_data["events"][0]["reason"]


def test_400_only_for_a_body_that_is_not_json_and_415_413(served, client):
    for content_type in ("application/cloudevents+json", BATCH, "application/json"):
        response = client.post(f"{served.url}/events", content=b"{nope", headers={"content-type": content_type})
        assert response.status_code == 400 and "not JSON" in response.json()["error"]
    response = client.post(f"{served.url}/events", content=b"hello", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    big = orjson.dumps([emission(f"big-{i}", 1, 1.0) for i in range(1000)])
    assert len(big) > 200_000
    response = post_batch(client, served.url, big)
    assert response.status_code == 413 and "200000" in response.json()["error"]

    def chunks():  # no Content-Length: the bound is counted while reading
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    response = client.post(f"{served.url}/events", content=chunks(), headers={"content-type": BATCH})
    assert response.status_code == 413
    assert client.get(f"{served.url}/records", params={"enterprise": SUBJECT}).status_code == 200
    assert not any(r["record"].get("event") == ["big-0"] for r in
                   client.get(f"{served.url}/records", params={"limit": 1000}).json()["records"])


def test_records_are_paged_in_chain_order_with_filters(served, client, tmp_path):
    seen, after, pages = [], 0, 0
    while True:
        page = client.get(f"{served.url}/records", params={"after": after, "limit": 7}).json()
        seen += page["records"]
        pages += 1
        if page["next"] is None:
            break
        assert len(page["records"]) == 7 and page["next"] == page["records"][-1]["seq"]
        after = page["next"]
    assert pages > 2
    assert [r["seq"] for r in seen] == list(range(1, len(seen) + 1))
    for earlier, later in zip(seen, seen[1:]):
        assert later["record"]["prev"] == earlier["record"]["hash"]
    decisions = client.get(f"{served.url}/records", params={"record": "decision", "limit": 1000}).json()["records"]
    assert decisions and all(r["record"]["record"] == "decision" for r in decisions)
    assert [r["seq"] for r in decisions] == sorted(r["seq"] for r in decisions)
    code = decisions[0]["record"]["enterprise"]
    theirs = client.get(f"{served.url}/records", params={"enterprise": code, "limit": 1000}).json()["records"]
    assert theirs and {r["record"]["enterprise"] for r in theirs} == {code}
    for bad in ({"after": "-1"}, {"limit": "0"}, {"limit": "1001"}, {"record": "verdict"}, {"after": "x"}):
        response = client.get(f"{served.url}/records", params=bad)
        assert response.status_code == 400 and response.json()["error"]


def test_an_enterprise_shows_registration_open_orders_lists_class_and_recent_findings(served, client):
    # three exceedances within 30 days: a rectification order with a deadline (programme policy)
    for hour in (14, 15, 16):
        post_batch(client, served.url, orjson.dumps([emission(f"ex-{hour}", hour, 80.0, day=2)]))
    state = client.get(f"{served.url}/enterprises/{SUBJECT}").json()
    assert state["registration"]["name"] == "Beilun Castings"
    assert state["closed_by_law"] is False
    orders = state["open_orders"]
    assert len(orders) == 1 and orders[0]["list"] == "scattered_polluted" and orders[0]["deadline"]
    assert orders[0]["id"] in [d["id"] for d in state["lists"]["scattered_polluted"]]
    findings = state["recent_findings"]
    assert findings[0]["event"] == ["ex-16"]  # newest first
    assert all("hash" not in f for f in findings)
    # a firm of the demo city that the mu-average evaluation classed
    decisions = client.get(f"{served.url}/records", params={"record": "decision", "limit": 1000}).json()["records"]
    classed = [r["record"] for r in decisions if r["record"].get("evaluation")]
    assert classed
    other = client.get(f"{served.url}/enterprises/{classed[-1]['enterprise']}").json()
    assert other["latest_class"]["class"] == classed[-1]["evaluation"]["class"]
    assert other["registration"] is not None
    missing = client.get(f"{served.url}/enterprises/91330200MA2XXXXXXX")
    assert missing.status_code == 404


def test_explain_a_decision_and_404(served, client):
    state = client.get(f"{served.url}/enterprises/{SUBJECT}").json()
    order = state["open_orders"][0]["id"]
    report = client.get(f"{served.url}/decisions/{order}/explain").json()
    assert report["id"] == order and report["record"] == "decision"
    assert report["rule"]["id"] == "programme.scattered.repeat_exceedance"
    assert len(report["evidence"]["findings"]) == 3 and report["logged"]["matches"] is True
    assert client.get(f"{served.url}/decisions/D-nothing/explain").status_code == 404


def test_the_report_is_the_live_store(served, client):
    response = client.get(f"{served.url}/report")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert SUBJECT in response.text  # on a list since the order above
    assert "<!DOCTYPE html>" in response.text


def test_health_and_openapi(served, client):
    health = client.get(f"{served.url}/health").json()
    assert health["state"] == "running" and health["clock"].startswith("2024-03-")
    counts = health["counts"]
    assert counts["read"] == counts["processed"] + counts["duplicate"] + counts["quarantined"]
    assert health["store"]["events"] == counts["read"] and health["store"]["records"] > 0
    spec = client.get(f"{served.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {"/events", "/records", "/enterprises/{code}", "/decisions/{id}/explain", "/report",
                                  "/health"}
    assert set(spec["paths"]["/events"]["post"]["requestBody"]["content"]) == {
        "application/cloudevents+json", BATCH, "application/json"}
    assert spec["components"]["schemas"]["Event"]["required"][:2] == ["specversion", "id"]


def test_hj212_packets_are_committed_before_the_9014_reply(served, client):
    assert served.hj212 is not None
    qn = "20240302180000001"
    packet = frame(f"QN={qn};ST=31;CN=2061;PW=123456;MN=3302FDY00000000000000001;Flag=5;"
                   f"CP=&&DataTime=20240302180000;a34013-Avg=90,a34013-Flag=N;a19001-Avg=15,a19001-Flag=N&&")
    with socket.create_connection(served.hj212, timeout=10) as sock:
        sock.sendall(packet)
        reply = sock.recv(4096)
    assert b"CN=9014" in reply and qn.encode() in reply
    # acknowledged means committed: a new read connection sees the finding at once
    found = client.get(f"{served.url}/records", params={"enterprise": SUBJECT, "record": "finding",
                                                        "limit": 1000}).json()["records"]
    assert any(r["record"]["event"][0].startswith("hj212:3302FDY00000000000000001:2061:20240302180000") for r in found)
    with socket.create_connection(served.hj212, timeout=10) as sock:  # a bad CRC: QnRtn 9, quarantined and kept
        sock.sendall(packet[:-6] + b"0000\r\n")
        assert b"QnRtn=9" in sock.recv(4096)
    time.sleep(0.2)
    quarantined = client.get(f"{served.url}/records", params={"record": "quarantine", "limit": 1000}).json()["records"]
    assert any("CRC" in r["record"]["error"] and r["record"]["source"].startswith("tcp:") for r in quarantined)


def test_zz_sigterm_stops_cleanly_and_the_store_replays_to_the_same_records(served, client):
    """Last in the module: stop the shared server, then audit what it wrote."""
    before = client.get(f"{served.url}/health").json()
    assert served.stop() == 0
    output = served.output()
    assert "rectify serve: stopped" in output and "Traceback" not in output
    with Store(served.store) as store:
        assert store.last_event() == before["store"]["events"]
        head, count = store.head(), store.count()
        exported = b"".join(line + b"\n" for line in store.lines())
        assert store.checkpoint()[0] == store.last_event()  # a checkpoint at shutdown: a restart replays nothing
    assert (served.store.parent / "out.jsonl").read_bytes() == exported
    replay = subprocess.run([*RECTIFY, "replay", "--verify", str(served.store)], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"replay matches {served.store}: {count} records, head {head}" in replay.stdout
    verify = subprocess.run([*RECTIFY, "verify", "--store", str(served.store)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "chain intact" in verify.stderr


def test_the_replay_check_fails_when_a_stored_record_was_changed(tmp_path, city):
    server = Server(tmp_path / "d.db")
    with httpx.Client(timeout=30) as client:
        for body in batches(city[:1500], 500):
            assert post_batch(client, server.url, body).status_code == 200
    assert server.stop() == 0
    with Store(tmp_path / "d.db") as store:
        seq, line = store.page(after=0, limit=1)[0]
        store.db.execute("UPDATE records SET line = ? WHERE seq = ?", (line.replace(b'"judged":', b'"judged":1'), seq))
    replay = subprocess.run([*RECTIFY, "replay", "--verify", str(tmp_path / "d.db")], capture_output=True, text=True,
                            timeout=120)
    assert replay.returncode == 1 and "first divergence at line 1" in replay.stdout
    # and the service refuses to start on it rather than continue a chain it cannot reproduce
    for checkpoint in tmp_path.glob("d.db.checkpoint-*"):  # no checkpoint: the restart replays every kept event
        checkpoint.unlink()
    refused = subprocess.run([*RECTIFY, "serve", "--store", str(tmp_path / "d.db"), "--http", "127.0.0.1:0"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "do not give the records kept" in refused.stderr


def test_a_store_refuses_another_clock_guard(tmp_path, city):
    """The clock guard is part of the service's configuration: a restart with another one would
    decide differently from the records kept (and from the manifest `replay --verify` uses)."""
    server = Server(tmp_path / "g.db")
    with httpx.Client(timeout=30) as client:
        assert post_batch(client, server.url, batches(city[:300], 300)[0]).status_code == 200
    assert server.stop() == 0
    refused = subprocess.run([*RECTIFY, "serve", "--store", str(tmp_path / "g.db"), "--http", "127.0.0.1:0",
                              "--clock-lead-days", "30"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "another configuration (clock: stored" in refused.stderr, refused.stderr


def test_checkpoints_are_files_beside_the_store_and_a_damaged_one_means_a_full_replay(tmp_path, city):
    """A forked checkpoint is a synced file the store names (the snapshot never passes through the
    store's transactions); replaced ones go. Without a whole file a restart replays every kept event
    and must give the same records."""
    store = tmp_path / "c.db"
    server = Server(store, "--checkpoint-every", "400")
    with httpx.Client(timeout=30) as client:
        seen = set()
        for body in batches(city[:1600], 200):
            assert post_batch(client, server.url, body).status_code == 200
            time.sleep(0.3)  # let the child write its file and the loop name it between groups
            seen.add(client.get(f"{server.url}/health").json()["store"]["checkpoint"])
    assert seen & {400, 600, 800, 1000, 1200, 1400}  # checkpoints from forked children while serving
    assert server.stop() == 0
    files = sorted(tmp_path.glob("c.db.checkpoint-*"))
    with Store(store) as db:
        kept = [bytes(line) for line in db.lines()]
        assert files == [db.checkpoint_file()] and db.checkpoint()[0] == db.last_event() == 1600
        assert db.db.execute("SELECT count(*) FROM checkpoint").fetchone()[0] == 0
    files[0].write_bytes(files[0].read_bytes()[:-100])  # cut short (a disk that lost its tail)
    again = Server(store)
    assert "replayed 1600 after checkpoint 0" in again.ready_line and "not whole" in again.output()
    assert again.stop() == 0
    with Store(store) as db:
        assert [bytes(line) for line in db.lines()] == kept
        assert db.checkpoint()[0] == 1600  # the shutdown wrote a whole one again


def test_a_token_guards_post_and_binding_beyond_loopback_needs_one(tmp_path):
    refused = subprocess.run([*RECTIFY, "serve", "--store", str(tmp_path / "x.db"), "--http", "0.0.0.0:0"],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "RECTIFY_SERVE_TOKEN": ""})
    assert refused.returncode == 2 and "needs a token" in refused.stderr
    token = "s3cret-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    server = Server(tmp_path / "t.db", "--token-file", str(tmp_path / "token"))
    try:
        with httpx.Client(timeout=30) as client:
            body = orjson.dumps([REGISTRATION])
            assert post_batch(client, server.url, body).status_code == 401
            assert post_batch(client, server.url, body, authorization="Bearer wrong-token-0123456789").status_code == 401
            assert post_batch(client, server.url, body, authorization="Basic " + token).status_code == 401
            ok = post_batch(client, server.url, body, authorization=f"Bearer {token}")
            assert ok.status_code == 200 and ok.json()["accepted"] == 1
            assert client.get(f"{server.url}/health").status_code == 200  # reads need no token
    finally:
        assert server.stop() == 0


def test_sigterm_answers_the_request_in_flight_then_exits_0(tmp_path):
    server = Server(tmp_path / "g.db")
    events = generate_city(enterprises=150, days=3, seed=12).events[:6000]
    assert len(events) == 6000
    body = orjson.dumps(events)
    answer: dict[str, Any] = {}

    def send() -> None:
        with httpx.Client(timeout=60) as client:
            answer["response"] = post_batch(client, server.url, body)

    sender = threading.Thread(target=send)
    sender.start()
    with httpx.Client(timeout=30) as client:
        deadline = time.monotonic() + 30
        while True:  # until the batch waits for the writer (or, on a fast day, is already written)
            health = client.get(f"{server.url}/health").json()
            if health["pending_events"] or health["store"]["events"]:
                break
            assert time.monotonic() < deadline and sender.is_alive()
            time.sleep(0.002)
    server.process.send_signal(signal.SIGTERM)  # while the batch is being written
    sender.join(60)
    assert server.process.wait(60) == 0
    response = answer["response"]
    assert response.status_code == 200 and response.json()["accepted"] == 6000
    with Store(tmp_path / "g.db") as store:
        assert store.last_event() == 6000
    with pytest.raises(httpx.TransportError):  # and it no longer listens
        httpx.get(f"{server.url}/health", timeout=2)


def test_checkpoints_are_taken_while_the_queue_never_empties(tmp_path, city):
    """A checkpoint was started only when no group waited: under a sustained load (a loaded
    machine, senders that never pause) none came, and a kill replayed every kept event (seen as
    'replayed 7622 after checkpoint 0' in test_serve_crash on a busy machine)."""
    lines = [orjson.dumps(event) for event in city[:2000]]
    service = Service(tmp_path / "q.db", Engine, checkpoint_every=200, group=100)
    loop = asyncio.new_event_loop()
    try:
        service.attach(loop)
        service.start()
        futures = [service.submit_lines(lines[at:at + 100], [None] * 100) for at in range(0, len(lines), 100)]
        stored: list[int] = []

        async def watch() -> None:  # the stored checkpoint after every callback, until all is written and named
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (all(f.done() for f in futures) and stored and stored[-1]):
                stored.append(service.status().get("store", {}).get("checkpoint", 0))
                await asyncio.sleep(0 if not all(f.done() for f in futures) else 0.05)

        loop.run_until_complete(watch())
        assert all(f.result() for f in futures)
        assert 0 < min(c for c in stored if c) < len(lines), sorted(set(stored))
    finally:
        service.stop()
        loop.close()
