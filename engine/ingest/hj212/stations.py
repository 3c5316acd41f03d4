"""The station registry: which data logger (MN) belongs to which enterprise and outlet, with its
password; packets are authorised against it (MN, PW, ST)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.ingest.hj212.protocol import DATA_CNS, MN_PATTERN, QNRTN_MN, QNRTN_PW, QNRTN_ST, ST_MEDIUM, Packet, PacketError
from engine.validate.uscc import uscc_problem
from engine.validate.yamlsafe import YamlError, load_yaml


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
                document = load_yaml(text, str(path))
            except YamlError as exc:
                raise RegistryError(str(exc)) from None
            rows = document.get("stations") if isinstance(document, dict) else document
            if not isinstance(rows, list):
                raise RegistryError(f"{path}: expected a list of stations (or stations: [...])")
        return cls(_station(row, f"{path}: station {n}") for n, row in enumerate(rows, start=1))

    def authorise(self, packet: Packet) -> Station:
        """The station a packet claims to come from, or PacketError (MN 4, PW 3, ST 5)."""
        station = self._stations.get(packet.mn)
        if station is None:
            raise PacketError(f"unknown MN {packet.mn}", QNRTN_MN, packet.header())
        if packet.pw != station.pw:
            raise PacketError(f"wrong PW for MN {packet.mn}", QNRTN_PW, packet.header())
        medium = ST_MEDIUM.get(packet.st)
        if packet.cn in DATA_CNS and medium != station.medium:
            raise PacketError(f"ST {packet.st} does not fit MN {packet.mn}, registered as {station.medium}",
                              QNRTN_ST, packet.header())
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
    if not MN_PATTERN.fullmatch(values["mn"]):
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


