"""HJ 212 packets (2017 and 2025 editions) to `emission.measured` / `discharge.measured` events.

Monitoring stations speak HJ 212 (standards.md, "HJ 212-2017 packet format"):

    ## + 4-digit decimal length + data segment + 4 hex-digit CRC + CR LF

This module is the boundary between the wire and the engine, so bad input is data here: a
packet that cannot be trusted raises `PacketError` with the reason and the QnRtn code a data
centre would answer, and `ingest` turns it into a `Quarantined` record and goes on with the
stream. Stages, in the order data flows:

    Framer (bytes -> packet candidates) -> parse_packet (framing, length, CRC, fields)
    -> Reassembler (PNUM/PNO split packets) -> Registry.authorise (MN, PW, ST)
    -> to_events (CN -> period, items -> CloudEvents dicts)

Times in a packet (QN, DataTime) are Beijing time; events carry them with `+08:00`. Event
ids are deterministic (`hj212:{MN}:{CN}:{DataTime}:{code}`), so a packet sent twice is a
duplicate to the engine, never a second reading.
"""

from __future__ import annotations

import csv
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from engine.records import Quarantined
from engine.uscc import uscc_problem

# ---- constants from the standard ------------------------------------------------------

MAX_DATA_LENGTH = 9999  # the length field has 4 decimal digits
MAX_PACKET_BYTES = 2 + 4 + MAX_DATA_LENGTH + 4 + 2  # '##' + length + data + CRC + CR LF

# QnRtn (HJ 212-2017, request reply codes).
QNRTN_READY = 1
QNRTN_REFUSED = 2
QNRTN_PW = 3
QNRTN_MN = 4
QNRTN_ST = 5
QNRTN_FLAG = 6
QNRTN_QN = 7
QNRTN_CN = 8
QNRTN_CRC = 9
QNRTN_UNKNOWN = 100
QNRTN_MEANING = {
    QNRTN_READY: "ready to execute the request",
    QNRTN_REFUSED: "request refused",
    QNRTN_PW: "PW error",
    QNRTN_MN: "MN error",
    QNRTN_ST: "ST error",
    QNRTN_FLAG: "Flag error",
    QNRTN_QN: "QN error",
    QNRTN_CN: "CN error",
    QNRTN_CRC: "CRC error",
    QNRTN_UNKNOWN: "unknown error",
}

# Flag bits: V5..V0 (edition) D (PNUM/PNO present) A (reply requested).
FLAG_A = 0x01
FLAG_D = 0x02
VERSION_2017 = 1

# Data uploads this module maps, CN -> (event `period`, item suffix carrying the value).
DATA_CNS: dict[str, tuple[str, str]] = {
    "2011": ("instant", "Rtd"),
    "2051": ("minute", "Avg"),
    "2061": ("hour", "Avg"),
    "2031": ("day", "Avg"),
}
CN_DATA_REPLY = "9014"
CN_REQUEST_REPLY = "9011"
ST_SYSTEM = "91"
# ST of pollution sources -> medium; other ST values are refused for data uploads.
ST_MEDIUM = {"31": "air", "27": "air", "32": "water"}

# Pollutant codes and HJ 212 default units (standards.md, "Pollutant codes").
DEFAULT_UNITS: dict[str, str] = {
    **{code: "mg/m3" for code in (
        "a34013", "a21026", "a21002", "a24088", "a25002", "a25003", "a25005", "a20043",
        "a21024", "a34039", "a34040", "a21017", "a21018")},
    "a19001": "%",
    "a00000": "m3/s",
    "w00000": "L/s",
    "w01001": "-",
    "w01002": "-",
    **{code: "mg/L" for code in (
        "w01012", "w01017", "w01018", "w21003", "w21001", "w21011", "w21016", "w21019",
        "w22001", "w20116", "w20121", "w20122", "w20123")},
    **{code: "ug/L" for code in ("w20117", "w20115", "w20120")},
}
O2_CODE = "a19001"
FLOW_CODES = frozenset({"a00000", "w00000"})
FLAGS = frozenset("NFMSDCTB")

