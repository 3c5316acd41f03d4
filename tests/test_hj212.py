"""HJ 212 packets: CRC, framing, generated packets vs. equivalent JSONL, corruptions, split packets, CLI.

The expected events are built here from the generator's own records, never by parsing the
packets, and the CRC used to build test packets is a separate implementation, so a bug in
engine/hj212.py cannot hide behind itself.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from engine import Engine
from engine.cli import cli
from engine.ingest.hj212 import (
    Framer,
    Packet,
    PacketError,
    Reassembler,
    Registry,
    RegistryError,
    crc16_hj212,
    ingest,
    ingest_numbered,
    packets_from_stream,
    parse_packet,
    reply_for,
)
from engine.records import Quarantined
from engine.validate.formats import check_date_time

DATA = Path(__file__).parent / "data" / "hj212"
REGISTRY = DATA / "registry.yaml"
EXAMPLE = (b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
           b"CP=&&RtdInterval=30&&1C80\r\n")

# (mn, pw, enterprise, medium, outlet, process | (point, destination)) -- as in registry.yaml
FOUNDRY = "91330200MA2AB1234Y"
STATIONS = [
    ("3302FDY00000000000000001", "123456", FOUNDRY, "air", "DA001", "melting.cupola.cold_blast"),
    ("3302FDY00000000000000002", "654321", FOUNDRY, "air", "DA002", "coating"),
    ("3302DYE00000000000000001", "111111", "91330200MA2CD5678P", "water", "DW001", ("plant", "municipal")),
    ("3302PLT00000000000000001", "222222", "91330200MA2EF9012E", "water", "DW002", ("workshop", "indirect")),
]
CUPOLA = STATIONS[0]
# standards.md, "Pollutant codes (HJ 212-2017)": code -> default unit
AIR_UNITS = {c: "mg/m3" for c in "a34013 a21026 a21002 a24088 a25002 a25003 a25005 a20043 a21024 a34039 a34040 a21017 a21018".split()}
WATER_UNITS = {c: "mg/L" for c in "w01012 w01017 w01018 w21003 w21001 w21011 w21016 w21019 w22001 w20116 w20121 w20122 w20123".split()}
WATER_UNITS.update({"w20117": "ug/L", "w20115": "ug/L", "w20120": "ug/L", "w01001": "-", "w01002": "-"})
PERIOD = {"2011": ("instant", "Rtd"), "2051": ("minute", "Avg"), "2061": ("hour", "Avg"), "2031": ("day", "Avg")}


def crc_reference(data: bytes) -> int:
    """standards.md's CRC written independently of engine.hj212 (the byte enters the high side)."""
    register = 0xFFFF
    for byte in data:
        register = (register >> 8) ^ byte
        for _ in range(8):
            register = (register >> 1) ^ 0xA001 if register & 1 else register >> 1
    return register


def frame(data: str) -> bytes:
    body = data.encode()
    return f"##{len(body):04d}".encode() + body + f"{crc_reference(body):04X}\r\n".encode()


def packet_text(station: tuple, cn: str, items: list[str], *, qn: str = "20240301100000123", flag: int = 5,
                st: str | None = None, split: tuple[int, int] | None = None, pw: str | None = None,
                mn: str | None = None) -> str:
    st = st or ("31" if station[3] == "air" else "32")
    head = f"QN={qn};ST={st};CN={cn};PW={pw or station[1]};MN={mn or station[0]};Flag={flag};"
    if split:
        head += f"PNUM={split[0]};PNO={split[1]};"
    return head + "CP=&&" + ";".join(items) + "&&"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(REGISTRY)


# ---- CRC ----------------------------------------------------------------------------------

def test_the_standards_own_example_verifies_with_1C80_and_not_with_the_typo_1C08():
    data = EXAMPLE[6:-6]
    assert len(data) == 101
    assert crc16_hj212(data) == 0x1C80 == crc_reference(data)
    packet = parse_packet(EXAMPLE)
    assert (packet.qn, packet.st, packet.cn, packet.pw, packet.mn, packet.flag) == (
        "20160801085857223", "32", "1062", "100000", "010000A8900016F000169DC0", 5)
    assert packet.cp == ((("RtdInterval", "30"),),)
    assert packet.version == 1 and packet.reply_requested and not packet.is_split
    assert parse_packet(EXAMPLE.rstrip(b"\r\n")) == packet  # the standard prints it without CR LF
    with pytest.raises(PacketError) as typo:
        parse_packet(EXAMPLE.replace(b"1C80", b"1C08"))
    assert typo.value.qn_rtn == 9 and "CRC" in typo.value.reason


