"""Hostile peers of the HJ 212 listener (issue 15, item 2), each under a bounded load loop on
loopback: split packets that never complete, a peer trickling one byte at a time, a flood of
silent connections, and a port already in use.

What main (69b045b) did: 1,200 parts of 9.9 KB with PNUM=9999 on one connection grew the
process by 162 MB (linear in the parts sent); a connection trickling a byte every 2 s outlived
`--idle-timeout 5`; 256 silent connections locked out every registered logger
(`ConnectionResetError`); a port in use gave an OSError traceback.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time

import pytest

from engine.ingest.hj212.listener import ListenerLimits
from engine.records import Quarantined
from engine.ingest.hj212.protocol import build_packet
from test_hj212_listener import MN, PW, REGISTRY, Running, closed_by_peer, data_reply, read_reply, upload

ITEMS = ";".join(f"a{n:05d}-Avg=1.0,a{n:05d}-Flag=N" for n in range(10_000, 10_336))  # ~9.9 KB of CP


def part(qn: str, pnum: int, pno: int) -> bytes:
    """A split-packet part of about 9.9 KB; Flag 6 (D bit, no A bit): no reply, so a client never waits.
    Framed by the engine's own `build_packet` (its CRC is checked against an independent one in test_hj212)."""
    head = f"QN={qn};ST=31;CN=2061;PW={PW};MN={MN};Flag=6;PNUM={pnum};PNO={pno};"
    return build_packet(head + f"CP=&&DataTime={qn[:14]};{ITEMS}&&")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture
def server(request):
    running = Running(request.param)
    try:
        yield running
    finally:
        if running.thread.is_alive():
            running.stop()


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition()


@pytest.mark.parametrize("server", [ListenerLimits(idle_timeout=10.0, max_split_bytes=1 << 20,
                                                   max_split_packet_bytes=1 << 19)], indirect=True)
def test_split_parts_that_never_complete_are_bounded_in_bytes_and_parts(server):
    assert len(part("20240301100000000", 9999, 1)) > 9_800
    before = rss_mb()
    with server.connect() as client:
        for n in range(1, 1201):  # PNUM 9999: refused at once, nothing held
            client.sendall(part("20240301100000000", 9999, n))
        for n in range(1, 1201):  # PNUM 100, every part a packet of its own: held up to the byte bound, then evicted
            client.sendall(part(f"2024030111{n:07d}", 100, 1))
        client.sendall(upload("20240301120000000"))  # and the connection still works
        assert read_reply(client) == data_reply("20240301120000000")
    limits = server.listener.limits
    assert server.listener.held_split_bytes <= limits.max_split_bytes
    grown = rss_mb() - before
    assert grown < 60, f"the process grew by {grown:.0f} MB"
    refused = [r for r in server.records if isinstance(r, Quarantined) and "PNUM 9999 is more than the 100 parts" in r.error]
    evicted = [r for r in server.records if isinstance(r, Quarantined) and "parts held exceed" in r.error]
    assert len(refused) == 1200
    held = server.listener.held_split_bytes // len(part("20240301110000001", 100, 1))
    assert len(evicted) == 1200 - held and 0 < held <= limits.max_split_bytes // 9_800
    server.stop()  # what is still held is quarantined at shutdown: every part is accounted for
    assert sum(isinstance(r, Quarantined) for r in server.records) == 2400


def test_one_packet_cannot_hold_more_than_its_byte_bound():
    from engine.ingest.hj212.protocol import parse_packet
    from engine.ingest.hj212.reassembly import Reassembler

    reassembler: Reassembler[int] = Reassembler(max_parts=100, max_packet_bytes=50_000, max_bytes=100_000)
    dropped = []
    for n in range(1, 8):
        raw = part("20240301100000000", 100, n)
        whole, out = reassembler.add(parse_packet(raw), n, len(raw))
        assert whole is None
        dropped += out
    assert [tag for tag, _, _ in dropped] == [1, 2, 3, 4, 5, 6]  # the 6th part would pass 50,000 bytes: all six go
    assert "its parts exceed 50000 bytes" in str(dropped[0][2]) and reassembler.held_bytes == len(raw)


@pytest.mark.parametrize("server", [ListenerLimits(idle_timeout=1.0, packet_timeout=2.0)], indirect=True)
def test_a_peer_trickling_bytes_meets_the_packet_deadline(server):
    packet = upload("20240301100000001")
    started = time.monotonic()
    with server.connect() as client:
        closed = False
        for byte in packet[:-2]:  # one byte every 0.3 s: never idle for 1 s
            try:
                client.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.3)
            if time.monotonic() - started > 6:
                break
        assert closed or closed_by_peer(client)
    assert time.monotonic() - started < 4.5
    assert server.listener.stats.packet_timeout_closed == 1 and server.listener.stats.idle_closed == 0
    assert server.records == []


@pytest.mark.parametrize("server", [ListenerLimits(max_connections=256, max_unauthenticated=32, idle_timeout=30.0,
                                                   auth_timeout=5.0)], indirect=True)
def test_a_flood_of_silent_connections_does_not_lock_out_a_registered_logger(server):
    flood = []
    try:
        for _ in range(300):  # more than max_connections: each beyond the reserve evicts the oldest silent one
            sock = socket.create_connection((server.host, server.port), timeout=5)
            sock.sendall(b"#")  # a byte, never a packet
            flood.append(sock)
        wait_for(lambda: server.listener.unauthenticated <= 32)
        for n in range(5):  # registered loggers connect now, and keep their places
            with server.connect() as logger:
                logger.sendall(upload(f"2024030110000000{n}"))
                assert read_reply(logger) == data_reply(f"2024030110000000{n}")
        stats = server.listener.stats
        assert stats.evicted_unauthenticated >= 300 - 32 and stats.refused_connections == 0
        assert [r["data"]["value"] for r in server.records if isinstance(r, dict)] == [35.0] * 5
    finally:
        for sock in flood:
            sock.close()


@pytest.mark.parametrize("server", [ListenerLimits(auth_timeout=0.5, idle_timeout=30.0)], indirect=True)
def test_a_connection_that_never_authenticates_is_closed(server):
    started = time.monotonic()
    with server.connect() as client:
        client.sendall(upload("20240301100000001", pw="000000"))  # a wrong PW does not authenticate
        read_reply(client)
        assert closed_by_peer(client)
    assert 0.4 <= time.monotonic() - started < 3
    assert server.listener.stats.auth_timeout_closed == 1


def test_a_port_in_use_is_a_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", "ingest", "hj212",
                                 "--listen", f"127.0.0.1:{port}", "--registry", str(REGISTRY),
                                 "--out", str(tmp_path / "e.jsonl")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"rectify: cannot listen on 127.0.0.1:{port}:" in result.stderr and "address already in use" in result.stderr
