"""`rectify report --html`: one self-contained page an official can work from, in Chinese or English.

In: `ReportData` (engine/report/data.py) and a language. Out: one HTML page (a string), with
- the data period, the reference time (event time: the page depends on its input only, the same
  log gives the same bytes), the rule set and the input counts;
- key figures and progress against the programme's targets;
- findings by pollutant, standard, district, industry and severity, with exceedance multiples
  (judged value / limit) and a timeline chart;
- decisions per list and route, by district and industry, and the mu-average classes;
- land per district: parcels, idle land, standard-land commitments met or missed, land
  recovered, low-efficiency land, land freed (against the 45,000 mu target in the progress);
- every enterprise in one table, sortable and searchable in the page (a small inline script;
  no network), each with its own file: registration, equipment, findings over time, decisions,
  orders and their deadlines, class history, inspections (a section shown when its link is
  followed, printable on its own);
- a subset of Noto Sans CJK SC embedded as WOFF2 (engine/report/fonts.py) with the glyphs of
  every character in the page, so Chinese renders on a machine without a CJK font.
Numbers a test or an auditor may check carry `data-k` (what it is) and `data-v` (the raw value).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from engine.i18n import Translator, translator
from engine.normalise.readings import epoch_of
from engine.report import charts
from engine.report.data import ReportData, summary_of
from engine.report.fonts import FAMILY, font_face
from engine.report.summary import LAND_KEYS

PLACEHOLDER = "/*@font-face*/"
SEVERITIES = ("critical", "major", "minor")


def environment() -> Environment:
    """The Jinja environment of the report and notice templates (autoescaped, strict)."""
    return Environment(loader=PackageLoader("engine.report", "templates"), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def multiple(finding: Mapping[str, Any]) -> float | None:
    """How many times the limit the judged value is (judged / limit; limit / judged below a
    minimum); None where there is no numeric limit."""
    judged, limit = finding.get("judged"), finding.get("limit") or {}
    if not isinstance(judged, (int, float)):
        return None
    upper = limit.get("value", limit.get("max"))
    if isinstance(upper, (int, float)) and upper > 0 and judged > upper:
        return round(judged / upper, 2)
    lower = limit.get("min")
    if isinstance(lower, (int, float)) and judged < lower and judged > 0:
        return round(lower / judged, 2)
    return None


def limit_text(tr: Translator, limit: Mapping[str, Any] | None) -> str:
    if not limit:
        return "—"
    unit = tr.name("unit", limit.get("unit", "")) if limit.get("unit") not in (None, "-") else ""
    if "value" in limit:
        return f"{tr.number(limit['value'], 3)} {unit}".strip()
    low, high = limit.get("min"), limit.get("max")
    return f"{tr.number(low, 3)}–{tr.number(high, 3)} {unit}".strip()


def value_text(tr: Translator, value: Any, unit: str | None) -> str:
    if value is None:
        return "—"
    shown = tr.name("unit", unit) if unit and unit != "-" else ""
    return f"{tr.number(value, 3) if isinstance(value, (int, float)) else value} {shown}".strip()


def _buckets(days: list[str]) -> tuple[str, list[str]]:
    """Bucket size (day, week, month) for the span of these local dates, and the bucket keys."""
    first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
    span = (last - first).days
    size = "day" if span <= 62 else "week" if span <= 366 else "month"
    keys: list[str] = []
    current = first
    while current <= last:
        key = _bucket(current.isoformat(), size)
        if not keys or keys[-1] != key:
            keys.append(key)
        current += timedelta(days=1)
    return size, keys


def _bucket(day: str, size: str) -> str:
    if size == "day":
        return day
    if size == "month":
        return day[:7]
    value = date.fromisoformat(day)
    return (value - timedelta(days=value.weekday())).isoformat()


def _group(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    out = []
    for label, members in groups.items():
        multiples = [m["multiple"] for m in members if m["multiple"] is not None]
        out.append({"key": label, "count": len(members), "enterprises": len({m["enterprise"] for m in members}),
                    "max": max(multiples) if multiples else None,
                    "median": round(statistics.median(multiples), 2) if multiples else None})
    return sorted(out, key=lambda g: (-g["count"], g["key"]))


class _Page:
    """The view model: everything the template shows, computed once, in the page's language."""

    def __init__(self, data: ReportData, lang: str) -> None:
        self.data = data
        self.tr = tr = translator(lang)
        self.lang = tr.lang
        self.summary = summary_of(data)
        self.registry = data.registry
        self.findings = [self._finding(f) for f in data.findings]
        self.by_enterprise: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for row in self.findings:
            self.by_enterprise.setdefault(row["enterprise"], {"findings": [], "decisions": []})["findings"].append(row)
        superseded = {d["supersedes"]: d for d in data.decisions if d.get("supersedes")}
        verified: dict[str, tuple[str, dict[str, Any]]] = {}
        for history in data.history.values():
            for time, event in history.of("rectification.verified"):
                if event.get("passed") is True and isinstance(event.get("decision"), str):
                    verified.setdefault(event["decision"], (time, event))
        self.decisions = [self._decision(d, superseded, verified) for d in data.decisions]
        self.parcels_of: dict[str, list[Mapping[str, Any]]] = {}
        for _, record in sorted(data.parcels.items()):
            self.parcels_of.setdefault(str(record["holder"]), []).append(record)
        for row in self.decisions:
            self.by_enterprise.setdefault(row["enterprise"], {"findings": [], "decisions": []})["decisions"].append(row)

    # ---- one record each --------------------------------------------------------------------

    def _industry(self, code: str) -> str:
        return str((self.registry.get(code) or {}).get("industry") or "unregistered")

    def _district(self, code: str) -> str:
        return str((self.registry.get(code) or {}).get("district") or "unregistered")

    def _finding(self, f: Mapping[str, Any]) -> dict[str, Any]:
        tr, rule = self.tr, self.data.rule(str(f.get("rule")))
        basis = f.get("basis") or {}
        standard = " ".join(x for x in (tr.name("standard", basis.get("standard")) if basis.get("standard") else "",
                                        tr.name("table", basis.get("table")) if basis.get("table") else "") if x) or "—"
        measured = f.get("measured") or {}
        limit = f.get("limit") or {}
        return {"id": f.get("id"), "enterprise": f.get("enterprise"), "time": f.get("time") or "",
                "rule": f.get("rule"), "title": rule.title(self.lang), "severity": rule.severity or "major",
                "pollutant": f.get("pollutant") or "", "standard": standard,
                "standard_key": basis.get("standard") or "", "district": self._district(str(f.get("enterprise"))),
                "industry": self._industry(str(f.get("enterprise"))), "multiple": multiple(f),
                "measured": value_text(tr, measured.get("value"), measured.get("unit")),
                "judged": value_text(tr, f.get("judged"), limit.get("unit")), "limit": limit_text(tr, limit),
                "verified": f.get("verified", True)}

    def _decision(self, d: Mapping[str, Any], superseded: Mapping[str, Mapping[str, Any]],
                  verified: Mapping[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        tr = self.tr
        status, state = "", ""
        if d.get("deadline"):
            later = superseded.get(str(d.get("id")))
            passed = verified.get(str(d.get("id")))
            if passed is not None and epoch_of(passed[0]) <= epoch_of(d["deadline"]):
                state, status = "closed", tr.gettext("closed: rectification verified on {date}").format(date=tr.date(passed[0]))
            elif later is not None:
                state, status = "escalated", tr.gettext("escalated: {route} on {date}").format(route=tr.route(later.get("action", "")),
                                                                       date=tr.date(later.get("time")))
            elif self.data.reference_time and epoch_of(self.data.reference_time) > epoch_of(d["deadline"]):
                state, status = "overdue", tr.gettext("deadline passed")
            else:
                state, status = "open", tr.gettext("open")
        if d.get("status"):
            status = (status + "; " if status else "") + tr.name("status", d["status"])
        evaluation = d.get("evaluation") or {}
        rule = self.data.rule(str(d.get("rule")))
        known = {"record", "id", "rule", "rule_version", "enterprise", "time", "list", "action", "deadline", "basis",
                 "evidence", "supersedes", "ruleset", "evaluation", "surcharge_yuan_per_kwh", "prev", "hash", "status",
                 "amount"}
        extra = [f"{k}: {v}" for k, v in sorted(d.items()) if k not in known]
        if isinstance(d.get("amount"), Mapping):
            extra.append(tr.gettext("amount: {yuan} yuan").format(yuan=tr.money(d["amount"].get("yuan"))))
        return {"id": d.get("id"), "enterprise": d.get("enterprise"), "time": d.get("time") or "",
                "list": d.get("list"), "action": d.get("action"), "list_name": tr.list_name(d.get("list")),
                "route": tr.route(str(d.get("action"))), "deadline": d.get("deadline"), "status": status, "state": state,
                "title": rule.title(self.lang), "basis": tr.basis(d.get("basis")), "evaluation": evaluation,
                "surcharge": d.get("surcharge_yuan_per_kwh"), "supersedes": d.get("supersedes"),
                "extra": ", ".join(extra)}

    # ---- sections ---------------------------------------------------------------------------

    def findings_groups(self) -> list[dict[str, Any]]:
        tr = self.tr
        groups = []
        for key, heading, name in (
                ("pollutant", tr.gettext("By pollutant"), lambda k: f"{tr.pollutant(k)} ({k})" if k else tr.gettext("no pollutant (process, energy, registry)")),
                ("standard", tr.gettext("By standard"), lambda k: k),
                ("district", tr.gettext("By district"), lambda k: tr.name("district", k)),
                ("industry", tr.gettext("By industry"), lambda k: tr.name("industry", k)),
                ("severity", tr.gettext("By severity"), lambda k: tr.name("severity", k))):
            rows = _group(self.findings, key)
            for row in rows:
                row["label"] = name(row["key"])
            groups.append({"key": key, "heading": heading, "rows": rows})
        return groups

    def multiples_chart(self) -> str:
        tr = self.tr
        edges = ((1.0, 1.5), (1.5, 2.0), (2.0, 5.0), (5.0, float("inf")))
        labels = [tr.gettext("up to 1.5 times"), tr.gettext("1.5 to 2 times"), tr.gettext("2 to 5 times"),
                  tr.gettext("over 5 times")]
        rows = []
        for (low, high), label in zip(edges, labels):
            counts = Counter(f["severity"] for f in self.findings
                             if f["multiple"] is not None and low < f["multiple"] <= high)
            rows.append((label, {s: float(counts[s]) for s in SEVERITIES}))
        if not any(sum(v.values()) for _, v in rows):
            return ""
        return charts.bars(tr.gettext("Findings by exceedance multiple (judged value / limit)"), rows, SEVERITIES,
                           {s: tr.name("severity", s) for s in SEVERITIES}, lambda v: tr.number(v, 0),
                           charts.SEVERITY_COLOURS)

    def timeline_chart(self) -> str:
        tr = self.tr
        days = [f["time"][:10] for f in self.findings if len(f["time"]) >= 10]
        if not days:
            return ""
        size, keys = _buckets(days)
        counts: dict[str, Counter[str]] = {k: Counter() for k in keys}
        for f in self.findings:
            if len(f["time"]) >= 10:
                counts[_bucket(f["time"][:10], size)][f["severity"]] += 1
        title = {"day": tr.gettext("Findings per day"), "week": tr.gettext("Findings per week (from Monday)"),
                 "month": tr.gettext("Findings per month")}[size]
        return charts.timeline(title, [(k, counts[k]) for k in keys], SEVERITIES,
                               {s: tr.name("severity", s) for s in SEVERITIES}, charts.SEVERITY_COLOURS)

    def progress_rows(self) -> list[dict[str, Any]]:
        return [{"key": name, "label": self.tr.name("progress", name), **item}
                for name, item in self.summary["progress"].items()]

    def progress_chart(self) -> str:
        rows = [(self.tr.name("progress", name), float(item["percent"]))
                for name, item in self.summary["progress"].items()
                if item.get("percent") is not None and math.isfinite(item["percent"])]
        return charts.progress(self.tr.gettext("Progress against the programme targets (% of target)"), rows)

    def list_action_keys(self) -> list[str]:
        """The list/route keys counted by district and industry (decisions without a list are not)."""
        return [k for k in self.summary["by_list_action"] if not k.startswith("unlisted/")]

    def land_rows(self) -> list[dict[str, Any]]:
        """The land table: one row per district of the parcels' holders, then the total."""
        land = self.summary["land"]
        rows = [{"key": d, "label": self.tr.name("district", d), **item} for d, item in land["by_district"].items()]
        rows.append({"key": "total", "label": self.tr.gettext("total"), **{k: land[k] for k in LAND_KEYS}})
        return rows

    def key_name(self, key: str) -> str:
        listed, _, action = key.partition("/")
        return f"{self.tr.list_name(None if listed == 'unlisted' else listed)} · {self.tr.route(action)}"

    def group_chart(self, field: str, context: str) -> str:
        keys = self.list_action_keys()
        groups = self.summary[field]
        rows = [(self.tr.name(context, g), {k: float(v) for k, v in counts.items() if k in keys}) for g, counts in groups.items()]
        title = self.tr.gettext("Decisions per list and route by district") if field == "by_district" else \
            self.tr.gettext("Decisions per list and route by industry")
        return charts.bars(title, rows, keys, {k: self.key_name(k) for k in keys}, lambda v: self.tr.number(v, 0))

    def class_chart(self, year: str, item: Mapping[str, Any]) -> str:
        classes = sorted({c for counts in item["classes"].values() for c in counts})
        rows = [(self.tr.name("population", pop), {c: float(n) for c, n in counts.items()}) for pop, counts in item["classes"].items()]
        colours = {c: charts.CLASS_COLOURS.get(c, charts.PALETTE[i % len(charts.PALETTE)]) for i, c in enumerate(classes)}
        return charts.bars(self.tr.gettext("Classes {year} by population").format(year=year), rows, classes,
                           {c: c for c in classes}, lambda v: self.tr.number(v, 0), colours)

    def enterprises(self) -> list[dict[str, Any]]:
        """Every enterprise: a table row and its file."""
        tr, data = self.tr, self.data
        rows = []
        for code in data.enterprises():
            registration = data.registry.get(code) or {}
            mine = self.by_enterprise.get(code, {"findings": [], "decisions": []})
            findings = sorted(mine["findings"], key=lambda f: (epoch_of(f["time"]) if f["time"] else 0.0, f["id"] or ""))
            decisions = sorted(mine["decisions"], key=lambda d: (epoch_of(d["time"]) if d["time"] else 0.0, d["id"] or ""))
            multiples = [f["multiple"] for f in findings if f["multiple"] is not None]
            listed = [d for d in decisions if d["list"] is not None or d["action"] != "classify"]
            classes = [d for d in decisions if d["evaluation"]]
            latest = classes[-1]["evaluation"] if classes else {}
            deadlines = sorted(d["deadline"] for d in decisions if d["deadline"] and d["state"] == "open")
            history = data.history.get(code)
            routes = sorted({d["route"] for d in listed})
            search = " ".join([code, str(registration.get("name") or ""), tr.name("district", self._district(code)),
                               tr.name("industry", self._industry(code)), *routes]).lower()
            rows.append({
                "code": code, "name": registration.get("name") or "", "registered": bool(registration),
                "district": tr.name("district", self._district(code)), "industry": tr.name("industry", self._industry(code)),
                "findings": findings, "decisions": decisions, "listed": listed, "routes": routes,
                "max_multiple": max(multiples) if multiples else None, "class": latest.get("class") or "",
                "open_deadline": deadlines[0] if deadlines else None, "classes": classes, "search": search,
                "registrations": history.of("enterprise.registered") if history else [],
                "equipment": history.of("equipment.declared") if history else [],
                "inspections": history.of("inspection.recorded") if history else [],
                "approvals": history.of("approval.recorded") if history else [],
                "land": registration.get("land_area_mu"), "in_park": registration.get("in_park"),
                "parcels": self.parcels_of.get(code, []),
                "permit": (registration.get("permits") or {}).get("emission_permit"),
                "scale": registration.get("scale"),
            })
        return rows


def render_html(data: ReportData, lang: str = "en", *, title: str | None = None) -> str:
    """The page, as a string (UTF-8 when written). The same data and language give the same bytes."""
    page = _Page(data, lang)
    tr = page.tr
    heading = title or data.programme_title.get(page.lang) or tr.gettext("Manufacturing upgrade programme")
    template = environment().get_template("report.html")
    html = template.render(page=page, tr=tr, _=tr.gettext, s=page.summary, data=data, title=heading,
                           family=FAMILY, font_css=Markup(PLACEHOLDER))
    # the font is made last: a subset of exactly the characters of this page
    return html.replace(PLACEHOLDER, font_face(html), 1)