def test_the_crc_is_not_the_modbus_crc():
    def modbus(data: bytes) -> int:
        register = 0xFFFF
        for byte in data:
            register ^= byte
            for _ in range(8):
                register = (register >> 1) ^ 0xA001 if register & 1 else register >> 1
        return register

    data = EXAMPLE[6:-6]
    assert modbus(data) != crc16_hj212(data)
    rng = random.Random(5)
    for _ in range(200):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        assert crc16_hj212(blob) == crc_reference(blob)


# ---- generated packets give the same events as the equivalent JSONL ---------------------------

def _number(rng: random.Random, low: float, high: float) -> str:
    return f"{rng.uniform(low, high):.{rng.randint(0, 3)}f}"


def generate(seed: int, count: int) -> tuple[list[bytes], list[dict[str, Any]]]:
    """`count` packets (some split, some 2025-edition Flags) and the events they stand for."""
    rng = random.Random(seed)
    packets: list[bytes] = []
    expected: list[dict[str, Any]] = []
    start = datetime(2024, 3, 1, 0, 0, 0)
    for index in range(count):
        station = rng.choice(STATIONS)
        mn, _, enterprise, medium, outlet, where = station
        cn = rng.choice(sorted(PERIOD))
        period, suffix = PERIOD[cn]
        moment = start + timedelta(minutes=7 * index)
        stamp = moment.strftime("%Y%m%d%H%M%S")
        units = AIR_UNITS if medium == "air" else WATER_UNITS
        codes = rng.sample(sorted(units), rng.randint(1, 4))
        items: list[str] = []
        readings: list[tuple[str, float, str]] = []
        for code in codes:
            value = _number(rng, 0, 150)
            fields = [f"{code}-{suffix}={value}"]
            if suffix == "Avg":
                fields = [f"{code}-Min={_number(rng, 0, 50)}", *fields, f"{code}-Max={_number(rng, 150, 300)}"]
                if rng.random() < 0.3:
                    fields.append(f"{code}-ZsAvg={_number(rng, 0, 300)}")
                if rng.random() < 0.3:
                    fields.append(f"{code}-Cou={_number(rng, 0, 9999)}")
            elif rng.random() < 0.3:
                fields.append(f"{code}-ZsRtd={_number(rng, 0, 300)}")
            flag = rng.choice(["N", "N", "N", "N", None, "F", "M", "S", "D", "C", "T", "B"])
            if flag is not None:
                fields.append(f"{code}-Flag={flag}")
            rng.shuffle(fields)
            items.append(",".join(fields))
            readings.append((code, float(value), flag or "N"))
        o2: float | None = None
        if medium == "air" and rng.random() < 0.6:
            o2_text, o2_flag = _number(rng, 5, 20), rng.choice(["N", "N", "N", "D"])
            items.insert(rng.randint(0, len(items)), f"a19001-{suffix}={o2_text},a19001-Flag={o2_flag}")
            o2 = float(o2_text) if o2_flag == "N" else None
        if rng.random() < 0.4:
            flow = "a00000" if medium == "air" else "w00000"
            items.insert(rng.randint(0, len(items)), f"{flow}-{suffix}={_number(rng, 1, 50)},{flow}-Cou={_number(rng, 1, 9e4)}")
        flag_bits = rng.choice([4, 5, 5, 8, 9])  # 2017 edition (4/5) and a newer edition's version bits
        qn = stamp + f"{rng.randrange(1000):03d}"
        if len(items) >= 2 and rng.random() < 0.25:
            cut = sorted(rng.sample(range(1, len(items)), min(len(items) - 1, rng.randint(1, 2))))
            parts = [items[a:b] for a, b in zip([0, *cut], [*cut, len(items)])]
            texts = [packet_text(station, cn, [f"DataTime={stamp}", *part], qn=qn, flag=flag_bits | 2,
                                 split=(len(parts), number)) for number, part in enumerate(parts, start=1)]
            rng.shuffle(texts)
            packets += [frame(t) for t in texts]
        else:
            packets.append(frame(packet_text(station, cn, [f"DataTime={stamp}", *items], qn=qn, flag=flag_bits)))
        for code, value, flag in readings:
            data: dict[str, Any] = {"outlet": outlet, "pollutant": code, "value": value, "unit": units[code],
                                    "period": period, "flag": flag}
            if medium == "air":
                data["process"] = where
                if o2 is not None:
                    data["o2_percent"] = o2
            else:
                data["point"], data["destination"] = where
            expected.append({"specversion": "1.0", "id": f"hj212:{mn}:{cn}:{stamp}:{code}", "source": f"hj212/{mn}",
                             "type": "emission.measured" if medium == "air" else "discharge.measured",
                             "subject": enterprise, "time": moment.strftime("%Y-%m-%dT%H:%M:%S+08:00"), "data": data})
    return packets, expected


