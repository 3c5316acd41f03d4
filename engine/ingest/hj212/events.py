"""HJ 212 data packets to CloudEvents: `emission.measured` / `discharge.measured` dicts.

`ingest` runs the whole path over a byte stream: every packet ends up as events or as
exactly one `Quarantined` record. Event ids are deterministic (`hj212:{MN}:{CN}:{DataTime}:{code}`),
so a packet sent twice is a duplicate to the engine, never a second reading.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from engine.ingest.hj212.protocol import (
    DATA_CNS,
    DATATIME,
    DEFAULT_UNITS,
    FLAGS,
    FLOW_CODES,
    NUMBER,
    O2_CODE,
    POLLUTANT_CODE,
    QNRTN_CN,
    QNRTN_UNKNOWN,
    Packet,
    PacketError,
    beijing_time,
    packets_from_stream,
    parse_packet,
)
from engine.ingest.hj212.reassembly import Reassembler
from engine.ingest.hj212.stations import Registry, Station
from engine.records import Quarantined

def to_events(packet: Packet, station: Station) -> list[dict[str, Any]]:
    """A whole data packet (CN 2011/2051/2061/2031) as CloudEvents dicts, or PacketError.

    One event per pollutant; the O2 item becomes `o2_percent` of the air events (when its
    flag is N) and flow items are not events. -Min/-Max/-Zs*/-Cou do not carry the value.
    """
    header = packet.header()
    mapping = DATA_CNS.get(packet.cn)
    if mapping is None:
        raise PacketError(f"CN {packet.cn} is not a data upload (2011, 2051, 2061, 2031)", QNRTN_CN, header)
    period, value_suffix = mapping
    stamp: str | None = None
    items: dict[str, dict[str, str]] = {}
    for key, value in packet.cp_fields():
        if key == "DataTime":
            if stamp is not None and stamp != value:
                raise PacketError(f"malformed CP: two DataTime values {stamp} and {value}", QNRTN_UNKNOWN, header)
            stamp = value
            continue
        code, dash, suffix = key.partition("-")
        if not dash:
            continue  # other CP fields (e.g. RtdInterval) carry no measurement
        if not POLLUTANT_CODE.fullmatch(code) or not suffix:
            raise PacketError(f"malformed CP: {key!r} is not a pollutant item", QNRTN_UNKNOWN, header)
        if code not in DEFAULT_UNITS:
            raise PacketError(f"unknown pollutant code {code}", QNRTN_UNKNOWN, header)
        if (code[0] == "a") != (station.medium == "air"):
            raise PacketError(f"pollutant {code} in a packet from {station.medium} station {packet.mn}",
                              QNRTN_UNKNOWN, header)
        fields = items.setdefault(code, {})
        if suffix in fields and fields[suffix] != value:
            raise PacketError(f"malformed CP: {key} given twice", QNRTN_UNKNOWN, header)
        fields[suffix] = value
    if stamp is None:
        raise PacketError("bad timestamp: no DataTime", QNRTN_UNKNOWN, header)
    time = beijing_time(stamp) if DATATIME.fullmatch(stamp) else None
    if time is None:
        raise PacketError(f"bad timestamp: DataTime {stamp!r} is not a time YYYYMMDDhhmmss", QNRTN_UNKNOWN, header)
    readings: list[tuple[str, float, str]] = []
    for code, fields in items.items():
        flag = fields.get("Flag", "N")
        if flag not in FLAGS:
            raise PacketError(f"malformed CP: {code}-Flag {flag!r} is not one of {''.join(sorted(FLAGS))}",
                              QNRTN_UNKNOWN, header)
        text = fields.get(value_suffix)
        if text is None:
            if code in FLOW_CODES or code == O2_CODE:
                continue
            raise PacketError(f"malformed CP: {code} has no -{value_suffix} value", QNRTN_UNKNOWN, header)
        if not NUMBER.fullmatch(text):
            raise PacketError(f"malformed CP: {code}-{value_suffix} {text!r} is not a number", QNRTN_UNKNOWN, header)
        number = float(text)
        if not math.isfinite(number) and code not in FLOW_CODES:  # flows become no event
            raise PacketError(f"value out of range: {code}-{value_suffix} {text[:40]!r} is past the float range",
                              QNRTN_UNKNOWN, header)
        readings.append((code, number, flag))
    o2 = next((value for code, value, flag in readings if code == O2_CODE and flag == "N"), None)
    events: list[dict[str, Any]] = []
    for code, value, flag in readings:
        if code == O2_CODE or code in FLOW_CODES:
            continue
        data: dict[str, Any] = {"outlet": station.outlet}
        if station.medium == "air":
            data["process"] = station.process
            event_type = "emission.measured"
        else:
            data["point"] = station.point
            data["destination"] = station.destination
            event_type = "discharge.measured"
        data.update(pollutant=code, value=value, unit=DEFAULT_UNITS[code])
        if o2 is not None and station.medium == "air":
            data["o2_percent"] = o2
        data.update(period=period, flag=flag)
        events.append({
            "specversion": "1.0",
            "id": f"hj212:{packet.mn}:{packet.cn}:{stamp}:{code}",
            "source": f"hj212/{packet.mn}",
            "type": event_type,
            "subject": station.enterprise,
            "time": time,
            "data": data,
        })
    if not events:
        raise PacketError("data packet carries no pollutant measurement", QNRTN_UNKNOWN, header)
    return events


# ---- the whole path ---------------------------------------------------------------------

class PacketHandler:
    """Candidate -> events, one packet at a time: parse, reassemble, authorise, map.

    Shared by `ingest` (files) and the listener (sockets), so both judge a packet the same
    way. `handle` returns what became of a candidate: a list of (tag, outcome) pairs where
    outcome is the event list of a whole packet or the PacketError of a rejected one (a
    candidate may also settle earlier parts, e.g. evicted split packets).
    """

    def __init__(self, registry: Registry, max_pending: int = 256, reassembler: Reassembler[Any] | None = None) -> None:
        self.registry = registry
        self.reassembler: Reassembler[Any] = reassembler if reassembler is not None else Reassembler(max_pending)

    def handle(self, candidate: bytes | PacketError, tag: Any) -> tuple[Packet | None, list[tuple[Any, bytes | None, list[dict[str, Any]] | PacketError]]]:
        """One candidate in: the parsed packet (None if it failed) and the settled outcomes."""
        if isinstance(candidate, PacketError):
            return None, [(tag, candidate.raw, candidate)]
        try:
            packet = parse_packet(candidate)
        except PacketError as exc:
            return None, [(tag, candidate, exc)]
        outcomes: list[tuple[Any, bytes | None, list[dict[str, Any]] | PacketError]] = []
        try:
            self.registry.authorise(packet)  # refuse parts of unknown stations before holding them
        except PacketError as exc:
            return packet, [(tag, candidate, exc)]
        whole, dropped = self.reassembler.add(packet, (tag, candidate), len(candidate))
        outcomes += [(t, raw, error) for (t, raw), _, error in dropped]
        if whole is not None:
            try:
                outcomes.append((tag, candidate, to_events(whole, self.registry.authorise(whole))))
            except PacketError as exc:
                outcomes.append((tag, candidate, exc))
        return packet, outcomes

    def drain(self, reason: str = "incomplete split packet at end of stream") -> list[tuple[Any, bytes | None, PacketError]]:
        """Every split part still waiting, as rejected."""
        return [(t, raw, error) for (t, raw), _, error in self.reassembler.drain(reason)]


def ingest_numbered(data: bytes | Iterable[bytes], registry: Registry, source: str = "<input>",
                    max_pending: int = 256) -> Iterator[tuple[int, dict[str, Any] | Quarantined]]:
    """Like `ingest`, with the packet number (1-based, in stream order) of each output."""
    chunks: Iterable[bytes] = [data] if isinstance(data, (bytes, bytearray)) else data
    handler = PacketHandler(registry, max_pending)
    number = 0
    for candidate in packets_from_stream(chunks):
        number += 1
        _, outcomes = handler.handle(candidate, number)
        for tag, raw, outcome in outcomes:
            yield from _outcome(tag, raw, outcome, source)
    for tag, raw, error in handler.drain():
        yield from _outcome(tag, raw, error, source)


def ingest(data: bytes | Iterable[bytes], registry: Registry, source: str = "<input>",
           max_pending: int = 256) -> Iterator[dict[str, Any] | Quarantined]:
    """HJ 212 bytes (one buffer or reads of any size) -> CloudEvents dicts and quarantine records.

    Every packet ends up as events or as exactly one Quarantined record (line = packet
    number in the stream, error = "reason (QnRtn n)"); a bad packet never stops the stream.
    """
    for _, item in ingest_numbered(data, registry, source, max_pending):
        yield item


def quarantine_record(number: int, raw: bytes | None, error: PacketError, source: str) -> Quarantined:
    """A rejected packet as the engine's quarantine record."""
    text = (raw or b"").decode("utf-8", errors="replace").rstrip("\r\n")
    return Quarantined(line=number, source=source, raw=text, error=str(error))


def _outcome(number: int, raw: bytes | None, outcome: list[dict[str, Any]] | PacketError,
             source: str) -> Iterator[tuple[int, dict[str, Any] | Quarantined]]:
    if isinstance(outcome, PacketError):
        yield number, quarantine_record(number, raw, outcome, source)
    else:
        for event in outcome:
            yield number, event


