"""Command-line text in Chinese or English: the run summary (`rectify run`, `rectify demo`), the
mu-average ranking (`rectify evaluate`) and a record as one line (`rectify decisions`), each
enterprise with its name beside its code.

In: data as the JSON forms give it (`RunSummary.to_dict()`, `ranking_json`, stored records) and
the registry. Out: lines (tab-separated for rankings and records). English keeps the identifiers of the JSON (lists, routes, indicators);
Chinese names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.decide import Method
from engine.i18n import translator
from engine.report.summary import count_key


def enterprise_name(registry: Mapping[str, Mapping[str, Any]], code: str | None) -> str:
    """The registered name of an enterprise, or "-" when it has none."""
    if not code:
        return "-"
    return str((registry.get(code) or {}).get("name") or "-")


def run_text(data: Mapping[str, Any], balanced: bool = True, seconds: float | None = None, lang: str = "en") -> str:
    """The run summary for people (`RunSummary.to_dict()`): counts (they add up), findings by
    plugin, decisions by list and route, orders, and what was odd; events/s when `seconds`."""
    tr = translator(lang)
    _ = tr.gettext
    lines = [_("read {read}  processed {processed}  duplicate {duplicate}  quarantined {quarantined}").format(
        read=data["read"], processed=data["processed"], duplicate=data["duplicate"], quarantined=data["quarantined"])
        + ("" if balanced else "  " + _("(COUNTS DO NOT ADD UP)")),
        _("findings {count}: {items}").format(count=data["findings_total"], items=", ".join(
            f"{tr.label('plugin', k)} {v}" for k, v in data["findings"].items()) or _("none")),
        _("decisions {count}: {items}; orders open {open}, closed by verification {closed}").format(
            count=data["decisions_total"], items=", ".join(f"{count_key(tr, k)} {v}" for k, v in data["decisions"].items())
            or _("none"), open=data["open_orders"], closed=data["orders_closed"])]
    extras = []
    if data["unknown_types"]:
        extras.append(_("unknown types {items}").format(items=", ".join(f"{k} {v}" for k, v in data["unknown_types"].items())))
    for key, message in (("unregistered_events", _("events of unregistered enterprises {count}")),
                         ("unavailable_readings", _("readings flagged unavailable (not N) {count}")),
                         ("late_readings", _("late readings {count}")),
                         ("clock_held", _("events too far ahead of the clock to move it alone {count}")),
                         ("unmatched_approvals", _("approvals naming no open proposal {count}")),
                         ("unknown_parcels", _("events about a parcel their subject does not hold {count}"))):
        if data.get(key):
            extras.append(message.format(count=data[key]))
    if data["data_gaps_total"]:
        extras.append(_("data gaps (not judged) {items}").format(
            items=", ".join(f"{tr.label('reason', k)} {v}" for k, v in data["data_gaps"].items())))
    if extras:
        lines.append(_("; ").join(extras))
    if seconds is not None and seconds > 0:
        lines.append(_("{rate} events/s ({seconds} s)").format(rate=f"{data['read'] / seconds:,.0f}", seconds=f"{seconds:.2f}"))
    return "\n".join(lines)


def _cell(cell: Mapping[str, Any], lang: str) -> str:
    tr = translator(lang)
    if cell["value"] is None:
        return f"- ({tr.label('flag', cell['flag'])})"
    text = f"{cell['value']:,.2f}"
    return text + (f" ({tr.label('flag', cell['flag'])})" if cell["flag"] else "")


def ranking_text(data: Mapping[str, Any], method: Method, registry: Mapping[str, Mapping[str, Any]], lang: str = "en") -> str:
    """The ranking of `ranking_json` as a table per population: rank, enterprise, name, class,
    score, each indicator value, listing and surcharge."""
    tr = translator(lang)
    _ = tr.gettext
    state = _("closed") if data["closed"] else _("provisional: no evaluation.closed for this year in the input")
    lines = [_("mu-average evaluation {year} ({method} v{version}; {state})").format(
        year=data["year"], method=method.id, version=method.version, state=state)]
    for population in method.populations:
        members = [r for r in data["ranking"] if r["population"] == population.id]
        title = population.title if lang == "en" else tr.name("population", population.id)
        lines.append(_("population {id}: {count} ranked ({title})").format(id=tr.label("population", population.id),
                                                                         count=len(members), title=title))
        if not members:
            continue
        ids = [i.id for i in population.indicators]
        lines.append("\t".join([_("rank"), _("enterprise"), _("name"), _("class"), _("score"),
                                *(tr.label("indicator", i) for i in ids), _("listed"), _("surcharge")]))
        for r in members:
            listed = f"{tr.label('route', r['action'])} ({r['listed_by']})" if r["listed_by"] else "-"
            surcharge = "-" if r["surcharge_yuan_per_kwh"] is None else \
                _("{value} yuan/kWh").format(value=r["surcharge_yuan_per_kwh"])
            tie = "=" if r["tied"] else ""
            lines.append("\t".join([f"{r['rank']}{tie}", r["enterprise"], enterprise_name(registry, r["enterprise"]),
                                    r["class"], f"{r['score']:.6f}", *(_cell(r["indicators"][i], lang) for i in ids),
                                    listed, surcharge]))
    if data["not_ranked"]:
        lines.append(_("not ranked: {items}").format(items=", ".join(
            f"{r['enterprise']} {enterprise_name(registry, r['enterprise'])} ({r['reason']})" for r in data["not_ranked"])))
    return "\n".join(lines)


def record_line(record: Mapping[str, Any], registry: Mapping[str, Mapping[str, Any]], lang: str = "en") -> str:
    """One stored record as a tab-separated line: time, kind, id, enterprise, name, rule, what."""
    tr = translator(lang)
    _ = tr.gettext
    kind = record.get("record")
    if kind == "decision":
        what = f"{tr.label('list', record.get('list'))}/{tr.label('route', record.get('action'))}"
        if record.get("deadline"):
            what += " " + _("by {deadline}").format(deadline=record["deadline"])
        if record.get("status"):
            what += f" ({tr.label('status', record['status'])})"
    elif kind == "finding":
        limit = record.get("limit") or {}
        shown = limit.get("value", f"{limit.get('min', '')}..{limit.get('max', '')}" if limit else "-")
        what = _("judged {judged} limit {limit} {unit}").format(judged=record.get("judged"), limit=shown,
                                                             unit=limit.get("unit", "")).rstrip()
        if record.get("pollutant"):
            what += f" ({tr.label('pollutant', record['pollutant'])})"
    elif kind == "quarantine":
        what = str(record.get("error", ""))
    else:  # a kind of record this version does not know: its fields, as they are
        what = ", ".join(f"{k}={v}" for k, v in record.items() if k not in ("record", "id", "time", "enterprise", "rule",
                                                                              "prev", "hash", "ruleset"))
    enterprise = record.get("enterprise")
    return "\t".join(str(x) for x in (record.get("time") or "-", tr.label("record", kind), record.get("id") or "-",
                                      enterprise or "-", enterprise_name(registry, enterprise) if enterprise else "-",
                                      record.get("rule") or "-", what))