def test_generated_packets_give_the_same_events_as_the_equivalent_jsonl(registry, plugins, tmp_path):
    packets, expected = generate(seed=2024, count=80)
    assert len(packets) >= 80 and any(b"PNUM=" in p for p in packets) and any(b"Flag=9" in p for p in packets)
    jsonl = tmp_path / "expected.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in expected))

    got = list(ingest(b"".join(packets), registry, source="gen.hj212"))
    assert not [r for r in got if isinstance(r, Quarantined)]
    assert got == [json.loads(line) for line in jsonl.read_text().splitlines()]

    # and through the engine: the same findings, nothing quarantined (the events are schema-valid)
    registrations = (DATA / "enterprises.jsonl").read_bytes().splitlines()
    from_jsonl = [r.to_dict() for r in Engine(plugins=plugins).run([*registrations, *jsonl.read_bytes().splitlines()])]
    engine = Engine(plugins=plugins)
    from_packets = [r.to_dict() for r in engine.run([*registrations, *got])]
    assert from_packets == from_jsonl
    assert engine.summary.quarantined == 0 and engine.summary.processed == len(expected) + 3
    assert any(r["record"] == "finding" for r in from_packets)


def test_reads_of_any_size_give_the_same_result(registry):
    packets, _ = generate(seed=7, count=30)
    stream = b"".join(packets)
    whole = list(ingest(stream, registry))
    assert list(ingest([stream[i:i + 1] for i in range(len(stream))], registry)) == whole
    rng = random.Random(1)
    chunks, at = [], 0
    while at < len(stream):
        size = rng.randint(1, 400)
        chunks.append(stream[at:at + size])
        at += size
    assert list(ingest(chunks, registry)) == whole


# ---- corruptions: each rejected with its reason and QnRtn; the stream goes on ------------------

GOOD_ITEMS = ["DataTime=20240301100000", "a34013-Avg=12.5,a34013-Flag=N"]


def _good(qn: str) -> bytes:
    return frame(packet_text(CUPOLA, "2061", [f"DataTime={qn[:14]}", "a34013-Avg=12.5,a34013-Flag=N"], qn=qn))


def _with_length(packet: bytes, length: bytes) -> bytes:
    return packet[:2] + length + packet[6:]


