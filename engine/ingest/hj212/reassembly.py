"""HJ 212 split packets (Flag D bit, PNUM/PNO) joined into whole packets, in bounded memory."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from engine.ingest.hj212.protocol import FLAG_D, QNRTN_FLAG, QNRTN_UNKNOWN, Packet, PacketError

T = TypeVar("T")


@dataclass(slots=True)
class _Pending(Generic[T]):
    pnum: int
    parts: dict[int, tuple[T, Packet]] = field(default_factory=dict)
    size: int = 0  # bytes of the parts held


class Reassembler(Generic[T]):
    """Joins the parts of split packets (Flag D bit, PNUM/PNO), keyed by (MN, QN).

    Bounded in count and in bytes, because a logger (or anyone who knows an MN and PW) decides
    what PNUM says:
    - a part whose PNUM is above `max_parts` is refused at once (nothing held);
    - at most `max_pending` incomplete packets are held; one more evicts the oldest;
    - one packet's parts may hold at most `max_packet_bytes`: the part that would exceed it
      drops the whole packet;
    - all parts held together at most `max_bytes`: the oldest packets are evicted to make room.
    Dropped parts come back to the caller (to be quarantined with the reason). Each part
    carries a caller's tag (e.g. its packet number in the stream) and its size in bytes.
    """

    def __init__(self, max_pending: int = 256, *, max_parts: int = 100, max_packet_bytes: int = 1 << 20,
                 max_bytes: int = 4 << 20) -> None:
        if max_pending < 1 or max_parts < 1 or max_packet_bytes < 1 or max_bytes < 1:
            raise ValueError("the bounds of a Reassembler must be at least 1")
        if max_packet_bytes > max_bytes:
            raise ValueError("max_packet_bytes must not exceed max_bytes")
        self.max_pending, self.max_parts = max_pending, max_parts
        self.max_packet_bytes, self.max_bytes = max_packet_bytes, max_bytes
        self._pending: OrderedDict[tuple[str, str], _Pending[T]] = OrderedDict()
        self.held_bytes = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, packet: Packet, tag: T, size: int = 0) -> tuple[Packet | None, list[tuple[T, Packet, PacketError]]]:
        """One part (of `size` bytes) in; the whole packet when this part completes it, and any dropped parts."""
        if not packet.is_split:
            return packet, []
        assert packet.pnum is not None and packet.pno is not None
        if packet.pnum > self.max_parts:
            return None, [(tag, packet, PacketError(
                f"split packet part rejected: PNUM {packet.pnum} is more than the {self.max_parts} parts a packet may have",
                QNRTN_FLAG))]
        key = (packet.mn, packet.qn)
        dropped: list[tuple[T, Packet, PacketError]] = []
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self.max_pending:
                dropped += self._evict(f"incomplete split packet evicted (more than {self.max_pending} pending)")
            pending = self._pending[key] = _Pending(packet.pnum)
        if packet.pnum != pending.pnum or packet.pno in pending.parts:
            why = "PNUM differs from earlier parts" if packet.pnum != pending.pnum else f"PNO {packet.pno} received twice"
            dropped.append((tag, packet, PacketError(f"split packet part rejected: {why}", QNRTN_FLAG)))
            return None, dropped
        if pending.size + size > self.max_packet_bytes:
            del self._pending[key]
            self.held_bytes -= pending.size
            pending.parts[packet.pno] = (tag, packet)
            return None, dropped + self._dropped(
                pending, f"split packet dropped: its parts exceed {self.max_packet_bytes} bytes")
        while self._pending and self.held_bytes + size > self.max_bytes:
            oldest = next(iter(self._pending))
            if oldest == key and len(self._pending) == 1:
                break
            dropped += self._evict(f"incomplete split packet evicted (parts held exceed {self.max_bytes} bytes)",
                                   skip=key)
        pending.parts[packet.pno] = (tag, packet)
        pending.size += size
        self.held_bytes += size
        if len(pending.parts) < pending.pnum:
            return None, dropped
        del self._pending[key]
        self.held_bytes -= pending.size
        parts = [pending.parts[n][1] for n in range(1, pending.pnum + 1)]
        first = parts[0]
        whole = replace(first, flag=first.flag & ~FLAG_D, pnum=None, pno=None,
                        cp=tuple(item for part in parts for item in part.cp))
        return whole, dropped

    def drain(self, reason: str = "incomplete split packet at end of stream") -> list[tuple[T, Packet, PacketError]]:
        """Every part still waiting, as dropped (end of stream or shutdown)."""
        dropped: list[tuple[T, Packet, PacketError]] = []
        while self._pending:
            _, pending = self._pending.popitem(last=False)
            dropped += self._dropped(pending, reason)
        self.held_bytes = 0
        return dropped

    def _evict(self, reason: str, skip: tuple[str, str] | None = None) -> list[tuple[T, Packet, PacketError]]:
        """The oldest pending packet (other than `skip`) dropped, its parts returned."""
        for key in self._pending:
            if key != skip:
                pending = self._pending.pop(key)
                self.held_bytes -= pending.size
                return self._dropped(pending, reason)
        return []

    @staticmethod
    def _dropped(pending: _Pending[T], reason: str) -> list[tuple[T, Packet, PacketError]]:
        return [(tag, part, PacketError(f"{reason}: {len(pending.parts)} of {pending.pnum} parts",
                                        QNRTN_UNKNOWN)) for _, (tag, part) in sorted(pending.parts.items())]


