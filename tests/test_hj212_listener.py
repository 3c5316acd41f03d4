"""The HJ 212 listener driven by real TCP clients on 127.0.0.1 (ephemeral ports), bounded in time.

The listener runs on its own event loop in a thread; the tests talk to it with plain
blocking sockets, the way a data logger would, and check the replies byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.ingest.hj212 import Registry
from engine.ingest.hj212.listener import Hj212Listener, ListenerLimits
from engine.records import Quarantined

DATA = Path(__file__).parent / "data" / "hj212"
REGISTRY = DATA / "registry.yaml"
MN, PW = "3302FDY00000000000000001", "123456"
from test_hj212 import crc_reference as crc, frame  # one independent CRC for both test files

TIMEOUT = 5.0


def upload(qn: str, *, flag: int = 5, value: str = "35", mn: str = MN, pw: str = PW, split: tuple[int, int] | None = None,
           item: str | None = None) -> bytes:
    head = f"QN={qn};ST=31;CN=2061;PW={pw};MN={mn};Flag={flag};" + (f"PNUM={split[0]};PNO={split[1]};" if split else "")
    return frame(head + f"CP=&&DataTime={qn[:14]};" + (item or f"a34013-Avg={value},a34013-Flag=N") + "&&")


def data_reply(qn: str, flag: int = 4) -> bytes:
    return frame(f"QN={qn};ST=91;CN=9014;PW={PW};MN={MN};Flag={flag};CP=&&&&")


def request_reply(qn: str, code: int, pw: str = PW, mn: str = MN) -> bytes:
    return frame(f"QN={qn};ST=91;CN=9011;PW={pw};MN={mn};Flag=4;CP=&&QnRtn={code}&&")


class Running:
    """A listener on its own loop thread, recording what reaches the sink."""

    def __init__(self, limits: ListenerLimits) -> None:
        self.records: list[object] = []
        self.loop = asyncio.new_event_loop()
        self.listener = Hj212Listener(Registry.load(REGISTRY), self.records.append, "127.0.0.1", 0, limits)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.host, self.port = asyncio.run_coroutine_threadsafe(self.listener.start(), self.loop).result(TIMEOUT)

    def connect(self) -> socket.socket:
        client = socket.create_connection((self.host, self.port), timeout=TIMEOUT)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture
def running(request) -> Iterator[Running]:
    limits = getattr(request, "param", None) or ListenerLimits(idle_timeout=3.0)
    server = Running(limits)
    try:
        yield server
    finally:
        if server.thread.is_alive():
            server.stop()


def read_reply(client: socket.socket) -> bytes:
    buffer = b""
    while not buffer.endswith(b"\r\n"):
        chunk = client.recv(1024)
        if not chunk:
            break
        buffer += chunk
    return buffer


def closed_by_peer(client: socket.socket) -> bool:
    try:
        return client.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_the_listener_binds_to_loopback_by_default():
    assert Hj212Listener.__init__.__defaults__[0] == "127.0.0.1"  # type: ignore[index]


def test_fragments_are_reassembled_and_replied_byte_for_byte(running):
    packet = upload("20240301100000123")
    with running.connect() as client:
        for at in range(0, len(packet), 5):  # a data logger on a slow link
            client.sendall(packet[at:at + 5])
            time.sleep(0.001)
        reply = read_reply(client)
    assert reply == data_reply("20240301100000123")
    assert reply == b"##0087QN=20240301100000123;ST=91;CN=9014;PW=123456;MN=3302FDY00000000000000001;Flag=4;CP=&&&&" + \
        f"{crc(reply[6:-6]):04X}".encode() + b"\r\n"
    (event,) = running.records
    assert event["id"] == f"hj212:{MN}:2061:20240301100000:a34013" and event["data"]["value"] == 35.0


def test_a_packet_with_a_non_ascii_pw_is_quarantined_and_the_connection_goes_on(running):
    """A PW of non-ASCII bytes was echoed into the reply: UnicodeEncodeError, no reply, the connection dropped."""
    bad = upload("20240301090000001", pw="密码")
    with running.connect() as client:
        client.sendall(bad + upload("20240301100000002"))
        assert read_reply(client) == data_reply("20240301100000002")  # no reply can carry that PW; the next is answered
    quarantined, event = running.records
    assert isinstance(quarantined, Quarantined) and "non-ASCII" in quarantined.error
    assert event["id"] == f"hj212:{MN}:2061:20240301100000:a34013"


def test_replies_for_rejected_packets_carry_qnrtn_and_no_reply_without_the_a_bit(running):
    bad_crc = upload("20240301100000001").replace(b"a34013-Avg=35", b"a34013-Avg=36")
    with running.connect() as client:
        client.sendall(upload("20240301100000000", flag=4))  # A bit clear: no reply
        client.sendall(bad_crc)
        assert read_reply(client) == request_reply("20240301100000001", 9)
        client.sendall(upload("20240301100000002", mn="3302FDY00000000000000099"))
        assert read_reply(client) == request_reply("20240301100000002", 4, mn="3302FDY00000000000000099")
        client.sendall(upload("20240301100000003", pw="000000"))
        assert read_reply(client) == request_reply("20240301100000003", 3, pw="000000")
        client.sendall(upload("20240301100000004", item="a99999-Avg=1"))
        assert read_reply(client) == request_reply("20240301100000004", 100)
        client.sendall(upload("20240301100000005", flag=9))  # a newer edition: its version bits come back
        assert read_reply(client) == data_reply("20240301100000005", flag=8)
    errors = [r.error for r in running.records if isinstance(r, Quarantined)]
    assert [e.rsplit(" (", 1)[1] for e in errors] == ["QnRtn 9)", "QnRtn 4)", "QnRtn 3)", "QnRtn 100)"]
    assert [r["id"].split(":")[2:4] for r in running.records if isinstance(r, dict)] == [
        ["2061", "20240301100000"], ["2061", "20240301100000"]]


def test_split_packets_over_the_socket_and_flushed_at_stop(running):
    with running.connect() as client:
        client.sendall(upload("20240301100000001", flag=7, split=(2, 2), item="a19001-Avg=18,a19001-Flag=N"))
        assert read_reply(client) == data_reply("20240301100000001")
        assert running.records == []  # waiting for part 1
        client.sendall(upload("20240301100000001", flag=7, split=(2, 1)))
        assert read_reply(client) == data_reply("20240301100000001")
        client.sendall(upload("20240301110000002", flag=7, split=(2, 1)))  # never completed
        assert read_reply(client) == data_reply("20240301110000002")
    (event,) = [r for r in running.records if isinstance(r, dict)]
    assert event["data"]["o2_percent"] == 18.0
    running.stop()
    (left,) = [r for r in running.records if isinstance(r, Quarantined)]
    assert "incomplete split packet at shutdown: 1 of 2 parts" in left.error and "QN=20240301110000002" in left.raw


@pytest.mark.parametrize("running", [ListenerLimits(idle_timeout=0.3)], indirect=True)
def test_an_idle_connection_is_closed(running):
    started = time.monotonic()
    with running.connect() as client:
        client.sendall(upload("20240301100000001")[:20])  # half a packet, then silence
        assert closed_by_peer(client)
    assert 0.25 <= time.monotonic() - started < 3
    assert running.listener.stats.idle_closed == 1
    assert running.records == []  # a half packet was never accepted


def test_an_oversize_packet_closes_the_connection(running):
    with running.connect() as client:
        client.sendall(upload("20240301100000001"))
        assert read_reply(client) == data_reply("20240301100000001")
        try:
            client.sendall(b"##9999" + b"A" * 10_100)
        except ConnectionError:
            pass
        assert closed_by_peer(client)
    assert running.listener.stats.oversize_closed == 1
    assert any(isinstance(r, Quarantined) and "longer than" in r.error for r in running.records)


@pytest.mark.parametrize("running", [ListenerLimits(max_connections=2, idle_timeout=3.0)], indirect=True)
def test_connections_beyond_the_limit_are_refused(running):
    first, second = running.connect(), running.connect()
    try:
        for n, client in enumerate((first, second)):
            client.sendall(upload(f"2024030110000000{n}"))
            assert read_reply(client) == data_reply(f"2024030110000000{n}")
        with running.connect() as third:
            assert closed_by_peer(third)
        assert running.listener.stats.refused_connections == 1
    finally:
        first.close()
        second.close()


def test_sigterm_stops_the_cli_listener_without_losing_accepted_packets(tmp_path):
    out = tmp_path / "events.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", "from engine.cli import main; main()", "ingest", "hj212", "--listen", "127.0.0.1:0",
         "--registry", str(REGISTRY), "--out", str(out)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        port = None
        deadline = time.monotonic() + 15
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if line.startswith("listening on "):
                port = int(line.rsplit(":", 1)[1])
        assert port, "the listener did not start"
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            for n in range(5):
                client.sendall(upload(f"2024030110000000{n}", value=str(40 + n)))
                assert read_reply(client) == data_reply(f"2024030110000000{n}")
            client.sendall(upload("20240301100000009")[:30])  # not accepted: no reply, not in the output
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    events = [json.loads(x) for x in out.read_text().splitlines()]
    assert [e["data"]["value"] for e in events] == [40.0, 41.0, 42.0, 43.0, 44.0]
    assert "events 5  quarantined packets 0" in err