CORRUPTIONS: dict[str, tuple[bytes, str, int]] = {
    "length mismatch": (_with_length(frame(packet_text(CUPOLA, "2061", GOOD_ITEMS)), b"0150"), "length mismatch", 100),
    "CRC failure": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS)).replace(b"=12.5", b"=92.5"), "CRC mismatch", 9),
    "CRC not hex": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS))[:-6] + b"1G80\r\n", "not 4 hex digits", 9),
    "unknown MN": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS, mn="3302FDY00000000000000099")), "unknown MN", 4),
    "wrong PW": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS, pw="999999")), "wrong PW", 3),
    "missing MN": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS).replace(f"MN={CUPOLA[0]};", "")), "MN None", 4),
    "malformed CP": (frame(packet_text(CUPOLA, "2061", ["DataTime=20240301100000", "a34013-Avg12.5"])), "malformed CP", 100),
    "value not a number": (frame(packet_text(CUPOLA, "2061", ["DataTime=20240301100000", "a34013-Avg=1_0"])),
                           "is not a number", 100),
    "unknown data flag": (frame(packet_text(CUPOLA, "2061", ["DataTime=20240301100000", "a34013-Avg=1,a34013-Flag=Q"])),
                          "a34013-Flag 'Q'", 100),
    "unknown pollutant code": (frame(packet_text(CUPOLA, "2061", ["DataTime=20240301100000", "a99999-Avg=1"])),
                               "unknown pollutant code a99999", 100),
    "water code from an air station": (frame(packet_text(CUPOLA, "2061", ["DataTime=20240301100000", "w01018-Avg=1"])),
                                       "pollutant w01018 in a packet from air station", 100),
    "bad timestamp": (frame(packet_text(CUPOLA, "2061", ["DataTime=20241332250000", "a34013-Avg=1"])), "bad timestamp", 100),
    "no DataTime": (frame(packet_text(CUPOLA, "2061", ["a34013-Avg=1"])), "bad timestamp: no DataTime", 100),
    "bad QN": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS, qn="2024030110000012X")), "QN", 7),
    "missing ##": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS))[2:], "missing '##'", 100),
    "non-numeric length": (_with_length(frame(packet_text(CUPOLA, "2061", GOOD_ITEMS)), b"01A0"), "not 4 decimal digits", 100),
    "truncated packet": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS))[:60], "truncated packet", 100),
    "bad CN": (frame(packet_text(CUPOLA, "20X1", GOOD_ITEMS)), "CN '20X1'", 8),
    "CN that is not a data upload": (frame(packet_text(CUPOLA, "1062", ["RtdInterval=30"])), "not a data upload", 8),
    "ST of the other medium": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS, st="32")), "ST 32 does not fit", 5),
    "bad Flag": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS).replace("Flag=5", "Flag=x")), "Flag 'x'", 6),
    "HJ/T 212-2005 edition bits": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS, flag=1)), "2005", 6),
    "split flag without PNUM": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS, flag=7)), "PNUM", 6),
    "missing value": (frame(packet_text(CUPOLA, "2061", ["DataTime=20240301100000", "a34013-Max=1"])), "no -Avg value", 100),
    "no CP": (frame(packet_text(CUPOLA, "2061", GOOD_ITEMS).split("CP=")[0]), "no CP=&&", 100),
    "oversize": (b"##9999" + b"A" * 10_100 + b"\r\n", "longer than", 100),
    # a number past the float range was read as inf, written as null and answered 9014 (the reading lost)
    "value past the float range": (frame(packet_text(CUPOLA, "2061", ["DataTime=20240301100000", "a34013-Avg=1e309"])),
                                   "value out of range: a34013-Avg '1e309'", 100),
    "a 400-digit value": (frame(packet_text(CUPOLA, "2061", ["DataTime=20240301100000", "a34013-Avg=" + "9" * 400])),
                          "value out of range: a34013-Avg '9999", 100),
    "O2 past the float range": (frame(packet_text(CUPOLA, "2061", [
        "DataTime=20240301100000", "a34013-Avg=1,a34013-Flag=N", "a19001-Avg=-1e999,a19001-Flag=N"])),
        "value out of range: a19001-Avg '-1e999'", 100),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_corruption_is_quarantined_with_its_reason_and_the_stream_goes_on(kind, registry):
    bad, reason, qn_rtn = CORRUPTIONS[kind]
    stream = _good("20240301090000001") + bad + _good("20240301110000002")
    out = list(ingest_numbered(stream, registry, source="mixed.hj212"))
    quarantined = [(n, r) for n, r in out if isinstance(r, Quarantined)]
    events = [(n, r) for n, r in out if not isinstance(r, Quarantined)]
    assert len(quarantined) == 1, out
    number, record = quarantined[0]
    assert number == record.line == 2 and record.source == "mixed.hj212"
    assert reason in record.error and record.error.endswith(f"(QnRtn {qn_rtn})"), record.error
    assert record.raw and bad.decode(errors="replace").startswith(record.raw[:50])
    assert [(n, e["time"]) for n, e in events] == [(1, "2024-03-01T09:00:00+08:00"), (3, "2024-03-01T11:00:00+08:00")]


