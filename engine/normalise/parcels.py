"""What the engine knows of each parcel of land: who holds it, its contract, its commitments,
how far it is developed, and whether it was transferred or recovered.

In: the four `land.parcel.*` events, before they are judged. Out: a parcel's record for the
judge and the decision layer (`get(holder, parcel)`, the names rules read as `parcel.*`), the
parcels a holder has (`held_by`), and every parcel for the report (`registry`).

Records are kept per (holder, parcel): a holder's events only ever touch its own records, so
a run split by enterprise (distributed replay) keeps the same state as one machine. A
transferee registers the parcel it received under its own code; the transferor's record
stays, marked `transferred`. An event about a parcel its subject does not hold is counted
(`unknown`) and changes nothing.

A record (a plain dict, JSON data):
`parcel`, `holder`, `area_mu`, `use`, `contract` {signed_on, start_by, complete_by, expires_on,
price_yuan, remedies}, `commitments` (or null), `registered` (event time of the latest
registration), `status` (`held`, `transferred`, `recovered`), `started` (construction began:
`started_on` at registration, or an inspection at stage started, completed, in_production or
periodic), `stage` and `inspected_on` (the latest inspection), `last_check` {stage, on, event}
(the latest inspection at completion, production or a periodic review: where commitments are
checked), `figures` (measured there), `recovered` {time, basis, event} or null, `transferred`
{time, to, event} or null.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from engine.normalise.readings import epoch_of

LAND_TYPES = ("land.parcel.registered", "land.parcel.inspected", "land.parcel.recovered", "land.parcel.transferred")
STARTED_STAGES = ("started", "completed", "in_production", "periodic")
CHECK_STAGES = ("completed", "in_production", "periodic")


class Parcels:
    """Parcel records by (holder, parcel id)."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, Any]] = {}
        self._held: dict[str, list[str]] = {}  # holder -> parcel ids it holds now, sorted

    def note(self, event: Mapping[str, Any]) -> bool:
        """Apply one valid `land.parcel.*` event. False when it names a parcel its subject does
        not hold (nothing changes)."""
        kind, holder, data, time = event["type"], event["subject"], event["data"], event["time"]
        key = (holder, data["parcel"])
        if kind == "land.parcel.registered":
            old = self._records.get(key)
            record: dict[str, Any] = {
                "parcel": data["parcel"], "holder": holder, "area_mu": data["area_mu"], "use": data["use"],
                "contract": dict(data["contract"]), "commitments": dict(data["commitments"]) if "commitments" in data else None,
                "registered": time, "status": "held",
                "started": data.get("started_on") is not None or bool(old and old["started"] and old["status"] == "held"),
                "stage": old["stage"] if old else None, "inspected_on": old["inspected_on"] if old else None,
                "last_check": old["last_check"] if old else None, "figures": old["figures"] if old else None,
                "recovered": None, "transferred": None,
            }
            self._records[key] = record
            self._hold(holder, data["parcel"], True)
            return True
        record = self._records.get(key)
        if record is None or record["status"] != "held":
            return False
        if kind == "land.parcel.inspected":
            stage = data["stage"]
            record["stage"], record["inspected_on"] = stage, data["on"]
            if stage in STARTED_STAGES:
                record["started"] = True
            if stage in CHECK_STAGES:
                record["last_check"] = {"stage": stage, "on": data["on"], "event": event["id"]}
                record["figures"] = dict(data.get("figures") or {})
        elif kind == "land.parcel.recovered":
            record["status"] = "recovered"
            record["recovered"] = {"time": time, "basis": data["basis"], "event": event["id"]}
            self._hold(holder, data["parcel"], False)
        elif kind == "land.parcel.transferred":
            record["status"] = "transferred"
            record["transferred"] = {"time": time, "to": data["to"], "event": event["id"]}
            self._hold(holder, data["parcel"], False)
        return True

    def _hold(self, holder: str, parcel: str, held: bool) -> None:
        parcels = self._held.setdefault(holder, [])
        if held and parcel not in parcels:
            parcels.append(parcel)
            parcels.sort()
        elif not held and parcel in parcels:
            parcels.remove(parcel)
        if not parcels:
            del self._held[holder]

    def get(self, holder: str, parcel: str) -> Mapping[str, Any] | None:
        """The record of a parcel as its holder (or former holder) knows it, or None."""
        record = self._records.get((holder, parcel))
        return None if record is None else MappingProxyType(record)

    def held_by(self, holder: str) -> list[Mapping[str, Any]]:
        """The parcels a holder holds now, by parcel id."""
        return [MappingProxyType(self._records[(holder, p)]) for p in self._held.get(holder, ())]

    @property
    def registry(self) -> dict[str, Mapping[str, Any]]:
        """Every parcel by id, for reports: the record of its current holder (the latest
        registration still held), else the latest registration of any holder."""
        out: dict[str, tuple[tuple[bool, float, str], dict[str, Any]]] = {}
        for (holder, parcel), record in self._records.items():
            rank = (record["status"] != "transferred", epoch_of(record["registered"]), holder)
            if parcel not in out or rank > out[parcel][0]:
                out[parcel] = (rank, record)
        return {parcel: MappingProxyType(out[parcel][1]) for parcel in sorted(out)}

    def state(self) -> dict[str, Any]:
        return {"records": [[h, p, r] for (h, p), r in self._records.items()]}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._records = {(h, p): dict(r) for h, p, r in state["records"]}
        self._held = {}
        for (holder, parcel), record in sorted(self._records.items()):
            if record["status"] == "held":
                self._hold(holder, parcel, True)
