"""HJ 212 (2017 and 2025 editions) on the wire: framing, CRC, packet fields, replies.

Monitoring stations speak HJ 212 (HJ 212-2017 §6):

    ## + 4-digit decimal length + data segment + 4 hex-digit CRC + CR LF

This is the boundary between the wire and the engine, so bad input is data here: a packet
that cannot be trusted raises `PacketError` with the reason and the QnRtn code a data centre
would answer. The stages, in the order data flows, are a package (engine/ingest/hj212/):

    protocol (bytes -> packet candidates -> verified packets) -> reassembly (PNUM/PNO split
    packets) -> stations (MN, PW, ST authorised against the registry) -> events (CN -> period,
    items -> CloudEvents dicts) ; listener (the TCP server, replies)

Times in a packet (QN, DataTime) are Beijing time; events carry them with `+08:00`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

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
        "w22001", "w20116", "w20121", "w20122", "w20123", "w20126", "w20125", "w21017")},
    **{code: "ug/L" for code in ("w20117", "w20115", "w20120", "w20111")},
}
O2_CODE = "a19001"
FLOW_CODES = frozenset({"a00000", "w00000"})
FLAGS = frozenset("NFMSDCTB")

_QN = re.compile(r"\d{17}")
DATATIME = re.compile(r"\d{14}")
_ST = re.compile(r"\d{2}")
_CN = re.compile(r"\d{4}")
MN_PATTERN = re.compile(r"[0-9A-Za-z]{1,24}")
# printable ASCII but the separators ; , = & (a reply echoes PW, and a reply is ASCII)
_PW = re.compile(r"[!-%'-+\--:<>-~]{1,16}")
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
POLLUTANT_CODE = re.compile(r"[aw]\d{5}")
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

def _crc_step(value: int) -> int:
    """8 times: shift right, XOR 0xA001 when the bit shifted out was 1."""
    for _ in range(8):
        value = (value >> 1) ^ 0xA001 if value & 1 else value >> 1
    return value


# `(reg >> 8) ^ byte` is below 256, so the 8 shifts that follow are one table lookup
_CRC_TABLE = tuple(_crc_step(value) for value in range(256))


def crc16_hj212(data: bytes) -> int:
    """The HJ 212 CRC-16 over the data segment (not Modbus: the byte enters the high side).

    Register 0xFFFF; per byte `reg = (reg >> 8) ^ byte`, then 8 times shift right and XOR
    0xA001 when the bit shifted out was 1 (standards.md). Since `(reg >> 8) ^ byte` is a byte,
    the eight shifts are a lookup in a 256-entry table (20x faster than the bit loop: a
    9,999-byte packet costs 0.5 ms, not 11 ms, so checking CRCs cannot be a peer's lever).
    """
    reg = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        reg = table[(reg >> 8) ^ byte]
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

    @property
    def pending(self) -> int:
        """Bytes of a packet begun but not complete (0 between packets)."""
        return 0 if self._skipping else len(self._buf)

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

    def header(self) -> dict[str, str]:
        """The header fields as text (what a reply is addressed with)."""
        return {"QN": self.qn, "ST": self.st, "CN": self.cn, "PW": self.pw, "MN": self.mn, "Flag": str(self.flag)}


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
    if not _QN.fullmatch(qn) or beijing_time(qn[:14]) is None:
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
    if mn is None or not MN_PATTERN.fullmatch(mn):
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


def beijing_time(stamp: str) -> str | None:
    """YYYYMMDDhhmmss (Beijing time) -> RFC 3339 with +08:00, or None when not a real time."""
    try:
        moment = datetime.strptime(stamp, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return moment.isoformat(timespec="seconds") + "+08:00"  # strftime's %Y does not pad year 1 to 0001


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
    if not _PW.fullmatch(pw) or not MN_PATTERN.fullmatch(mn):
        return None
    if data_upload and qn_rtn == QNRTN_READY:
        return build_packet(f"QN={qn};ST={ST_SYSTEM};CN={CN_DATA_REPLY};PW={pw};MN={mn};Flag={flag};CP=&&&&")
    return build_packet(f"QN={qn};ST={ST_SYSTEM};CN={CN_REQUEST_REPLY};PW={pw};MN={mn};Flag={flag};CP=&&QnRtn={qn_rtn}&&")
