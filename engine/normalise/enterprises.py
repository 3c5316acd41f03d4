"""What the engine knows of each enterprise: its latest registration and declared equipment.

Updated from `enterprise.registered` and `equipment.declared` before an event is judged, read
by the judge (industry, EIA date, scale) and the decision layer (`where` conditions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from engine.state import kept_copy


class Enterprises:
    """Registrations and equipment by enterprise code."""

    def __init__(self) -> None:
        self._registry: dict[str, Mapping[str, Any]] = {}
        self._equipment: dict[str, dict[str, Mapping[str, Any]]] = {}
        # the hot path's two questions, answered by the dict itself (no Python frame per event)
        self.get: Callable[[str], Mapping[str, Any] | None] = self._registry.get
        """The latest registration of an enterprise, or None."""
        self.known: Callable[[object], bool] = self._registry.__contains__
        """Whether an enterprise is registered."""

    def note(self, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        """Remember a registration or an equipment declaration (a copy: `kept_copy`; a few in a
        thousand events are these two)."""
        if event_type == "enterprise.registered":
            self._registry[subject] = kept_copy(data)
        elif event_type == "equipment.declared":
            self._equipment.setdefault(subject, {})[data["equipment_id"]] = kept_copy(data)

    def __contains__(self, code: object) -> bool:
        return code in self._registry

    def strangers(self, codes: Iterable[str]) -> int:
        """How many of these codes (one per event) belong to no registered enterprise."""
        codes = list(codes)
        unknown = set(codes).difference(self._registry)
        return sum(1 for code in codes if code in unknown) if unknown else 0

    @property
    def registry(self) -> Mapping[str, Mapping[str, Any]]:
        """Every registration (read-only view)."""
        return MappingProxyType(self._registry)

    def state(self) -> dict[str, Any]:
        return {"registry": self._registry, "equipment": self._equipment}

    def restore(self, state: Mapping[str, Any]) -> None:
        # refill the same dicts: others hold bound lookups (`get`)
        self._registry.clear()
        self._registry.update(state["registry"])
        self._equipment.clear()
        self._equipment.update(state["equipment"])