def test_a_data_time_in_year_one_is_a_well_formed_time(registry):
    """strftime's %Y wrote year 1 as '1': '1-01-01T00:00:00+08:00', not RFC 3339, yet accepted and answered."""
    packet = frame(packet_text(CUPOLA, "2061", ["DataTime=00010101000000", "a34013-Avg=1,a34013-Flag=N"],
                               qn="00010101000000123"))
    (event,) = ingest(packet, registry)
    assert event["time"] == "0001-01-01T00:00:00+08:00"
    assert check_date_time(event["time"])


def test_a_value_the_schemas_do_not_take_is_acknowledged_and_the_engine_quarantines_its_event(registry, plugins):
    """A well-formed packet is not refused for its values (docs/hj212.md): its events are written,
    and running them quarantines each one the schemas refuse, with the schema's reason."""
    packets = (frame(packet_text(CUPOLA, "2061", ["DataTime=20240301100000;a34013-Avg=35,a34013-Flag=N;"
                                                  "a19001-Avg=25,a19001-Flag=N"]))
               + frame(packet_text(CUPOLA, "2061", ["DataTime=20240301110000;a34013-Avg=-5,a34013-Flag=N"])))
    events = list(ingest(packets, registry))
    assert [type(e) for e in events] == [dict, dict]
    records = [r for r in Engine(plugins=plugins).run(events) if isinstance(r, Quarantined)]
    assert [(r.line, r.error.split(":")[0]) for r in records] == [(1, "data.o2_percent"), (2, "data.value")]
    assert "25.0 is greater than or equal to the maximum of 21" in records[0].error


def test_at_least_ten_kinds_of_corruption_are_covered():
    assert len(CORRUPTIONS) >= 10
    assert len({reason for _, reason, _ in CORRUPTIONS.values()}) == len(CORRUPTIONS)


def test_garbage_and_blank_lines_between_packets(registry):
    stream = b"\r\n" + _good("20240301090000001") + b"\x00\xffnoise\r\n\r\n   \n" + _good("20240301110000002") + b"tail"
    out = list(ingest(stream, registry, source="s"))
    assert [type(r).__name__ for r in out] == ["dict", "Quarantined", "dict", "Quarantined"]
    assert all("missing '##'" in r.error for r in out if isinstance(r, Quarantined))


def test_parse_errors_keep_the_header_for_a_reply():
    bad = frame(packet_text(CUPOLA, "2061", GOOD_ITEMS, qn="20240301100000999")).replace(b"=12.5", b"=92.5")
    with pytest.raises(PacketError) as error:
        parse_packet(bad)
    assert error.value.header["QN"] == "20240301100000999" and error.value.header["Flag"] == "5"
    reply = reply_for(error.value.header, data_upload=True, qn_rtn=error.value.qn_rtn)
    assert reply == frame(f"QN=20240301100000999;ST=91;CN=9011;PW=123456;MN={CUPOLA[0]};Flag=4;CP=&&QnRtn=9&&")


# ---- split packets ------------------------------------------------------------------------

def _parts(qn: str, stamp: str, groups: list[list[str]], station: tuple = CUPOLA) -> list[bytes]:
    return [frame(packet_text(station, "2061", [f"DataTime={stamp}", *g], qn=qn, flag=7, split=(len(groups), n)))
            for n, g in enumerate(groups, start=1)]


def test_split_packets_are_reassembled_whatever_the_order(registry):
    groups = [["a34013-Avg=35,a34013-Flag=N"], ["a19001-Avg=18,a19001-Flag=N"], ["a21026-Avg=150,a21026-Flag=N"]]
    whole = frame(packet_text(CUPOLA, "2061", ["DataTime=20240301100000", *[g[0] for g in groups]]))
    expected = list(ingest(whole, registry))
    a = _parts("20240301100000001", "20240301100000", groups)
    other = _parts("20240301110000002", "20240301110000", [["a34013-Avg=1"], ["a21002-Avg=2"]])
    stream = a[2] + other[1] + a[0] + _good("20240301120000003") + other[0] + a[1]
    out = list(ingest_numbered(stream, registry))
    assert not [r for _, r in out if isinstance(r, Quarantined)]
    ids = [r["id"].rsplit(":", 2)[1:] for _, r in out]
    assert ids == [["20240301120000", "a34013"], ["20240301110000", "a34013"], ["20240301110000", "a21002"],
                   ["20240301100000", "a34013"], ["20240301100000", "a21026"]]
    assert [r for n, r in out if n == 6] == expected  # emitted with the last part; O2 joined from another part
    assert expected[0]["data"]["o2_percent"] == 18.0


