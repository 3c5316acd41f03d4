"""A damaged store and an unreachable scheduler (issue 15, item 6): a message and a documented
exit code, never a traceback; `verify --store` runs SQLite's integrity check before the chain.

What main (69b045b) did: a truncated store gave a `sqlite3.DatabaseError` traceback (exit 1 by
accident); with its header overwritten, `verify --store` read the file as a JSONL log; an
unreachable `--scheduler` gave an OSError traceback after 30 s.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.devtools.demo import generate_city, write_jsonl

RECTIFY = [sys.executable, "-c", "from engine.cli import main; main()"]


def rectify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RECTIFY, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("store")
    events, store = folder / "events.jsonl", folder / "good.db"
    write_jsonl(generate_city(enterprises=120, days=1, seed=3).events, events)
    result = rectify("run", str(events), "--store", str(store))
    assert result.returncode == 0, result.stderr
    assert rectify("verify", "--store", str(store)).returncode == 0
    return events, store


def damaged_copy(store: Path, tmp_path: Path, how: str) -> Path:
    data = bytearray(store.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2 + 123]
    elif how == "header":
        data[:100] = b"\x00" * 100
    elif how == "page":  # garbage over a page in the middle: SQLite's integrity check finds it
        page = 4096
        middle = (len(data) // page // 2) * page
        data[middle + 8: middle + page] = bytes((i * 37) % 251 for i in range(page - 8))
    path = tmp_path / f"{how}.db"
    path.write_bytes(bytes(data))
    return path


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("how", ["truncated", "page"])
def test_verify_store_checks_integrity_first(made, tmp_path, how):
    bad = damaged_copy(made[1], tmp_path, how)
    result = rectify("verify", "--store", str(bad))
    no_traceback(result)
    assert result.returncode == 1
    assert "STORE DAMAGED" in result.stderr or "is damaged or not a rectify store" in result.stderr


def test_verify_store_does_not_read_an_overwritten_store_as_jsonl(made, tmp_path):
    bad = damaged_copy(made[1], tmp_path, "header")
    result = rectify("verify", "--store", str(bad))
    no_traceback(result)
    assert result.returncode == 1
    assert "not a SQLite store: it starts with" in result.stderr and "STORE DAMAGED" in result.stderr


DAMAGED = "is damaged or not a rectify store (SQLite: "
EXPECTED = {  # (command, damage) -> (exit code, what stderr says)
    ("decisions", "truncated"): (1, DAMAGED + "database disk image is malformed)"),
    ("decisions", "page"): (1, DAMAGED + "database disk image is malformed)"),
    ("decisions", "header"): (2, "is not a rectify SQLite store"),
    ("replay", "truncated"): (1, DAMAGED + "database disk image is malformed)"),
    ("replay", "page"): (1, DAMAGED + "database disk image is malformed)"),
    ("replay", "header"): (1, "it holds NUL bytes, so it is no JSONL log"),
    ("run", "truncated"): (1, DAMAGED + "database disk image is malformed)"),
    ("run", "page"): (2, "already holds a complete run"),  # its meta table is intact: it refuses to be reused
    ("run", "header"): (1, DAMAGED + "file is not a database)"),
}


@pytest.mark.parametrize("command, how", sorted(EXPECTED))
def test_every_command_on_a_damaged_store_says_so(made, tmp_path, command, how):
    events, store = made
    bad = damaged_copy(store, tmp_path, how)
    args = {"decisions": ["decisions", "--store", str(bad), "--json"],
            "replay": ["replay", str(events), "--verify", str(bad)],
            "run": ["run", str(events), "--store", str(bad)]}[command]
    result = rectify(*args)
    no_traceback(result)
    code, message = EXPECTED[(command, how)]
    assert (result.returncode, message in result.stderr) == (code, True), result.stderr[-600:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_scheduler_is_a_message(made, tmp_path):
    events, _ = made
    address = f"tcp://127.0.0.1:{free_port()}"
    result = rectify("run", str(events), "--out", str(tmp_path / "out.jsonl"), "--cluster", "dask",
                     "--scheduler", address, "--connect-timeout", "2")
    no_traceback(result)
    assert result.returncode == 2
    assert f"rectify: cannot reach the Dask scheduler at {address} within 2 s" in result.stderr