_QN = re.compile(r"\d{17}")
_DATATIME = re.compile(r"\d{14}")
_ST = re.compile(r"\d{2}")
_CN = re.compile(r"\d{4}")
_MN = re.compile(r"[0-9A-Za-z]{1,24}")
_PW = re.compile(r"[^;,=&\s]{1,16}")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_CODE = re.compile(r"[aw]\d{5}")
_HEX4 = re.compile(rb"[0-9A-Fa-f]{4}")
_PEEK = re.compile(r"(QN|ST|CN|PW|MN|Flag)=([^;&]*)")


class PacketError(ValueError):
    """A packet that cannot be trusted: why, and the QnRtn a data centre answers.

    `header` holds whatever header fields could be read (best effort, even after a CRC
    failure) so that a listener can still address its reply.
    """

    def __init__(self, reason: str, qn_rtn: int, header: Mapping[str, str] | None = None,
                 raw: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.qn_rtn = qn_rtn
        self.header: dict[str, str] = dict(header or {})
        self.raw = raw

    def __str__(self) -> str:
        return f"{self.reason} (QnRtn {self.qn_rtn})"


# ---- CRC and framing --------------------------------------------------------------------

def crc16_hj212(data: bytes) -> int:
    """The HJ 212 CRC-16 over the data segment (not Modbus: the byte enters the high side).

    Register 0xFFFF; per byte `reg = (reg >> 8) ^ byte`, then 8 times shift right and XOR
    0xA001 when the bit shifted out was 1 (standards.md).
    """
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ byte
        for _ in range(8):
            carry = reg & 1
            reg >>= 1
            if carry:
                reg ^= 0xA001
    return reg


def build_packet(data: str | bytes) -> bytes:
    """Frame a data segment: `##`, length, data, CRC, CR LF (for replies, tests and tools)."""
    body = data.encode("ascii") if isinstance(data, str) else data
    if len(body) > MAX_DATA_LENGTH:
        raise ValueError(f"data segment of {len(body)} bytes exceeds {MAX_DATA_LENGTH}")
    return b"##%04d%s%04X\r\n" % (len(body), body, crc16_hj212(body))


class Framer:
    """Cuts a byte stream into packet candidates, whatever the read boundaries.

    A candidate runs from `##` to the end of its line (CR LF; a bare LF is tolerated). A
    new `##` before the line ends closes the previous candidate early (parse_packet then
    calls it truncated); bytes outside a packet come out as their own candidate (no `##`);
    blank lines are skipped. The buffer never exceeds `max_packet` bytes: a longer run
    comes out as a PacketError and the framer skips to the next line or `##`.
    """

    def __init__(self, max_packet: int = MAX_PACKET_BYTES) -> None:
        self.max_packet = max_packet
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes | PacketError]:
        """Bytes in, complete candidates (and oversize errors) out."""
        out: list[bytes | PacketError] = []
        self._buf += data
        while self._buf:
            if self._skipping:
                cut = _first(self._buf.find(b"\n"), self._buf.find(b"##"))
                if cut == -1:
                    keep = 1 if self._buf.endswith(b"#") else 0
                    del self._buf[: len(self._buf) - keep]
                    break
                del self._buf[: cut + 1 if self._buf[cut] == ord("\n") else cut]
                self._skipping = False
                continue
            start = 2 if self._buf.startswith(b"##") else 0
            newline = self._buf.find(b"\n", start)
            next_packet = self._buf.find(b"##", start)
            if next_packet != -1 and (newline == -1 or next_packet < newline):
                end = next_packet
            else:
                end = newline + 1 if newline != -1 else -1
            if end == -1 and len(self._buf) <= self.max_packet:
                break  # wait for the rest
            if end == -1 or end > self.max_packet:
                raw = bytes(self._buf[:64])
                out.append(PacketError(f"packet longer than {self.max_packet} bytes", QNRTN_UNKNOWN,
                                       _peek_header(raw), raw=raw))
                del self._buf[:2]
                self._skipping = True
                continue
            candidate = bytes(self._buf[:end])
            del self._buf[:end]
            if candidate.strip():
                out.append(candidate)
        return out

    def close(self) -> list[bytes | PacketError]:
        """End of stream: whatever is left is a candidate of its own (usually truncated)."""
        rest, self._buf = bytes(self._buf), bytearray()
        skipping, self._skipping = self._skipping, False
        return [rest] if rest.strip() and not skipping else []