def test_incomplete_split_packets_are_quarantined_part_by_part(registry):
    parts = _parts("20240301100000001", "20240301100000", [["a34013-Avg=1"], ["a21026-Avg=2"], ["a21002-Avg=3"]])
    out = list(ingest_numbered(parts[0] + _good("20240301120000003") + parts[2], registry))
    assert [n for n, _ in out] == [2, 1, 3]
    assert all("incomplete split packet at end of stream: 2 of 3 parts (QnRtn 100)" in r.error
               for n, r in out if n != 2)


def test_split_parts_twice_or_with_another_pnum_are_rejected(registry):
    parts = _parts("20240301100000001", "20240301100000", [["a34013-Avg=1"], ["a21026-Avg=2"]])
    odd = _parts("20240301100000001", "20240301100000", [["a34013-Avg=1"], ["a21026-Avg=2"], ["a21002-Avg=3"]])[2]
    out = list(ingest_numbered(parts[0] + parts[0] + odd + parts[1], registry))
    errors = {n: r.error for n, r in out if isinstance(r, Quarantined)}
    assert errors == {2: "split packet part rejected: PNO 1 received twice (QnRtn 6)",
                      3: "split packet part rejected: PNUM differs from earlier parts (QnRtn 6)"}
    assert [n for n, r in out if not isinstance(r, Quarantined)] == [4, 4]


def test_the_reassembler_is_bounded():
    assembler: Reassembler[int] = Reassembler(max_pending=2)

    def part(qn: str) -> Packet:
        return parse_packet(_parts(qn, qn[:14], [["a34013-Avg=1"], ["a21026-Avg=2"]])[0])

    assert assembler.add(part("20240301100000001"), 1) == (None, [])
    assert assembler.add(part("20240301100000002"), 2) == (None, [])
    whole, dropped = assembler.add(part("20240301100000003"), 3)
    assert whole is None and len(assembler) == 2
    assert [(tag, p.qn) for tag, p, _ in dropped] == [(1, "20240301100000001")]
    assert "evicted (more than 2 pending)" in dropped[0][2].reason
    assert [tag for tag, _, _ in assembler.drain()] == [2, 3] and len(assembler) == 0


# ---- framing and registry -----------------------------------------------------------------

def test_the_framer_never_holds_more_than_one_packet():
    framer = Framer(max_packet=120)
    out = framer.feed(b"##0999" + b"x" * 200)
    assert len(out) == 1 and isinstance(out[0], PacketError) and "longer than 120" in out[0].reason
    assert len(framer._buf) <= 120
    assert framer.feed(b"more junk\r\n" + EXAMPLE[:10]) == []
    assert framer.feed(EXAMPLE[10:]) == [EXAMPLE]
    assert list(packets_from_stream([EXAMPLE[:-2]])) == [EXAMPLE[:-2]]


def test_registry_yaml_and_csv_agree(registry):
    from_csv = Registry.load(DATA / "registry.csv")
    assert len(from_csv) == len(registry) == 4
    for mn, *_ in STATIONS:
        assert from_csv.get(mn) == registry.get(mn)
    assert registry.get(CUPOLA[0]).process == "melting.cupola.cold_blast"
    assert registry.get("3302DYE00000000000000001").destination == "municipal"


