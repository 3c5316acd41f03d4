"""Crash safety of `rectify serve`: kill -9 at five points under load, restart on the same store.

Three HTTP senders post the demo city in batches and an HJ 212 logger sends hourly packets,
all retrying what was not acknowledged (as real senders do). The server is SIGKILLed five
times while they send and started again on the same store and ports. Then: nothing
acknowledged is lost (every acknowledged event is kept), nothing is decided twice (each event
processed once, every record id once), the chain verifies, and `rectify replay --verify STORE`
gives the records the service wrote from the events it kept, in arrival order.
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

from engine.devtools.demo import generate_city
from engine.output import Store, StoreError
from test_hj212 import frame
from test_serve import BATCH, RECTIFY, REGISTRY, Server, reap_servers  # noqa: F401 - the fixture kills leftovers

KILLS = 5
MN, PW = "3302FDY00000000000000001", "123456"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Senders:
    """HTTP batch senders and one HJ 212 logger, retrying until acknowledged; what was acknowledged."""

    def __init__(self, url: str, hj212: tuple[str, int], bodies: list[bytes], packets: list[tuple[str, bytes]]) -> None:
        self.url, self.hj212 = url, hj212
        self.work: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        for body in bodies:
            self.work.put(body)
        self.packets = packets
        self.acked: Counter[str] = Counter()  # event id -> acknowledgements
        self.acked_packets: list[str] = []
        self.retries = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._http, daemon=True) for _ in range(3)]
        self.threads.append(threading.Thread(target=self._logger, daemon=True))
        for thread in self.threads:
            thread.start()

    def _http(self) -> None:
        with httpx.Client(timeout=20) as client:
            while True:
                try:
                    body = self.work.get_nowait()
                except queue.Empty:
                    return
                while True:
                    try:
                        response = client.post(f"{self.url}/events", content=body, headers={"content-type": BATCH})
                    except httpx.TransportError:
                        response = None
                    if response is not None and response.status_code == 200:
                        with self.lock:
                            for outcome in response.json()["events"]:
                                assert outcome["status"] in ("accepted", "duplicate"), outcome
                                self.acked[outcome["id"]] += 1
                        break
                    with self.lock:
                        self.retries += 1
                    time.sleep(0.05)

    def _logger(self) -> None:
        sock: socket.socket | None = None
        for stamp, packet in self.packets:
            while True:
                try:
                    if sock is None:
                        sock = socket.create_connection(self.hj212, timeout=5)
                    sock.sendall(packet)
                    reply = sock.recv(4096)
                    if b"CN=9014" in reply:
                        self.acked_packets.append(stamp)
                        break
                    raise ConnectionError("no data reply")
                except OSError:
                    if sock is not None:
                        sock.close()
                        sock = None
                    with self.lock:
                        self.retries += 1
                    time.sleep(0.05)
            time.sleep(0.002)
        if sock is not None:
            sock.close()

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)


def _events_kept(store: Path) -> int:
    with Store(store, readonly=True) as db:
        return db.last_event()


def _checkpointed(store: Path) -> int:
    """The input offset of the store's last checkpoint (0 without one, or while the file it names
    is being replaced by the next)."""
    try:
        with Store(store, readonly=True) as db:
            found = db.checkpoint()
    except StoreError:
        return 0
    return 0 if found is None else found[0]


def test_kill_9_at_five_points_under_load_loses_nothing_acknowledged_and_decides_nothing_twice(tmp_path):
    events = generate_city(enterprises=150, days=3, seed=21).events
    bodies = [orjson.dumps(events[i:i + 100]) for i in range(0, len(events), 100)]
    packets = []
    for hour in range(240):
        stamp = f"202403{4 + hour // 24:02d}{hour % 24:02d}0000"
        packets.append((stamp, frame(f"QN={stamp}001;ST=31;CN=2061;PW={PW};MN={MN};Flag=5;"
                                     f"CP=&&DataTime={stamp};a34013-Avg={20 + hour % 50},a34013-Flag=N;"
                                     "a19001-Avg=15,a19001-Flag=N&&")))
    store = tmp_path / "decisions.db"
    http, hj212 = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    args = ("--hj212", hj212, "--registry", str(REGISTRY), "--checkpoint-every", "700")
    server = Server(store, *args, http=http)
    senders = Senders(server.url, server.hj212, bodies, packets)
    total = len(events) + len(packets)
    ready_lines = []
    for kill in range(1, KILLS + 1):
        target = total * kill // (KILLS + 2)
        deadline = time.monotonic() + 60
        while _events_kept(store) < target:
            assert time.monotonic() < deadline, f"kill {kill}: the store did not reach {target} events"
            assert senders.alive(), "the senders finished before the kill points"
            time.sleep(0.01)
        # the last two kills come after a background checkpoint is stored: on a busy machine the
        # forked snapshots can lag behind the kill points, and restarts from no checkpoint at all
        # would not show the checkpoints working
        while kill > KILLS - 2 and not _checkpointed(store):
            assert time.monotonic() < deadline, f"kill {kill}: no checkpoint was stored"
            time.sleep(0.01)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
        server = Server(store, *args, http=http)
        ready_lines.append(server.ready_line)
    for thread in senders.threads:
        thread.join(120)
    assert not senders.alive()
    with httpx.Client(timeout=10) as client:
        health = client.get(f"{server.url}/health").json()
    assert server.stop() == 0, server.output()
    assert senders.retries > 0  # the kills hit senders in the middle of their work

    # nothing acknowledged is lost: every acknowledged event (HTTP) and packet (HJ 212) is kept
    with Store(store) as db:
        kept = [orjson.loads(item.text) for item in db.inputs()]
        records = [orjson.loads(line) for line in db.lines()]
    kept_ids = Counter(event["id"] for event in kept)
    assert set(senders.acked) == {e["id"] for e in events} and set(senders.acked) <= set(kept_ids)
    assert len(senders.acked_packets) == len(packets)
    for stamp in senders.acked_packets:
        assert f"hj212:{MN}:2061:{stamp}:a34013" in kept_ids
    # nothing decided twice: each distinct event processed once, the rest duplicates; record ids unique
    counts = health["counts"]
    assert counts["processed"] == len(kept_ids) == len(events) + len(packets)  # one reading a packet (O2 goes into it)
    assert counts["read"] == len(kept) and counts["duplicate"] == len(kept) - len(kept_ids)
    ids = Counter(r["id"] for r in records if r["record"] in ("finding", "decision"))
    assert ids and max(ids.values()) == 1
    assert any(r["record"] == "decision" for r in records)
    # the kills fell between checkpoints: restarts replayed kept events after their checkpoint
    replayed = [int(re.search(r"replayed (\d+) after", line).group(1)) for line in ready_lines]  # type: ignore[union-attr]
    assert len(replayed) == KILLS and any(replayed), ready_lines
    # ... and from checkpoints taken in the background (a forked snapshot, stored between groups)
    checkpoints = [int(re.search(r"after checkpoint (\d+)", line).group(1)) for line in ready_lines]  # type: ignore[union-attr]
    assert sum(1 for c in checkpoints if c > 0) >= 2, ready_lines
    # determinism: the records written are `rectify run` over the kept events in arrival order; the chain holds
    replay = subprocess.run([*RECTIFY, "replay", "--verify", str(store)], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    verify = subprocess.run([*RECTIFY, "verify", "--store", str(store)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "chain intact" in verify.stderr