def _first(*positions: int) -> int:
    found = [p for p in positions if p != -1]
    return min(found) if found else -1


def packets_from_stream(chunks: Iterable[bytes], max_packet: int = MAX_PACKET_BYTES) -> Iterator[bytes | PacketError]:
    """Packet candidates from reads of any size (a packet may span reads; garbage between)."""
    framer = Framer(max_packet)
    for chunk in chunks:
        yield from framer.feed(chunk)
    yield from framer.close()


# ---- packets --------------------------------------------------------------------------

CpItem = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Packet:
    """One verified HJ 212 packet (framing, length and CRC checked; fields well formed)."""

    qn: str
    st: str
    cn: str
    pw: str
    mn: str
    flag: int
    pnum: int | None
    pno: int | None
    cp: tuple[CpItem, ...]

    @property
    def version(self) -> int:
        """Edition bits V5..V0 (1 = HJ 212-2017; newer editions count up)."""
        return self.flag >> 2

    @property
    def reply_requested(self) -> bool:
        """The A bit: the sender waits for a reply."""
        return bool(self.flag & FLAG_A)

    @property
    def is_split(self) -> bool:
        """The D bit: one part of a packet split into PNUM parts."""
        return self.pnum is not None

    def cp_fields(self) -> Iterator[tuple[str, str]]:
        """Every key=value of CP in packet order."""
        for item in self.cp:
            yield from item


def _peek_header(raw: bytes) -> dict[str, str]:
    """Header fields read without trusting the packet (to address a reply to a bad one)."""
    text = raw.decode("ascii", errors="replace")
    head = text.split("CP=", 1)[0]
    found: dict[str, str] = {}
    for key, value in _PEEK.findall(head):
        found.setdefault(key, value)
    return found


def parse_packet(raw: bytes) -> Packet:
    """Verify one packet (framing, length, CRC, fields, CP) or raise PacketError.

    `raw` is one candidate as the Framer cuts it; the trailing CR LF may be missing (the
    standard's own example is printed without it).
    """
    try:
        return _parse(raw)
    except PacketError as exc:
        if not exc.header:
            exc.header = _peek_header(raw)
        raise


def _parse(raw: bytes) -> Packet:
    body, terminated = raw, False
    if body.endswith(b"\r\n"):
        body, terminated = body[:-2], True
    elif body.endswith(b"\n"):
        body, terminated = body[:-1], True
    if not body.startswith(b"##"):
        raise PacketError("missing '##' header", QNRTN_UNKNOWN)
    length_text = body[2:6]
    if len(length_text) != 4 or not length_text.isdigit():
        raise PacketError(f"length field {length_text.decode('ascii', 'replace')!r} is not 4 decimal digits",
                          QNRTN_UNKNOWN)
    declared = int(length_text)
    rest = body[6:]
    if len(rest) != declared + 4:
        if not terminated and len(rest) < declared + 4:
            raise PacketError(f"truncated packet: {len(rest)} of {declared + 4} bytes after the length, no CR LF",
                              QNRTN_UNKNOWN)
        raise PacketError(f"length mismatch: header says {declared}, data segment has {max(len(rest) - 4, 0)} bytes",
                          QNRTN_UNKNOWN)
    data, crc_text = rest[:declared], rest[declared:]
    if not _HEX4.fullmatch(crc_text):
        raise PacketError(f"CRC field {crc_text.decode('ascii', 'replace')!r} is not 4 hex digits", QNRTN_CRC)
    computed = crc16_hj212(data)
    if int(crc_text, 16) != computed:
        raise PacketError(f"CRC mismatch: packet says {crc_text.decode()}, data gives {computed:04X}", QNRTN_CRC)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PacketError(f"malformed fields: non-ASCII byte at {exc.start}", QNRTN_UNKNOWN) from None
    marker = text.find("CP=&&")
    if marker == -1:
        raise PacketError("malformed fields: no CP=&&...&& section", QNRTN_UNKNOWN)
    head, cp_text = text[:marker], text[marker + 5:]
    if not cp_text.endswith("&&") or "&&" in cp_text[:-2]:
        raise PacketError("malformed CP: not closed by a single '&&'", QNRTN_UNKNOWN)
    header = _header(head)
    return _packet(header, _cp(cp_text[:-2]))


