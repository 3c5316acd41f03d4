"""The programme summary: decisions counted per list and route, by industry and district,
land (parcels idle, commitments met or missed, land recovered, low-efficiency land, land freed,
per district), and progress against the programme's targets (parameters of the policy pack)."""

from __future__ import annotations

import math
import unicodedata

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from engine.i18n import Translator, translator

LISTS = ("backward_capacity", "high_consumption_low_efficiency", "scattered_polluted")
LAND_ACTIONS = ("vacate", "eliminate", "relocate_to_park")  # routes that free the enterprise's land once carried out
LAND_KEYS = ("parcels", "area_mu", "idle_parcels", "idle_mu", "commitments_met", "commitments_missed",
             "commitments_unchecked", "remedies", "recovered_parcels", "recovered_mu", "low_efficiency_parcels",
             "low_efficiency_mu", "decided_mu", "freed_mu")


def programme_report(decisions: Iterable[Mapping[str, Any]], registry: Mapping[str, Mapping[str, Any]],
                     targets: Mapping[str, Any], parcels: Mapping[str, Mapping[str, Any]] | None = None,
                     findings: Iterable[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Aggregate decision records (as written) with the registry they refer to, and the parcels
    (`Engine.parcels.registry`: each parcel's record as its current holder has it) and the
    findings of the same run.

    Enterprises are counted once per list (an order and its escalation are one enterprise; a
    withdrawn proposal does not count). Records other than `effective` are counted per list and
    route with their status (`.../close_by_law (proposed)`). Decisions without a list (the
    mu-average classes, `unlisted/classify`, and the land decisions) count in `by_list_action`
    but not by industry and district (those count lists and routes); every mu-average decision
    counts in `evaluation`: classes per year and population, surcharges, and the land-weighted
    tax per mu of the latest year (progress against `target_tax_per_mu`).

    Land (`land`, and per district of the holder in `land.by_district`; docs/land.md), never at
    decision time for what is freed:
    - `freed_mu`: parcels recovered (`land.parcel.recovered`), and the parcels of enterprises whose
      vacate, eliminate or relocate order was verified as carried out (a `completed` record); an
      enterprise whose parcels the engine does not know counts with its registered
      `land_area_mu`. Each parcel and enterprise once. Progress against `target_land_mu`.
    - `decided_mu`: the same for every such decision not withdrawn, and parcels under a
      recovery decision not withdrawn (so freed <= decided).
    - `idle_parcels`/`idle_mu`: parcels with an idle-land fee decided (not withdrawn), not started
      since and still held; `recovered_*`: parcels recovered; `low_efficiency_*`: parcels decided
      as low-efficiency land for redevelopment.
    - standard land (parcels with commitments), by the latest check (an inspection at completion,
      in production or periodic): `commitments_missed` when a `land.standard.*` finding cites it,
      `commitments_met` when none does, `commitments_unchecked` without one; `remedies`: parcels
      with the contract's remedies proposed or in effect.
    `land_decided_mu` and `land_freed_mu` (top level) are the same figures as `land`'s.
    """
    by_list_action: Counter[str] = Counter()
    by_industry: dict[str, Counter[str]] = {}
    by_district: dict[str, Counter[str]] = {}
    on_list: dict[str, set[str]] = {name: set() for name in LISTS}
    eliminated: set[str] = set()
    land_decided: set[str] = set()
    land_freed: set[str] = set()
    classes: dict[int, dict[str, Counter[str]]] = {}
    surcharges: dict[int, Counter[str]] = {}
    tax_land: dict[int, list[tuple[str, float]]] = {}
    idle: set[str] = set()
    recovering: set[str] = set()
    remedied: set[str] = set()
    redevelop: set[str] = set()
    for record in decisions:
        enterprise, action, listed = record["enterprise"], record["action"], record["list"]
        status = record.get("status", "effective")
        key = f"{listed or 'unlisted'}/{action}" + ("" if status == "effective" else f" ({status})")
        by_list_action[key] += 1
        registration = registry.get(enterprise, {})
        evaluation = record.get("evaluation")
        if evaluation is not None:
            year = evaluation["year"]
            classes.setdefault(year, {}).setdefault(evaluation["population"], Counter())[evaluation["class"]] += 1
            if record.get("surcharge_yuan_per_kwh") is not None:
                surcharges.setdefault(year, Counter())[f"{record['surcharge_yuan_per_kwh']:g}"] += 1
            tax = (evaluation["indicators"].get("tax_per_mu") or {}).get("value")
            if tax is not None:
                tax_land.setdefault(year, []).append((enterprise, tax))
        if status != "withdrawn" and isinstance(record.get("parcel"), str):
            parcel = record["parcel"]
            if action == "idle_land_fee":
                idle.add(parcel)
            elif action == "recover_land":
                recovering.add(parcel)
            elif action == "contract_remedy":
                remedied.add(parcel)
            elif action == "redevelop_land":
                redevelop.add(parcel)
        if listed is None:
            continue
        by_industry.setdefault(registration.get("industry", "unregistered"), Counter())[key] += 1
        by_district.setdefault(registration.get("district", "unregistered"), Counter())[key] += 1
        if status == "withdrawn":
            continue
        if listed in on_list:
            on_list[listed].add(enterprise)
        if listed == "backward_capacity" and action == "eliminate":
            eliminated.add(enterprise)
        if action in LAND_ACTIONS:
            (land_freed if status == "completed" else land_decided).add(enterprise)
    land_figures = _land(registry, parcels or {}, findings, land_freed, land_decided | land_freed,
                         idle, recovering, remedied, redevelop)
    land, decided = land_figures["freed_mu"], land_figures["decided_mu"]
    latest = max(tax_land) if tax_land else None
    tax_per_mu = None
    if latest is not None:  # sum of tax / sum of land = sum of (tax per mu x land) / sum of land
        pairs = [(value, float(registry.get(e, {}).get("land_area_mu") or 0.0)) for e, value in sorted(tax_land[latest])]
        area = sum(mu for _, mu in pairs)
        tax_per_mu = round(sum(v * mu for v, mu in pairs) / area, 2) if area > 0 else None
    progress = {
        "backward_capacity_eliminated": _progress(len(eliminated), targets.get("target_backward_capacity")),
        "high_consumption_low_efficiency": _progress(len(on_list["high_consumption_low_efficiency"]),
                                                     targets.get("target_high_consumption_low_efficiency")),
        "scattered_polluted": _progress(len(on_list["scattered_polluted"]), targets.get("target_scattered_polluted")),
        "land_freed_mu": _progress(round(land, 3), targets.get("target_land_mu")),
    }
    if tax_per_mu is not None:
        progress["tax_per_mu"] = _progress(tax_per_mu, targets.get("target_tax_per_mu"))
    return {
        "decisions": sum(by_list_action.values()),
        "by_list_action": _sorted(by_list_action),
        "enterprises_per_list": {name: len(on_list[name]) for name in LISTS},
        "by_industry": {k: _sorted(v) for k, v in sorted(by_industry.items())},
        "by_district": {k: _sorted(v) for k, v in sorted(by_district.items())},
        "land_decided_mu": round(decided, 3),
        "land_freed_mu": round(land, 3),
        "land": land_figures,
        "progress": progress,
        "evaluation": {
            str(year): {
                "classes": {pop: _sorted(counts) for pop, counts in sorted(classes[year].items())},
                "surcharge_yuan_per_kwh": _sorted(surcharges.get(year, Counter())),
                "tax_per_mu": tax_per_mu if year == latest else None,
            }
            for year in sorted(classes)
        },
    }


def _land(registry: Mapping[str, Mapping[str, Any]], parcels: Mapping[str, Mapping[str, Any]],
          findings: Iterable[Mapping[str, Any]] | None, freed_by: set[str], decided_by: set[str], idle: set[str],
          recovering: set[str], remedied: set[str], redevelop: set[str]) -> dict[str, Any]:
    """The land figures, in total and per district of the holder (see `programme_report`)."""
    held: dict[str, list[str]] = {}  # holder -> its parcels (held, or recovered from it)
    for pid, record in parcels.items():
        if record["status"] != "transferred":
            held.setdefault(record["holder"], []).append(pid)
    missed_checks = {(f.get("parcel"), event) for f in findings or () if str(f.get("rule", "")).startswith("land.standard.")
                     for event in f.get("event") or ()}
    totals: dict[str, Counter[str]] = {}
    areas: dict[str, dict[str, float]] = {}

    def district_of(enterprise: str) -> str:
        return str((registry.get(enterprise) or {}).get("district") or "unregistered")

    def add(district: str, key: str, mu: float | None = None) -> None:
        totals.setdefault(district, Counter())[key] += 1
        if mu is not None:
            bucket = areas.setdefault(district, {})
            bucket[key] = bucket.get(key, 0.0) + mu

    freed = {pid for pid, r in parcels.items() if r["status"] == "recovered"}
    decided = set(freed) | {pid for pid in recovering if pid in parcels}
    fallback_freed, fallback_decided = [], []
    for enterprise in sorted(decided_by):
        own = held.get(enterprise)
        if own:
            decided.update(own)
            if enterprise in freed_by:
                freed.update(own)
        else:
            fallback_decided.append(enterprise)
            if enterprise in freed_by:
                fallback_freed.append(enterprise)
    for pid in sorted(parcels):
        record = parcels[pid]
        district, mu = district_of(record["holder"]), float(record["area_mu"])
        add(district, "parcels", mu)
        if pid in idle and not record["started"] and record["status"] == "held":
            add(district, "idle", mu)
        if record["status"] == "recovered":
            add(district, "recovered", mu)
        if pid in redevelop:
            add(district, "low_efficiency", mu)
        if pid in decided:
            add(district, "decided", mu)
        if pid in freed:
            add(district, "freed", mu)
        if record.get("commitments"):
            check = record.get("last_check")
            state = "unchecked" if check is None else "missed" if (pid, check["event"]) in missed_checks else "met"
            add(district, f"commitments_{state}")
            if pid in remedied:
                add(district, "remedies")
    for enterprises, key in ((fallback_decided, "decided"), (fallback_freed, "freed")):
        for enterprise in enterprises:
            add(district_of(enterprise), key, float((registry.get(enterprise) or {}).get("land_area_mu") or 0.0))

    def figures(counts: Counter[str], mus: Mapping[str, float]) -> dict[str, Any]:
        return {"parcels": counts["parcels"], "area_mu": round(mus.get("parcels", 0.0), 3),
                "idle_parcels": counts["idle"], "idle_mu": round(mus.get("idle", 0.0), 3),
                "commitments_met": counts["commitments_met"], "commitments_missed": counts["commitments_missed"],
                "commitments_unchecked": counts["commitments_unchecked"], "remedies": counts["remedies"],
                "recovered_parcels": counts["recovered"], "recovered_mu": round(mus.get("recovered", 0.0), 3),
                "low_efficiency_parcels": counts["low_efficiency"], "low_efficiency_mu": round(mus.get("low_efficiency", 0.0), 3),
                "decided_mu": round(mus.get("decided", 0.0), 3), "freed_mu": round(mus.get("freed", 0.0), 3)}

    total_counts: Counter[str] = Counter()
    total_areas: dict[str, float] = {}
    for district in sorted(totals):  # sums in a fixed order: the same bytes every time
        total_counts.update(totals[district])
        for key, mu in sorted(areas.get(district, {}).items()):
            total_areas[key] = total_areas.get(key, 0.0) + mu
    return {**figures(total_counts, total_areas),
            "by_district": {d: figures(totals[d], areas.get(d, {})) for d in sorted(totals)}}


def _sorted(counter: Counter[str]) -> dict[str, int]:
    return {k: counter[k] for k in sorted(counter)}


def _progress(value: float, target: Any) -> dict[str, Any]:
    share = round(100.0 * value / target, 2) if isinstance(target, (int, float)) and target else None
    return {"value": value, "target": target, "percent": share}


def report_text(report: Mapping[str, Any], lang: str = "en") -> str:
    """The summary as a few readable lines in `lang` (the --json form has everything)."""
    tr = translator(lang)
    _ = tr.gettext

    def counts(items: Mapping[str, int]) -> str:
        return ", ".join(f"{count_key(tr, k)} {v}" for k, v in items.items())

    lines = [_("decisions {count}").format(count=report["decisions"])]
    for key, count in report["by_list_action"].items():
        lines.append(f"  {pad(count_key(tr, key), 52)}{count:>7}")
    lines.append(_("enterprises per list: {counts}").format(
        counts=", ".join(f"{tr.label('list', k)} {v}" for k, v in report["enterprises_per_list"].items())))
    lines.append(_("land: decided {decided} mu (vacate, eliminate, relocate, recovery), freed {freed} mu (parcels recovered, "
                   "orders verified as carried out)").format(decided=_shown(report["land_decided_mu"]), freed=_shown(report["land_freed_mu"])))
    land = report.get("land") or {}
    if land.get("parcels"):
        lines.append("  " + _("parcels {parcels} ({area} mu): idle {idle} ({idle_mu} mu); standard land: commitments met {met}, "
                              "missed {missed}, unchecked {unchecked}, remedies {remedies}; recovered {recovered} ({recovered_mu} mu); "
                              "low-efficiency land {low} ({low_mu} mu)").format(
            parcels=land["parcels"], area=_shown(land["area_mu"]), idle=land["idle_parcels"], idle_mu=_shown(land["idle_mu"]),
            met=land["commitments_met"], missed=land["commitments_missed"], unchecked=land["commitments_unchecked"],
            remedies=land["remedies"], recovered=land["recovered_parcels"], recovered_mu=_shown(land["recovered_mu"]),
            low=land["low_efficiency_parcels"], low_mu=_shown(land["low_efficiency_mu"])))
        lines.append("  " + _("land by district:"))
        for district, item in land["by_district"].items():
            lines.append(f"    {pad(tr.label('district', district), 18)}" + _(
                "parcels {parcels}, idle {idle}, commitments met {met} / missed {missed}, recovered {recovered} mu, "
                "freed {freed} mu").format(parcels=item["parcels"], idle=item["idle_parcels"], met=item["commitments_met"],
                                           missed=item["commitments_missed"], recovered=_shown(item["recovered_mu"]),
                                           freed=_shown(item["freed_mu"])))
    lines.append(_("progress against the programme targets:"))
    for name, item in report["progress"].items():
        percent = "n/a" if item["percent"] is None or not math.isfinite(item["percent"]) else f"{item['percent']:.2f} %"
        lines.append("  " + _("{name}: {value} of {target} ({percent})").format(
            name=tr.label("progress", name), value=_shown(item["value"]), target=_shown(item["target"]), percent=percent))
    for year, item in report.get("evaluation", {}).items():
        classes = "; ".join(f"{tr.label('population', pop)} " + ", ".join(f"{k} {v}" for k, v in counts_.items())
                            for pop, counts_ in item["classes"].items())
        surcharge = ", ".join(_("{level} yuan/kWh: {count}").format(level=k, count=v)
                              for k, v in item["surcharge_yuan_per_kwh"].items()) or _("none")
        lines.append(_("mu-average {year}: {classes}; surcharges: {surcharges}").format(
            year=year, classes=classes, surcharges=surcharge))
    lines.append(_("by industry:"))
    for industry, items in report["by_industry"].items():
        lines.append(f"  {pad(tr.label('industry', industry), 20)}" + counts(items))
    lines.append(_("by district:"))
    for district, items in report["by_district"].items():
        lines.append(f"  {pad(tr.label('district', district), 20)}" + counts(items))
    return "\n".join(lines)


def _shown(value: Any) -> Any:
    """A figure of the text summary as it is, but n/a for a float that is not finite (a sum of
    areas past the largest float: the --json form has null)."""
    return "n/a" if isinstance(value, float) and not math.isfinite(value) else value


def pad(text: str, width: int) -> str:
    """`text` padded to `width` terminal columns: a CJK character takes two (Unicode East Asian
    Width W or F), so Chinese columns line up as English ones do."""
    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(width - used, 0)


def count_key(tr: Translator, key: str) -> str:
    """`list/action` for people: the identifiers in English (as in the JSON), names in Chinese."""
    if tr.lang == "en":
        return key
    listed, _, action = key.partition("/")
    action, _, status = action.partition(" (")
    shown = f"{tr.list_name(None if listed == 'unlisted' else listed)}/{tr.route(action)}"
    return shown + (f" ({tr.label('status_short', status.rstrip(')'))})" if status else "")
