"""Extreme but valid values on the way out (fuzz report items 6 and 7).

- Numbers of 1e25 and more (schema-valid: a parcel's `area_mu`, a contract's `price_yuan`) are
  written in full by the HTML report and the notices, which used to raise
  decimal.InvalidOperation in Babel's 28-digit context; a sum past the largest float shows as
  n/a in the text summary, not "inf".
- Minute or hourly readings whose local time is valid but whose UTC instant is in year 0 or year
  10000 (0001-01-01T00:0x+14:00, 9999-12-31T20:0x-05:00) close their hourly and daily means
  without a ValueError, on both backends and in the batch path; the mean's time is its local
  start as for ordinary times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import SUBJECT, registration
from engine import Engine, InputLine, load_plugins

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = load_plugins()


def event(id: str, type: str, time: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": id, "source": "test", "type": type, "subject": SUBJECT, "time": time, "data": data}


# ---- item 7: windows at the ends of the calendar ------------------------------------------------

def minute(id: str, time: str, value: float = 35.0) -> dict[str, Any]:
    return event(id, "emission.measured", time, {"outlet": "DA001", "process": "melting.electric", "pollutant": "a34013",
                                                 "value": value, "unit": "mg/m3", "period": "minute", "flag": "N"})


def chromium(id: str, time: str, period: str, value: float = 0.5) -> dict[str, Any]:
    return event(id, "discharge.measured", time, {"outlet": "DW001", "point": "workshop", "destination": "park_plant",
                                                  "pollutant": "w20117", "value": value, "unit": "mg/L", "period": period})


def stack(first: str, prefix: str, offset: str) -> list[dict[str, Any]]:
    return [event("r1", "enterprise.registered", first, registration("foundry"))] + [
        minute(f"m{i}", f"{prefix}:{i:02d}:00{offset}") for i in range(3)]


def wastewater(first: str, prefix: str, offset: str, period: str) -> list[dict[str, Any]]:
    return [event("r1", "enterprise.registered", first, registration("surface_treatment"))] + [
        chromium(f"w{i}", f"{prefix}:{i:02d}:00{offset}", period) for i in range(3)]


CASES = {
    # (events, the (period, time) of every mean judged, the times of the findings)
    "hour, year 1 at +14:00": (stack("0001-01-01T00:00:00+14:00", "0001-01-01T00", "+14:00"),
                               [("hour", "0001-01-01T00:00:00+14:00")], None),
    "hour, year 9999 at -05:00": (stack("9999-12-31T19:00:00-05:00", "9999-12-31T20", "-05:00"),
                                  [("hour", "9999-12-31T20:00:00-05:00")], ["9999-12-31T20:00:00-05:00"]),
    "hour, last hour of 9999 at -12:00": (stack("9999-12-31T19:00:00-12:00", "9999-12-31T23", "-12:00"),
                                          [("hour", "9999-12-31T23:00:00-12:00")], ["9999-12-31T23:00:00-12:00"]),
    # a half-hour offset: the clock hour of the epoch begins 30 minutes before year 1 locally,
    # shown as the calendar's first second (as deadlines past its end are clamped)
    "hour, year 1 at +05:30": (stack("0001-01-01T00:00:00+05:30", "0001-01-01T00", "+05:30"),
                               [("hour", "0001-01-01T00:00:00+05:30")], None),
    "day from hourly values, year 1 at +14:00": (
        wastewater("0001-01-01T00:00:00+14:00", "0001-01-01T01", "+14:00", "hour"),
        [("day", "0001-01-01T00:00:00+14:00")], None),
    "day from minute values, year 1 at +14:00": (
        wastewater("0001-01-01T00:00:00+14:00", "0001-01-01T00", "+14:00", "minute"),
        [("day", "0001-01-01T00:00:00+14:00")], None),
    "day from minute values, year 9999 at -05:00": (
        wastewater("9999-12-31T19:00:00-05:00", "9999-12-31T20", "-05:00", "minute"),
        [("day", "9999-12-31T00:00:00-05:00")], ["9999-12-31T00:00:00-05:00"]),
}


def watched(engine: Engine) -> list[tuple[str, str]]:
    """The (period, time) of every hourly or daily mean the engine judges."""
    means: list[tuple[str, str]] = []
    judge = engine.judge.reading

    def reading(value, period, *args, **kwargs):
        if period in ("hour", "day"):
            means.append((period, value.time))
        return judge(value, period, *args, **kwargs)

    engine.judge.reading = reading
    return means


def outputs(engine: Engine, events: list[dict[str, Any]], batch: bool) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    means = watched(engine)
    if batch:
        lines = [InputLine("log.jsonl", n, orjson.dumps(e)) for n, e in enumerate(events, start=1)]
        records = [r.to_dict() for r in engine.run_batch(lines, batch_size=2)]
    else:
        records = [r.to_dict() for r in engine.run(events)]
    return records, means


@pytest.mark.parametrize("path", ["compiled", "rete", "batch"])
@pytest.mark.parametrize("case", list(CASES))
def test_means_at_the_ends_of_the_calendar_close(case, path):
    events, means, finding_times = CASES[case]
    engine = Engine(plugins=PLUGINS, backend="compiled" if path == "batch" else path)
    assert all(engine.validator.problem(e) is None for e in events)  # valid event times
    records, judged = outputs(engine, events, batch=path == "batch")
    assert [(period, time) for period, time in judged if period == means[0][0]] == means
    assert engine.summary.quarantined == 0 and engine.summary.late == 0
    if finding_times is not None:
        assert [r["time"] for r in records if r["record"] == "finding"] == finding_times


def test_ordinary_means_keep_their_time():
    """The local start of an hour and a day as before (datetime.fromtimestamp in the offset)."""
    from datetime import datetime, timedelta, timezone

    from engine.normalise.readings import epoch_of
    from engine.normalise.windows import _local_start

    for time in ("2024-03-01T11:17:00+08:00", "2024-03-01T11:17:00Z", "2024-03-01T11:17:00+05:45",
                 "1969-12-31T23:59:00-09:30", "2024-03-01T00:00:00-12:00"):
        offset = datetime.fromisoformat(time.replace("Z", "+00:00")).utcoffset()
        start = epoch_of(time) - epoch_of(time) % 3600
        expected = datetime.fromtimestamp(start, tz=timezone(offset)).isoformat()
        assert _local_start(start, offset).isoformat() == expected
    assert _local_start(epoch_of("2024-03-01T00:00:00+08:00"), timedelta(hours=8)).isoformat() == "2024-03-01T00:00:00+08:00"


# ---- item 6: huge figures in the HTML report and the notices ------------------------------------

AS_OF = "2024-06-01T00:00:00+08:00"


def parcel(area_mu: float, price_yuan: float) -> dict[str, Any]:
    return event("p1", "land.parcel.registered", "2021-12-01T09:00:00+08:00", {
        "parcel": "P1", "area_mu": area_mu, "use": "industrial",
        "contract": {"signed_on": "2021-09-10", "start_by": "2022-03-10", "complete_by": "2023-09-10",
                     "expires_on": "2071-09-09", "price_yuan": price_yuan}})


def rectify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", *args],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def huge_events(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("huge") / "events.jsonl"
    registered = event("r1", "enterprise.registered", "2021-01-01T08:00:00+08:00",
                       {"name": "Test", "industry": "foundry", "district": "Beilun", "in_park": True, "scale": "above"})
    path.write_text("".join(json.dumps(e) + "\n" for e in (registered, parcel(1e30, 1e30))))
    return path


@pytest.mark.parametrize("lang", ["zh"])  # the language's numbers are checked in process (test_notice_text_...)
def test_html_report_of_huge_figures(huge_events, tmp_path, lang):
    out = tmp_path / "report.html"
    done = rectify("report", str(huge_events), "--as-of", AS_OF, "--html", str(out), "--lang", lang)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "1,000,000,000,000,000,000,000,000,000,000" in out.read_text(encoding="utf-8")  # the parcel's area


@pytest.mark.parametrize("lang", ["en"])
def test_notices_of_huge_figures(huge_events, tmp_path, lang):
    out = tmp_path / "notices"
    done = rectify("notice", "--all", "--events", str(huge_events), "--as-of", AS_OF, "--out-dir", str(out), "--lang", lang)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(list(out.glob("*.pdf"))) == 2  # the idle-land fee and the contract remedy


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_notice_text_of_huge_figures(huge_events, lang):
    import html

    from engine.cli.common import build_engine
    from engine.report import collect
    from engine.report.notice import load_authority, notice_html

    data = collect(build_engine((), (), None, False, "compiled"), [str(huge_events)], AS_OF)
    (fee,) = [d for d in data.decisions if d["action"] == "idle_land_fee"]
    text = html.unescape(notice_html(data, fee["id"], load_authority(), lang))
    assert "200,000,000,000,000,000,000,000,000,000.00" in text  # 20 % of the land price, in yuan and fen
    assert "1,000,000,000,000,000,000,000,000,000,000.00" in text  # the base: the price


def test_text_report_of_an_overflowing_sum(tmp_path):
    registered = event("r1", "enterprise.registered", "2021-01-01T08:00:00+08:00",
                       {"name": "Test", "industry": "foundry", "district": "Beilun", "in_park": True, "scale": "above"})
    parcels = [{**parcel(1.7e308, 1e6), "id": f"p{i}", "data": {**parcel(1.7e308, 1e6)["data"], "parcel": f"P{i}"}}
               for i in range(3)]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in (registered, *parcels)))
    done = rectify("report", str(path), "--as-of", AS_OF)
    assert done.returncode == 0, done.stderr
    assert "inf" not in done.stdout
    assert "parcels 3 (n/a mu)" in done.stdout
    html = tmp_path / "report.html"
    done = rectify("report", str(path), "--as-of", AS_OF, "--html", str(html))
    assert done.returncode == 0, done.stderr


def test_the_service_shows_a_clock_past_the_utc_calendar_as_its_first_or_last_second():
    from engine.normalise.readings import epoch_of
    from engine.serve.service import iso

    assert iso(epoch_of("0001-01-01T00:00:00+14:00")) == "0001-01-01T00:00:00+00:00"
    assert iso(epoch_of("9999-12-31T23:00:00-05:00")) == "9999-12-31T23:59:59+00:00"
    assert iso(epoch_of("2024-03-01T10:00:00+08:00")) == "2024-03-01T02:00:00+00:00"
