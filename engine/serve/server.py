"""Running the service: one asyncio process (uvloop) with the HTTP server (uvicorn), the HJ 212
listener and the service's writes, until SIGTERM or SIGINT.

In: a `ServeConfig`. Out: the exit code (0 after a graceful stop, 1 when the writer failed),
a `ready(info)` call once both sockets listen (the addresses actually bound, what was
recovered), the HJ 212 listener's stats in the log.

Graceful stop: both servers stop accepting at once; HTTP requests in flight are answered
(uvicorn waits up to `grace` seconds), HJ 212 packets received are committed and replied;
then what waits is written, a checkpoint taken, the store and --out closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import uvicorn
import uvloop

from engine.ingest.hj212 import Registry
from engine.ingest.hj212.listener import Hj212Listener, ListenerLimits
from engine.run import long_run_collector
from engine.serve.app import create_app
from engine.serve.service import Service


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Where to listen and the bounds. `http`/`hj212`: (host, port), port 0 picks a free one."""

    http: tuple[str, int] = ("127.0.0.1", 8080)
    hj212: tuple[str, int] | None = None
    registry: Registry | None = None
    hj212_limits: ListenerLimits = ListenerLimits()
    token: str | None = None
    max_body: int = 16 * 1024 * 1024
    grace: float = 30.0


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the service decides when to stop (and how to exit)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv4 or IPv6 by the host's form).

    Made with proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on connections of such sockets,
    and without it every answer waited ~40 ms for the client's delayed ACK (Nagle)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _main(service: Service, config: ServeConfig, ready: Callable[[dict[str, Any]], None]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    failed: list[BaseException] = []

    def on_failure(exc: BaseException) -> None:
        failed.append(exc)
        stop.set()

    service.on_failure = on_failure
    service.attach(loop)
    http_socket = bind(*config.http)
    app = create_app(service, token=config.token, max_body=config.max_body)
    server = _Uvicorn(uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning",
                                     timeout_graceful_shutdown=config.grace, server_header=False))
    listener: Hj212Listener | None = None
    info: dict[str, Any] = {"http": "%s:%d" % http_socket.getsockname()[:2], "recovered": service.recovered}
    if config.hj212 is not None:
        assert config.registry is not None
        listener = Hj212Listener(config.registry, service.hj212_sink, config.hj212[0], config.hj212[1],
                                 config.hj212_limits, durable=service.durable)
        info["hj212"] = "%s:%d" % await listener.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve(sockets=[http_socket]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if serving.done():
        await serving  # raises what stopped it
    ready(info)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    waits = [serving] + ([asyncio.create_task(listener.stop())] if listener is not None else [])
    await asyncio.gather(*waits, return_exceptions=True)
    stopped.cancel()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    service.stop()
    http_socket.close()
    if listener is not None:
        info["hj212_stats"] = {k: getattr(listener.stats, k) for k in listener.stats.__slots__}
    return 1 if failed or service.failure is not None else 0


def run(service: Service, config: ServeConfig, ready: Callable[[dict[str, Any]], None]) -> int:
    """Serve a started `service` until SIGTERM/SIGINT, on uvloop; the exit code.

    The process's garbage collector is set for a long-lived service (engine/run.py
    `long_run_collector`): with the defaults, full collections over the growing state (every id
    remembered for the de-duplication horizon) paused the loop for tens of milliseconds several
    times a minute under benchmarks/test_serve_load.py."""
    with long_run_collector(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_main(service, config, ready))