def _header(head: str) -> dict[str, str]:
    if head and not head.endswith(";"):
        raise PacketError("malformed fields: CP must follow a ';'", QNRTN_UNKNOWN)
    header: dict[str, str] = {}
    for part in head[:-1].split(";") if head else ():
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise PacketError(f"malformed fields: {part!r} is not key=value", QNRTN_UNKNOWN)
        if key in header:
            raise PacketError(f"malformed fields: {key} appears twice", QNRTN_UNKNOWN)
        header[key] = value
    return header


def _packet(header: dict[str, str], cp: tuple[CpItem, ...]) -> Packet:
    qn = header.get("QN", "")
    if not _QN.fullmatch(qn) or _beijing(qn[:14]) is None:
        raise PacketError(f"QN {qn!r} is not a time YYYYMMDDhhmmsszzz", QNRTN_QN, header)
    st = header.get("ST", "")
    if not _ST.fullmatch(st):
        raise PacketError(f"ST {st!r} is not a 2-digit system code", QNRTN_ST, header)
    cn = header.get("CN", "")
    if not _CN.fullmatch(cn):
        raise PacketError(f"CN {cn!r} is not a 4-digit command code", QNRTN_CN, header)
    pw = header.get("PW")
    if pw is None or not _PW.fullmatch(pw):
        raise PacketError(f"PW {pw!r} is missing or malformed", QNRTN_PW, header)
    mn = header.get("MN")
    if mn is None or not _MN.fullmatch(mn):
        raise PacketError(f"MN {mn!r} is missing or malformed", QNRTN_MN, header)
    flag_text = header.get("Flag", "")
    if not flag_text.isdigit() or int(flag_text) > 255:
        raise PacketError(f"Flag {flag_text!r} is not a number 0-255", QNRTN_FLAG, header)
    flag = int(flag_text)
    if flag >> 2 == 0:
        raise PacketError(f"Flag {flag}: edition bits 0 (HJ/T 212-2005) are not supported", QNRTN_FLAG, header)
    pnum = pno = None
    if flag & FLAG_D:
        pnum_text, pno_text = header.get("PNUM", ""), header.get("PNO", "")
        if not (pnum_text.isdigit() and pno_text.isdigit()) or not 1 <= int(pno_text) <= int(pnum_text) <= 9999:
            raise PacketError(f"Flag {flag} marks a split packet but PNUM {pnum_text!r} / PNO {pno_text!r} are not "
                              "1 <= PNO <= PNUM", QNRTN_FLAG, header)
        pnum, pno = int(pnum_text), int(pno_text)
    return Packet(qn=qn, st=st, cn=cn, pw=pw, mn=mn, flag=flag, pnum=pnum, pno=pno, cp=cp)


