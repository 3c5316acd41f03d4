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


class Reassembler(Generic[T]):
    """Joins the parts of split packets (Flag D bit, PNUM/PNO), keyed by (MN, QN).

    Bounded: at most `max_pending` incomplete packets are held; adding one more evicts the
    oldest, whose parts come back as dropped so the caller can account for them. Each part
    carries a caller's tag (e.g. its packet number in the stream).
    """

    def __init__(self, max_pending: int = 256) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple[str, str], _Pending[T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, packet: Packet, tag: T) -> tuple[Packet | None, list[tuple[T, Packet, PacketError]]]:
        """One part in; the whole packet when this part completes it, and any dropped parts."""
        if not packet.is_split:
            return packet, []
        assert packet.pnum is not None and packet.pno is not None
        key = (packet.mn, packet.qn)
        dropped: list[tuple[T, Packet, PacketError]] = []
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self.max_pending:
                _, oldest = self._pending.popitem(last=False)
                dropped += self._dropped(oldest, f"incomplete split packet evicted (more than {self.max_pending} pending)")
            pending = self._pending[key] = _Pending(packet.pnum)
        if packet.pnum != pending.pnum or packet.pno in pending.parts:
            why = "PNUM differs from earlier parts" if packet.pnum != pending.pnum else f"PNO {packet.pno} received twice"
            dropped.append((tag, packet, PacketError(f"split packet part rejected: {why}", QNRTN_FLAG)))
            return None, dropped
        pending.parts[packet.pno] = (tag, packet)
        if len(pending.parts) < pending.pnum:
            return None, dropped
        del self._pending[key]
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
        return dropped

    @staticmethod
    def _dropped(pending: _Pending[T], reason: str) -> list[tuple[T, Packet, PacketError]]:
        return [(tag, part, PacketError(f"{reason}: {len(pending.parts)} of {pending.pnum} parts",
                                        QNRTN_UNKNOWN)) for _, (tag, part) in sorted(pending.parts.items())]


