"""The programme summary: decisions counted per list and route, by industry and district,
land freed, and progress against the programme's targets (parameters of the policy pack)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from engine.i18n import Translator, translator

LISTS = ("backward_capacity", "high_consumption_low_efficiency", "scattered_polluted")
LAND_ACTIONS = ("vacate", "eliminate", "relocate_to_park")  # routes that free the enterprise's land once carried out


def programme_report(decisions: Iterable[Mapping[str, Any]], registry: Mapping[str, Mapping[str, Any]],
                     targets: Mapping[str, Any]) -> dict[str, Any]:
    """Aggregate decision records (as written) with the registry they refer to.

    Enterprises are counted once per list (an order and its escalation are one enterprise; a
    withdrawn proposal does not count). Land is counted once per enterprise: `land_decided_mu`
    when a vacate, eliminate or relocate decision is made, `land_freed_mu` only when such an
    order is verified as carried out (a `completed` record: the land is actually vacated); the
    progress against the land target counts land freed. Records other than `effective` are
    counted per list and route with their status (`.../close_by_law (proposed)`).
    Mu-average class records (list null, action `classify`) count in `by_list_action` as
    `unlisted/classify` but not by industry and district (those count lists and routes); every
    mu-average decision counts in `evaluation`: classes per year and population, surcharges,
    and the land-weighted tax per mu of the latest year (progress against `target_tax_per_mu`).
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
        if listed is None and action == "classify":
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
    land = sum(float(registry.get(e, {}).get("land_area_mu") or 0.0) for e in sorted(land_freed))
    decided = sum(float(registry.get(e, {}).get("land_area_mu") or 0.0) for e in sorted(land_decided | land_freed))
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
        return ", ".join(f"{_key(tr, k)} {v}" for k, v in items.items())

    lines = [_("decisions {count}").format(count=report["decisions"])]
    for key, count in report["by_list_action"].items():
        lines.append(f"  {_key(tr, key):<52}{count:>7}")
    lines.append(_("enterprises per list: {counts}").format(
        counts=", ".join(f"{tr.label('list', k)} {v}" for k, v in report["enterprises_per_list"].items())))
    lines.append(_("land: decided {decided} mu (vacate, eliminate, relocate), freed {freed} mu (orders verified as carried out)")
                 .format(decided=report["land_decided_mu"], freed=report["land_freed_mu"]))
    lines.append(_("progress against the programme targets:"))
    for name, item in report["progress"].items():
        percent = "n/a" if item["percent"] is None else f"{item['percent']:.2f} %"
        lines.append("  " + _("{name}: {value} of {target} ({percent})").format(
            name=tr.label("progress", name), value=item["value"], target=item["target"], percent=percent))
    for year, item in report.get("evaluation", {}).items():
        classes = "; ".join(f"{tr.label('population', pop)} " + ", ".join(f"{k} {v}" for k, v in counts_.items())
                            for pop, counts_ in item["classes"].items())
        surcharge = ", ".join(_("{level} yuan/kWh: {count}").format(level=k, count=v)
                              for k, v in item["surcharge_yuan_per_kwh"].items()) or _("none")
        lines.append(_("mu-average {year}: {classes}; surcharges: {surcharges}").format(
            year=year, classes=classes, surcharges=surcharge))
    lines.append(_("by industry:"))
    for industry, items in report["by_industry"].items():
        lines.append(f"  {tr.label('industry', industry):<20}" + counts(items))
    lines.append(_("by district:"))
    for district, items in report["by_district"].items():
        lines.append(f"  {tr.label('district', district):<20}" + counts(items))
    return "\n".join(lines)


def _key(tr: Translator, key: str) -> str:
    """`list/action` for people: the identifiers in English (as in the JSON), names in Chinese."""
    if tr.lang == "en":
        return key
    listed, _, action = key.partition("/")
    action, _, status = action.partition(" (")
    shown = f"{tr.list_name(None if listed == 'unlisted' else listed)}/{tr.route(action)}"
    return shown + (f" ({tr.label('status', status.rstrip(')'))})" if status else "")
