"""Shared fixtures: a real Engine with the installed plugins, and an event builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine import Engine

SUBJECT = "91330200MA2AB1234Y"  # a valid unified social credit code (check character Y)


@pytest.fixture(scope="session")
def plugins():
    from engine import load_plugins

    return load_plugins()


@pytest.fixture
def engine(plugins) -> Engine:
    return Engine(plugins=plugins)


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    counter = iter(range(1, 1_000_000))

    def build(type: str, time: str, data: dict[str, Any], subject: str = SUBJECT, id: str | None = None) -> dict[str, Any]:
        return {"specversion": "1.0", "id": id or f"t-{next(counter)}", "source": "test", "type": type,
                "subject": subject, "time": time, "data": data}

    return build


def registration(industry: str, *, in_park: bool = True, eia: str = "2010-01-01", **extra: Any) -> dict[str, Any]:
    data = {"name": f"Test {industry}", "industry": industry, "district": "Beilun", "in_park": in_park,
            "eia_approved_on": eia, "permits": {"emission_permit": True}, "scale": "above"}
    data.update(extra)
    return data


@pytest.fixture(autouse=True)
def english_locale(monkeypatch):
    """Every test starts in an English locale (the CLI's --lang default comes from LANG); a test
    that wants Chinese says so with --lang zh or its own LANG."""
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
