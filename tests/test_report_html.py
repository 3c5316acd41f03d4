"""`rectify report --html`: one self-contained page, rendered by headless Chromium, whose numbers
match the decision log (counted here independently of engine/report.py). The layout, font and
screenshot tests of the Chinese page are in tests/test_report_browser.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from engine import Engine, load_plugins
from engine.cli import cli
from engine.devtools.demo import generate_city, with_follow_up, write_jsonl

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


class _Numbers(HTMLParser):
    """Every element with a data-k attribute: key -> (data-v, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.texts: dict[str, str] = {}
        self._open: list[str | None] = []
        self.external: list[str] = []
        self.tags: Counter[str] = Counter()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags[tag] += 1
        for name in ("src", "href"):
            if attributes.get(name) and re.match(r"^(https?:)?//", attributes[name]):
                self.external.append(attributes[name])
        key = attributes.get("data-k")
        if key is not None:
            self.values[key] = attributes.get("data-v", "")
            self.texts[key] = ""
        if tag not in ("br", "meta", "rect") or key is not None:
            self._open.append(key)

    def handle_endtag(self, tag):
        if self._open and tag not in ("br", "meta", "rect"):
            self._open.pop()

    def handle_data(self, data):
        for key in self._open:
            if key is not None:
                self.texts[key] += data


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    log = folder / "events.jsonl"
    write_jsonl(with_follow_up(generate_city(enterprises=300, days=1, seed=5), seed=5).events, log)
    out = folder / "report.html"
    result = CliRunner().invoke(cli, ["report", str(log), "--html", str(out)])
    assert result.exit_code == 0, result.output
    engine = Engine(plugins=load_plugins())
    decisions = [r for r in (x.to_dict() for x in engine.run(log.read_bytes().splitlines()))
                 if r["record"] == "decision"]
    return out, decisions, dict(engine.registry)


def test_the_page_is_self_contained_and_deterministic(page, tmp_path):
    out, _, _ = page
    html = out.read_text(encoding="utf-8")
    parser = _Numbers()
    parser.feed(html)
    assert parser.external == [] and parser.tags["link"] == 0
    assert parser.tags["script"] == 1 and "<script src" not in html  # the table's sort and search, inline
    assert parser.tags["svg"] >= 4 and "<style>" in html
    again = tmp_path / "again.html"
    log = out.parent / "events.jsonl"
    assert CliRunner().invoke(cli, ["report", str(log), "--html", str(again)]).exit_code == 0
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed here (.ci/run installs it in CI)")
def test_numbers_in_the_browser_match_the_decision_log(page, tmp_path):
    out, decisions, registry = page
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", out.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert "<svg" in dom and "Progress against the programme targets" in dom
    parser = _Numbers()
    parser.feed(dom)
    shown = parser.texts

    def number(key: str) -> float:
        return float(shown[key].replace(",", ""))

    def key_of(d):  # list/route, and the status when not effective
        return f"{d['list'] or 'unlisted'}/{d['action']}" + ("" if d["status"] == "effective" else f" ({d['status']})")

    # counts per list and route, straight from the log
    per_key = Counter(key_of(d) for d in decisions)
    assert number("decisions") == len(decisions)
    for key, count in per_key.items():
        assert number(f"list_action/{key}") == count, key
    # enterprises per list
    for name in ("backward_capacity", "high_consumption_low_efficiency", "scattered_polluted"):
        assert number(f"enterprises/{name}") == len({d["enterprise"] for d in decisions
                                                     if d["list"] == name and d["status"] != "withdrawn"})
    # by district and industry (list decisions)
    for prefix, field in (("district", "district"), ("industry", "industry")):
        groups: dict[str, Counter[str]] = {}
        for d in decisions:
            if d["list"] is not None:
                group = registry[d["enterprise"]][field]
                groups.setdefault(group, Counter())[key_of(d)] += 1
        assert groups
        for group, counts in groups.items():
            for key, count in counts.items():
                assert number(f"{prefix}/{group}/{key}") == count, (group, key)
            assert number(f"{prefix}/{group}/total") == sum(counts.values())
    # land freed: parcels recovered, and the parcels of enterprises whose vacate, eliminate or relocate order
    # was verified as carried out (their registered land where no parcel of theirs is known), each once
    freed = {d["enterprise"] for d in decisions if d["action"] in ("vacate", "eliminate", "relocate_to_park")
             and d["status"] == "completed"}
    parcels: dict[tuple[str, str], list] = {}  # (holder, parcel) -> [area, status]
    for event in map(orjson.loads, (out.parent / "events.jsonl").read_bytes().splitlines()):
        if event["type"].startswith("land.parcel."):
            key = (event["subject"], event["data"]["parcel"])
            if event["type"] == "land.parcel.registered":
                parcels[key] = [event["data"]["area_mu"], "held"]
            elif event["type"] in ("land.parcel.recovered", "land.parcel.transferred") and parcels.get(key, [0, ""])[1] == "held":
                parcels[key][1] = event["type"].rsplit(".", 1)[1]
    areas = {pid: area for (holder, pid), (area, status) in parcels.items() if status != "transferred"}
    freed_parcels = {pid for (holder, pid), (_, status) in parcels.items()
                     if status == "recovered" or (status == "held" and holder in freed)}
    known = {holder for (holder, _), (_, status) in parcels.items() if status != "transferred"}
    land = round(sum(areas[p] for p in freed_parcels) + sum(registry[e]["land_area_mu"] for e in freed - known), 3)
    assert freed and number("land_freed_mu") == pytest.approx(land, abs=0.006)
    assert number("progress/land_freed_mu/target") == 45000
    assert number("progress/land_freed_mu/percent") == pytest.approx(100 * land / 45000, abs=0.006)
    # mu-average classes and surcharges of the year closed in the log
    classes = Counter((d["evaluation"]["population"], d["evaluation"]["class"]) for d in decisions if "evaluation" in d)
    assert sum(classes.values()) > 250
    for (population, klass), count in classes.items():
        assert number(f"classes/2023/{population}/{klass}") == count
    surcharged = Counter(f"{d['surcharge_yuan_per_kwh']:g}" for d in decisions if "surcharge_yuan_per_kwh" in d)
    assert surcharged
    for level, count in surcharged.items():
        assert number(f"surcharge/2023/{level}") == count
    # every enterprise is in the table (no top-20 cut), each with its findings' count
    listed = [k.split("/")[1] for k in shown if k.startswith("enterprise/") and k.endswith("/findings")]
    assert sorted(listed) == sorted(registry) and number("enterprises/total") == len(registry)
