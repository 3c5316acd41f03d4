"""A TCP listener for HJ 212 data loggers (asyncio, standard library only).

Data loggers open a TCP connection to the data centre and send packets; when a packet's
Flag A bit asks for it, the centre answers: a 9014 data reply for an accepted data upload,
a 9011 request reply carrying QnRtn otherwise (e.g. QnRtn 9 for a CRC error, so the logger
sends again). Every packet is judged by the same `PacketHandler` as file ingest, and its
events or its quarantine record are handed to the sink *before* the reply is written: a
packet that was acknowledged is never lost. A sink that keeps records in a transaction (the
live service, engine/serve/) also passes `durable`, awaited after the packets of each read and
before their replies go out, so a reply means the events are committed.

Bounded, because the peer is a device on a network, not a trusted file: the listener binds
to loopback unless told otherwise, holds at most `max_connections` connections (more are
closed at once), closes a connection idle for `idle_timeout` seconds, and closes one that
sends a packet longer than `max_packet_bytes` (the standard's 9999-byte data segment plus
framing). Split packets waiting for their other parts are bounded by the Reassembler.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.ingest.hj212.events import PacketHandler, quarantine_record
from engine.ingest.hj212.protocol import DATA_CNS, MAX_PACKET_BYTES, QNRTN_READY, Framer, PacketError, reply_for
from engine.ingest.hj212.stations import Registry
from engine.records import Quarantined

Sink = Callable[[dict[str, Any] | Quarantined], None]


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """The bounds of a listener (defaults suit a district's few hundred loggers)."""

    max_packet_bytes: int = MAX_PACKET_BYTES
    max_connections: int = 256
    idle_timeout: float = 300.0
    max_pending_split: int = 256
    read_size: int = 4096


@dataclass(slots=True)
class ListenerStats:
    """What happened, for the log line at shutdown."""

    connections: int = 0
    refused_connections: int = 0
    idle_closed: int = 0
    oversize_closed: int = 0
    packets: int = 0
    events: int = 0
    quarantined: int = 0
    replies: int = 0
    not_kept: int = 0


class Hj212Listener:
    """Accepts HJ 212 connections and feeds every packet's outcome to `sink`.

    `sink` is called synchronously on the event loop with each event dict and each
    Quarantined record; keep it quick (a JSONL write, an Engine.process_line).
    """

    def __init__(self, registry: Registry, sink: Sink, host: str = "127.0.0.1", port: int = 0,
                 limits: ListenerLimits | None = None, durable: Callable[[], Awaitable[None]] | None = None) -> None:
        self.registry, self.sink, self.host, self.port = registry, sink, host, port
        self.durable = durable
        self.limits = limits or ListenerLimits()
        self.stats = ListenerStats()
        self._handler = PacketHandler(registry, self.limits.max_pending_split)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._stopping = False
        self._number = 0

    async def start(self) -> tuple[str, int]:
        """Bind and start accepting; the address actually bound (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        address = self._server.sockets[0].getsockname()
        return address[0], address[1]

    async def stop(self) -> None:
        """Stop accepting, close every connection, settle waiting split parts in the sink.

        Packets already received were handed to the sink on arrival; a half-received packet
        was never acknowledged, so it is dropped (the logger sends it again).
        """
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for writer in self._connections.values():
            writer.close()  # the connection's read returns, its task ends
        tasks = list(self._connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=5)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        for (number, source), raw, error in self._handler.drain("incomplete split packet at shutdown"):
            self._emit(quarantine_record(number, raw, error, source))

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.limits.max_connections or self._stopping:
            self.stats.refused_connections += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        self.stats.connections += 1
        peer = writer.get_extra_info("peername")
        source = f"tcp:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "tcp"
        framer = Framer(self.limits.max_packet_bytes)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(self.limits.read_size), self.limits.idle_timeout)
                except TimeoutError:
                    self.stats.idle_closed += 1
                    break
                if self._stopping:
                    break
                candidates = framer.feed(data) if data else framer.close()
                oversize = False
                replies = []
                for candidate in candidates:
                    oversize = oversize or isinstance(candidate, PacketError)
                    reply = self._packet(candidate, source)
                    if reply is not None:
                        replies.append(reply)
                if self.durable is not None and candidates:
                    try:
                        await self.durable()
                    except Exception:  # not kept: no reply, the logger sends again
                        self.stats.not_kept += len(candidates)
                        break
                for reply in replies:
                    writer.write(reply)
                    self.stats.replies += 1
                if oversize:
                    self.stats.oversize_closed += 1
                if not data or oversize:
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _packet(self, candidate: bytes | PacketError, source: str) -> bytes | None:
        """Judge one candidate, hand its outcome to the sink, then return the reply (if any)."""
        self._number += 1
        self.stats.packets += 1
        number = self._number
        packet, outcomes = self._handler.handle(candidate, (number, source))
        error: PacketError | None = None
        for (tag, tag_source), raw, outcome in outcomes:
            if isinstance(outcome, PacketError):
                if tag == number:
                    error = outcome
                self._emit(quarantine_record(tag, raw, outcome, tag_source))
            else:
                for event in outcome:
                    self._emit(event)
        if error is not None:
            return reply_for(error.header, data_upload=False, qn_rtn=error.qn_rtn)
        if packet is None:
            return None
        header = {"QN": packet.qn, "PW": packet.pw, "MN": packet.mn, "Flag": str(packet.flag)}
        return reply_for(header, data_upload=packet.cn in DATA_CNS, qn_rtn=QNRTN_READY)

    def _emit(self, record: dict[str, Any] | Quarantined) -> None:
        if isinstance(record, Quarantined):
            self.stats.quarantined += 1
        else:
            self.stats.events += 1
        self.sink(record)


def serve(registry: Registry, sink: Sink, host: str = "127.0.0.1", port: int = 0,
          limits: ListenerLimits | None = None,
          ready: Callable[[str, int], None] | None = None) -> ListenerStats:
    """Run a listener until SIGINT or SIGTERM, then stop cleanly; the stats.

    `ready(host, port)` is called once the socket is bound (the CLI prints the address).
    """

    async def main() -> ListenerStats:
        listener = Hj212Listener(registry, sink, host, port, limits)
        bound = await listener.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        try:
            if ready is not None:
                ready(*bound)
            await stop.wait()
        finally:
            await listener.stop()
            for sig in signals:
                loop.remove_signal_handler(sig)
        return listener.stats

    return asyncio.run(main())
