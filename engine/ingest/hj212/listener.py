"""A TCP listener for HJ 212 data loggers (asyncio, standard library only).

Data loggers open a TCP connection to the data centre and send packets; when a packet's
Flag A bit asks for it, the centre answers: a 9014 data reply for an accepted data upload,
a 9011 request reply carrying QnRtn otherwise (e.g. QnRtn 9 for a CRC error, so the logger
sends again). Every packet is judged by the same `PacketHandler` as file ingest, and its
events or its quarantine record are handed to the sink *before* the reply is written: a
packet that was acknowledged is never lost. A sink that keeps records in a transaction (the
live service, engine/serve/) also passes `durable`, awaited after the packets of each read and
before their replies go out, so a reply means the events are committed.

Bounded, because the peer is a device on a network, not a trusted file (`ListenerLimits`):
- the listener binds to loopback unless told otherwise;
- it holds at most `max_connections` connections; of these at most `max_unauthenticated`
  have not yet sent a packet with a registered MN and its PW. A new connection beyond that
  evicts the oldest unauthenticated one, so a flood of silent or slow connections cannot
  lock out a registered logger, which connects and sends at once; connections that did
  authenticate are never evicted (a new one is refused when they fill every place);
- a connection must authenticate within `auth_timeout` seconds, is closed when idle for
  `idle_timeout` seconds, and when a packet it started is not complete within
  `packet_timeout` seconds (a peer trickling one byte at a time never looks idle);
- a packet longer than `max_packet_bytes` (the standard's 9999-byte data segment plus
  framing) closes the connection;
- split packets waiting for their other parts are bounded by the Reassembler in number
  (`max_pending_split`), parts per packet (`max_split_parts`) and bytes per packet and in
  total (`max_split_packet_bytes`, `max_split_bytes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.ingest.hj212.events import PacketHandler, quarantine_record
from engine.ingest.hj212.protocol import DATA_CNS, MAX_PACKET_BYTES, QNRTN_READY, Framer, PacketError, reply_for
from engine.ingest.hj212.reassembly import Reassembler
from engine.ingest.hj212.stations import Registry
from engine.records import Quarantined

Sink = Callable[[dict[str, Any] | Quarantined], None]


class ListenError(OSError):
    """The listener cannot bind its address (taken, or not this machine's)."""


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """The bounds of a listener (defaults suit a district's few hundred loggers)."""

    max_packet_bytes: int = MAX_PACKET_BYTES
    max_connections: int = 256
    idle_timeout: float = 300.0
    max_pending_split: int = 256
    read_size: int = 4096
    max_unauthenticated: int = 64
    auth_timeout: float = 10.0
    packet_timeout: float = 30.0
    max_split_parts: int = 100
    max_split_packet_bytes: int = 1 << 20
    max_split_bytes: int = 4 << 20


@dataclass(slots=True)
class ListenerStats:
    """What happened, for the log line at shutdown."""

    connections: int = 0
    refused_connections: int = 0
    evicted_unauthenticated: int = 0
    auth_timeout_closed: int = 0
    packet_timeout_closed: int = 0
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
        limits = self.limits
        self._handler = PacketHandler(registry, reassembler=Reassembler(
            limits.max_pending_split, max_parts=limits.max_split_parts, max_packet_bytes=limits.max_split_packet_bytes,
            max_bytes=limits.max_split_bytes))
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        # connections that have not sent a packet with a registered MN and its PW, oldest first
        self._unauthenticated: OrderedDict[asyncio.Task[Any], asyncio.StreamWriter] = OrderedDict()
        self._stopping = False
        self._number = 0

    @property
    def held_split_bytes(self) -> int:
        """Bytes of split-packet parts waiting for their other parts (bounded by `max_split_bytes`)."""
        return self._handler.reassembler.held_bytes

    @property
    def unauthenticated(self) -> int:
        """Connections open now that have not sent a packet with a registered MN and PW."""
        return len(self._unauthenticated)

    async def start(self) -> tuple[str, int]:
        """Bind and start accepting; the address actually bound (port 0 picks a free one)."""
        try:
            self._server = await asyncio.start_server(self._connection, self.host, self.port)
        except OSError as exc:  # e.g. the port is taken
            raise ListenError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
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

    def _admit(self) -> bool:
        """Whether a new connection gets a place: beyond `max_unauthenticated` unauthenticated
        connections (or `max_connections` in all) the oldest unauthenticated one is evicted;
        when authenticated loggers fill every place, the new one is refused."""
        limits = self.limits
        if self._stopping:
            return False
        if len(self._unauthenticated) >= limits.max_unauthenticated or len(self._connections) >= limits.max_connections:
            if not self._unauthenticated:
                return False
            _, oldest = self._unauthenticated.popitem(last=False)
            oldest.close()  # its read ends and its task cleans up
            self.stats.evicted_unauthenticated += 1
        return True

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit():
            self.stats.refused_connections += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        self._unauthenticated[task] = writer
        self.stats.connections += 1
        peer = writer.get_extra_info("peername")
        source = f"tcp:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "tcp"
        framer = Framer(self.limits.max_packet_bytes)
        loop = asyncio.get_running_loop()
        limits = self.limits
        auth_deadline = loop.time() + limits.auth_timeout
        packet_deadline: float | None = None  # set while a packet is half received
        try:
            while True:
                now = loop.time()
                waits = [(limits.idle_timeout, "idle")]
                if task in self._unauthenticated:
                    waits.append((auth_deadline - now, "auth"))
                if packet_deadline is not None:
                    waits.append((packet_deadline - now, "packet"))
                wait, why = min(waits)
                try:
                    data = await asyncio.wait_for(reader.read(limits.read_size), max(wait, 0.0))
                except TimeoutError:
                    if why == "idle":
                        self.stats.idle_closed += 1
                    elif why == "auth":
                        self.stats.auth_timeout_closed += 1
                    else:
                        self.stats.packet_timeout_closed += 1
                    break
                if self._stopping:
                    break
                candidates = framer.feed(data) if data else framer.close()
                oversize = False
                replies = []
                for candidate in candidates:
                    oversize = oversize or isinstance(candidate, PacketError)
                    reply = self._packet(candidate, source, task)
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
                if not framer.pending:
                    packet_deadline = None
                elif packet_deadline is None or candidates:
                    packet_deadline = loop.time() + limits.packet_timeout  # a new packet has begun
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.pop(task, None)
            self._unauthenticated.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _packet(self, candidate: bytes | PacketError, source: str, task: asyncio.Task[Any] | None = None) -> bytes | None:
        """Judge one candidate, hand its outcome to the sink, then return the reply (if any)."""
        self._number += 1
        self.stats.packets += 1
        number = self._number
        packet, outcomes = self._handler.handle(candidate, (number, source))
        if packet is not None and task is not None and task in self._unauthenticated:
            station = self.registry.get(packet.mn)
            if station is not None and station.pw == packet.pw:
                del self._unauthenticated[task]  # a registered logger: never evicted
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