def _cp(body: str) -> tuple[CpItem, ...]:
    items: list[CpItem] = []
    for item_text in body.split(";") if body else ():
        if not item_text:
            continue
        pairs: list[tuple[str, str]] = []
        for part in item_text.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise PacketError(f"malformed CP: {part!r} is not key=value", QNRTN_UNKNOWN)
            pairs.append((key, value))
        items.append(tuple(pairs))
    return tuple(items)


def _beijing(stamp: str) -> str | None:
    """YYYYMMDDhhmmss (Beijing time) -> RFC 3339 with +08:00, or None when not a real time."""
    try:
        moment = datetime.strptime(stamp, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + "+08:00"


# ---- split packets ----------------------------------------------------------------------

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


# ---- registry ---------------------------------------------------------------------------

class RegistryError(ValueError):
    """A registry file that cannot be used; the message names the entry and the field."""


_POINTS = ("workshop", "plant")
_DESTINATIONS = ("direct", "municipal", "park_plant", "indirect")
_PROCESS = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_REGISTRY_FIELDS = ("mn", "pw", "enterprise", "medium", "outlet", "process", "point", "destination")


@dataclass(frozen=True, slots=True)
class Station:
    """One monitoring point (MN): whose it is, its password and what it measures."""

    mn: str
    pw: str
    enterprise: str
    medium: str
    outlet: str
    process: str | None = None
    point: str | None = None
    destination: str | None = None


class Registry:
    """MN -> Station. The data centre's list of the data loggers it accepts."""

    def __init__(self, stations: Iterable[Station]) -> None:
        self._stations: dict[str, Station] = {}
        for station in stations:
            if station.mn in self._stations:
                raise RegistryError(f"MN {station.mn} is registered twice")
            self._stations[station.mn] = station

    def __len__(self) -> int:
        return len(self._stations)

    def get(self, mn: str) -> Station | None:
        return self._stations.get(mn)

    @classmethod
    def load(cls, path: str | Path) -> Registry:
        """Read a YAML (`stations: [...]` or a list) or CSV (header row) registry file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(f"cannot read {path}: {exc}") from None
        rows: list[Any]
        if path.suffix.lower() == ".csv":
            rows = [{k: v for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(text.splitlines())]
        else:
            try:
                document = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise RegistryError(f"{path}: not YAML: {exc}") from None
            rows = document.get("stations") if isinstance(document, dict) else document
            if not isinstance(rows, list):
                raise RegistryError(f"{path}: expected a list of stations (or stations: [...])")
        return cls(_station(row, f"{path}: station {n}") for n, row in enumerate(rows, start=1))

    def authorise(self, packet: Packet) -> Station:
        """The station a packet claims to come from, or PacketError (MN 4, PW 3, ST 5)."""
        station = self._stations.get(packet.mn)
        if station is None:
            raise PacketError(f"unknown MN {packet.mn}", QNRTN_MN, _header_of(packet))
        if packet.pw != station.pw:
            raise PacketError(f"wrong PW for MN {packet.mn}", QNRTN_PW, _header_of(packet))
        medium = ST_MEDIUM.get(packet.st)
        if packet.cn in DATA_CNS and medium != station.medium:
            raise PacketError(f"ST {packet.st} does not fit MN {packet.mn}, registered as {station.medium}",
                              QNRTN_ST, _header_of(packet))
        return station


def _station(row: Any, where: str) -> Station:
    if not isinstance(row, dict):
        raise RegistryError(f"{where}: expected a mapping")
    unknown = sorted(str(k) for k in set(row) - set(_REGISTRY_FIELDS))
    if unknown:
        raise RegistryError(f"{where}: unknown field(s) {', '.join(unknown)}")
    for name in ("mn", "pw", "enterprise"):
        if name in row and not isinstance(row[name], str):
            raise RegistryError(f"{where}: {name} must be a string (quote it in YAML: 012345 is not '012345')")
    values = {k: str(v).strip() for k, v in row.items() if v is not None}
    for name in ("mn", "pw", "enterprise", "medium", "outlet"):
        if not values.get(name):
            raise RegistryError(f"{where}: {name} is required")
    if not _MN.fullmatch(values["mn"]):
        raise RegistryError(f"{where}: mn {values['mn']!r} is not 1-24 letters and digits")
    problem = uscc_problem(values["enterprise"])
    if problem:
        raise RegistryError(f"{where}: enterprise {values['enterprise']!r} {problem}")
    medium = values["medium"]
    if medium == "air":
        if not _PROCESS.fullmatch(values.get("process", "")):
            raise RegistryError(f"{where}: an air station needs a process (e.g. melting.cupola.cold_blast)")
        if "point" in values or "destination" in values:
            raise RegistryError(f"{where}: point/destination are for water stations")
    elif medium == "water":
        if values.get("point") not in _POINTS:
            raise RegistryError(f"{where}: point must be one of {', '.join(_POINTS)}")
        if values.get("destination") not in _DESTINATIONS:
            raise RegistryError(f"{where}: destination must be one of {', '.join(_DESTINATIONS)}")
        if "process" in values:
            raise RegistryError(f"{where}: process is for air stations")
    else:
        raise RegistryError(f"{where}: medium must be air or water, got {medium!r}")
    return Station(**values)


def _header_of(packet: Packet) -> dict[str, str]:
    return {"QN": packet.qn, "ST": packet.st, "CN": packet.cn, "PW": packet.pw, "MN": packet.mn, "Flag": str(packet.flag)}


# ---- events -----------------------------------------------------------------------------

def to_events(packet: Packet, station: Station) -> list[dict[str, Any]]:
    """A whole data packet (CN 2011/2051/2061/2031) as CloudEvents dicts, or PacketError.

    One event per pollutant; the O2 item becomes `o2_percent` of the air events (when its
    flag is N) and flow items are not events. -Min/-Max/-Zs*/-Cou do not carry the value.
    """
    header = _header_of(packet)
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
        if not _CODE.fullmatch(code) or not suffix:
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
    time = _beijing(stamp) if _DATATIME.fullmatch(stamp) else None
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
        if not _NUMBER.fullmatch(text):
            raise PacketError(f"malformed CP: {code}-{value_suffix} {text!r} is not a number", QNRTN_UNKNOWN, header)
        readings.append((code, float(text), flag))
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

    def __init__(self, registry: Registry, max_pending: int = 256) -> None:
        self.registry = registry
        self.reassembler: Reassembler[Any] = Reassembler(max_pending)

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
        whole, dropped = self.reassembler.add(packet, (tag, candidate))
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


# ---- replies ----------------------------------------------------------------------------

def reply_for(header: Mapping[str, str], *, data_upload: bool, qn_rtn: int = QNRTN_READY) -> bytes | None:
    """The data centre's answer to a packet whose Flag A bit asks for one, else None.

    A data upload that was accepted gets a 9014 data reply; anything else (a request, or a
    rejected packet) a 9011 request reply carrying QnRtn. The reply's Flag keeps the
    sender's edition bits with A and D cleared.
    """
    flag_text, qn = header.get("Flag", ""), header.get("QN", "")
    if not flag_text.isdigit() or not int(flag_text) & FLAG_A or not _QN.fullmatch(qn):
        return None
    flag = (int(flag_text) & 0xFC) or VERSION_2017 << 2
    pw, mn = header.get("PW", ""), header.get("MN", "")
    if not _PW.fullmatch(pw) or not _MN.fullmatch(mn):
        return None
    if data_upload and qn_rtn == QNRTN_READY:
        return build_packet(f"QN={qn};ST={ST_SYSTEM};CN={CN_DATA_REPLY};PW={pw};MN={mn};Flag={flag};CP=&&&&")
    return build_packet(f"QN={qn};ST={ST_SYSTEM};CN={CN_REQUEST_REPLY};PW={pw};MN={mn};Flag={flag};CP=&&QnRtn={qn_rtn}&&")
