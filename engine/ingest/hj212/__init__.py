"""HJ 212-2017 / -2025 monitoring data in: packets from files or data loggers to CloudEvents.

In: bytes (a file, standard input, or TCP connections from data loggers). Out: event dicts
(`emission.measured`, `discharge.measured`) and `Quarantined` records for packets that cannot
be trusted. Modules in the order data flows: protocol (framing, CRC, fields, replies),
reassembly (split packets), stations (the registry, authorisation), events (packets to
events), listener (the TCP server).
"""

from engine.ingest.hj212.events import PacketHandler, ingest, ingest_numbered, quarantine_record, to_events
from engine.ingest.hj212.protocol import (
    DATA_CNS,
    MAX_PACKET_BYTES,
    QNRTN_READY,
    Framer,
    Packet,
    PacketError,
    build_packet,
    crc16_hj212,
    packets_from_stream,
    parse_packet,
    reply_for,
)
from engine.ingest.hj212.reassembly import Reassembler
from engine.ingest.hj212.stations import Registry, RegistryError, Station

__all__ = [
    "DATA_CNS",
    "MAX_PACKET_BYTES",
    "QNRTN_READY",
    "Framer",
    "Packet",
    "PacketError",
    "PacketHandler",
    "Reassembler",
    "Registry",
    "RegistryError",
    "Station",
    "build_packet",
    "crc16_hj212",
    "ingest",
    "ingest_numbered",
    "packets_from_stream",
    "parse_packet",
    "quarantine_record",
    "reply_for",
    "to_events",
]