@pytest.mark.parametrize("entry, message", [
    ({"mn": "A1", "pw": "1", "enterprise": "91330200MA2AB12340", "medium": "air", "outlet": "D", "process": "x"},
     "check character"),
    ({"mn": "A1", "pw": 12345, "enterprise": FOUNDRY, "medium": "air", "outlet": "D", "process": "x"}, "quote it"),
    ({"mn": "A1", "pw": "1", "enterprise": FOUNDRY, "medium": "air", "outlet": "D"}, "needs a process"),
    ({"mn": "A1", "pw": "1", "enterprise": FOUNDRY, "medium": "water", "outlet": "D", "point": "plant",
      "destination": "sea"}, "destination"),
    ({"mn": "A1", "pw": "1", "enterprise": FOUNDRY, "medium": "soil", "outlet": "D"}, "medium"),
    ({"mn": "A1", "pw": "1", "enterprise": FOUNDRY, "medium": "air", "outlet": "D", "process": "x", "colour": 1},
     "unknown field"),
])
def test_a_bad_registry_entry_is_refused(tmp_path, entry, message):
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"stations": [entry]}))
    with pytest.raises(RegistryError, match=message):
        Registry.load(path)


def test_a_duplicate_mn_is_refused(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text((DATA / "registry.csv").read_text() + "3302FDY00000000000000001,1,91330200MA2AB1234Y,air,D,x,,\n")
    with pytest.raises(RegistryError, match="registered twice"):
        Registry.load(path)


# ---- command line -------------------------------------------------------------------------

def test_rectify_ingest_hj212_writes_events_and_quarantine(tmp_path, registry):
    out, bad = tmp_path / "events.jsonl", tmp_path / "bad.jsonl"
    packets = DATA / "cupola.hj212"
    result = CliRunner().invoke(cli, ["ingest", "hj212", str(packets), "--registry", str(REGISTRY),
                                      "--out", str(out), "--quarantine", str(bad)])
    assert result.exit_code == 0, result.output
    expected = [r for r in ingest(packets.read_bytes(), registry, source=str(packets))]
    assert [json.loads(x) for x in out.read_text().splitlines()] == [r for r in expected if isinstance(r, dict)]
    assert [json.loads(x) for x in bad.read_text().splitlines()] == [
        r.to_dict() for r in expected if isinstance(r, Quarantined)]
    assert "events 2  quarantined packets 1" in result.output


@pytest.mark.parametrize("args", [
    ["ingest", "hj212", "--registry", str(REGISTRY)],  # neither FILE nor --listen
    ["ingest", "hj212", str(DATA / "cupola.hj212"), "--registry", str(DATA / "enterprises.jsonl")],  # not a registry
    ["ingest", "hj212", "--listen", "localhost", "--registry", str(REGISTRY)],  # no port
    ["run", "--hj212", str(DATA / "cupola.hj212")],  # no --registry
])
def test_usage_errors_exit_2(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output


def test_rectify_run_hj212_through_the_engine_finds_the_cupola_exceedance(tmp_path):
    out, bad, summary = tmp_path / "findings.jsonl", tmp_path / "bad.jsonl", tmp_path / "summary.json"
    result = CliRunner().invoke(cli, [
        "run", str(DATA / "enterprises.jsonl"), "--hj212", str(DATA / "cupola.hj212"), "--registry", str(REGISTRY),
        "--out", str(out), "--quarantine", str(bad), "--summary-json", str(summary), "--no-progress"])
    assert result.exit_code == 0, result.output
    findings = [json.loads(x) for x in out.read_text().splitlines() if json.loads(x)["record"] == "finding"]
    assert [(f["rule"], f["measured"], f["judged"], f["event"]) for f in findings] == [
        ("foundry.gb39726.t1.cupola.pm", {"value": 35.0, "unit": "mg/m3"}, 70.0,
         ["hj212:3302FDY00000000000000001:2061:20240301100000:a34013"])]
    quarantined = [json.loads(x) for x in bad.read_text().splitlines()]
    assert [(q["line"], q["error"].startswith("CRC mismatch"), q["error"][-9:]) for q in quarantined] == [(2, True, "(QnRtn 9)")]
    counts = json.loads(summary.read_text())
    assert counts["read"] == 3 + 2 + 1 and counts["quarantined"] == 1 and counts["processed"] == 5
    assert counts["unregistered_events"] == 0  # the registration came first


def test_rectify_run_without_hj212_is_unchanged(tmp_path):
    out = tmp_path / "o.jsonl"
    result = CliRunner().invoke(cli, ["run", str(DATA / "enterprises.jsonl"), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "read 3  processed 3" in result.output
