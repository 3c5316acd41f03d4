"""Rectification notices: the bureau's written work product, one document per decision, as PDF.

In: `ReportData` (the decisions, findings and registry of a run or a store), an issuing
authority (a YAML file validated by schemas/authority.schema.json; without one, the built-in
example, which marks every page SPECIMEN), a decision id and a language. Out: the notice as HTML
(`notice_html`) and as PDF bytes (`notice_pdf`, WeasyPrint), one template per route:

- `rectify`: 限期整改通知书 (a rectification order with its deadline);
- `close_by_law`: a closure proposal to the people's government with approval authority;
- `eliminate`, `merge_reorganize`, `vacate`, `relocate_to_park`, `transform_upgrade`: notices of
  the route; `classify`: the mu-average evaluation result;
- land decisions (they carry `parcel`; templates extend notice_land.html): `idle_land_fee`,
  `recover_land`, `contract_remedy`, `renew_lease`, `refuse_renewal`, `redevelop_land`, and a
  `rectify` order on a parcel (a standard-land shortfall: notice_land_rectify.html). Each shows
  the parcel as `ReportData.parcels` has it (id, area in mu, use, contract dates, remedies; from
  a store without parcels, the id alone), what was found (the agreed start date and the whole
  years since; the commitments missed, committed and measured; the end of the term), the basis
  the decision cites, and the route. A `proposed` (or withdrawn) decision is addressed to the
  approving government and says it is a proposal, not an order; an approved one names the
  proposal and the approval. No amount or percentage the records do not carry (the idle-land
  fee is "assessed under the article cited", without a figure);
- any other route: a generic notice that shows the decision's fields as they are.

Each names the enterprise and its code, the findings with measured and judged values, limits,
standards and exceedance multiples, the legal basis, the route, the deadline, the issuing
authority and a document number (prefix per route from the authority file, numbered per prefix
and year in the order of the decisions in the log). The date of a notice is the decision's event
time, and the PDF carries no other date: the same input gives the same bytes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from markupsafe import Markup

from engine.i18n import Translator, translator
from engine.normalise.readings import epoch_of
from engine.report.data import ReportData
from engine.report.fonts import FAMILY, font_face
from engine.report.html import PLACEHOLDER, environment, limit_text, multiple, value_text
from engine.validate.schemas import core_validator

LAND_ROUTES = ("idle_land_fee", "recover_land", "contract_remedy", "renew_lease", "refuse_renewal", "redevelop_land")
ROUTES = ("rectify", "close_by_law", "eliminate", "merge_reorganize", "vacate", "relocate_to_park", "transform_upgrade",
          "classify", *LAND_ROUTES)
MAX_AUTHORITY_BYTES = 64 * 1024


class AuthorityError(ValueError):
    """An authority file that cannot be used: says which file and what is wrong where."""


class UnknownDecision(LookupError):
    """No decision with that id in the input."""


def load_authority(path: str | Path | None = None) -> dict[str, Any]:
    """The issuing authority from a YAML file (validated), or the built-in example (a specimen)."""
    if path is None:
        text = resources.files("engine.report").joinpath("notices", "authority.example.yaml").read_text(encoding="utf-8")
        where = "the example authority"
    else:
        where = str(path)
        try:
            if Path(path).stat().st_size > MAX_AUTHORITY_BYTES:
                raise AuthorityError(f"{where}: larger than {MAX_AUTHORITY_BYTES} bytes")
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthorityError(f"{where}: cannot read it: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AuthorityError(f"{where}: not YAML: {exc}") from None
    errors = sorted(core_validator("authority.schema.json").iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        at = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise AuthorityError(f"{where}: {at}: {error.message}")
    return dict(document)


def document_numbers(data: ReportData, authority: Mapping[str, Any], lang: str) -> dict[str, str]:
    """Document numbers of every decision: prefix per route, numbered per prefix and year (of the
    decision's event time) in the order of the decisions in the log, from `first`."""
    spec = authority["document_number"]
    first = int(spec.get("first", 1))
    counters: dict[tuple[str, str], int] = {}
    numbers: dict[str, str] = {}
    for decision in data.decisions:
        prefix = (spec.get("routes") or {}).get(str(decision.get("action")), spec["default"])[lang]
        year = str(decision.get("time") or "")[:4] or "0000"
        counters[(prefix, year)] = counters.get((prefix, year), first - 1) + 1
        number = counters[(prefix, year)]
        numbers[str(decision["id"])] = (f"{prefix}〔{year}〕{number}号" if lang == "zh" else f"{prefix} [{year}] No. {number}")
    return numbers


def _findings_of(data: ReportData, decision: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]],
                 decisions: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    ids = list((decision.get("evidence") or {}).get("findings") or [])
    if not ids and decision.get("supersedes") in decisions:  # an escalation: the order's findings
        ids = list((decisions[decision["supersedes"]].get("evidence") or {}).get("findings") or [])
    return [by_id[i] for i in ids if i in by_id]


def _full_years(start: str, end: str) -> int:
    """Whole years from one local date to another (both as written, YYYY-MM-DD...)."""
    a, b = date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
    years = b.year - a.year
    return years - 1 if (b.month, b.day) < (a.month, a.day) else years


def _commitment_text(tr: Translator, limit: Mapping[str, Any]) -> str:
    """A parcel's commitment as its finding's limit gives it: at least / at most the figure."""
    unit = limit.get("unit")
    if limit.get("min") is not None:
        return tr.gettext("at least {value}").format(value=value_text(tr, limit["min"], unit))
    if limit.get("max") is not None:
        return tr.gettext("at most {value}").format(value=value_text(tr, limit["max"], unit))
    return limit_text(tr, limit)


def _land_context(data: ReportData, decision: Mapping[str, Any], findings: list[Mapping[str, Any]],
                  found: str, tr: Translator) -> dict[str, Any]:
    """What a land notice shows of its parcel: the parcel's record as the engine keeps it
    (`ReportData.parcels`; from a store, none: then only the id the decision names), the
    commitments missed (the decision's findings about the parcel, committed and measured), the
    whole years from the agreed start date to `found` (the time of the decision, or of the proposal
    an approved decision carries out), the holder's latest mu-average class and a contract remedy
    proposed for the parcel (not withdrawn) at or before the decision."""
    pid = str(decision["parcel"])
    record = data.parcels.get(pid) or {}
    contract = record.get("contract") or {}
    start_by = contract.get("start_by")
    missed = [{"time": tr.time(f.get("time")), "title": data.rule(str(f.get("rule"))).title(tr.lang),
               "committed": _commitment_text(tr, f.get("limit") or {}),
               "measured": value_text(tr, (f.get("measured") or {}).get("value"), (f.get("measured") or {}).get("unit")),
               "id": f.get("id")} for f in findings if f.get("parcel") == pid]
    before = [d for d in data.decisions if d.get("parcel") == pid and d.get("enterprise") == decision.get("enterprise")
              and d["id"] != decision["id"] and epoch_of(str(d["time"])) <= epoch_of(str(decision["time"]))]
    remedies = [d for d in before if d.get("action") == "contract_remedy"]
    classes = [d.get("evaluation") or {} for d in data.decisions if d.get("enterprise") == decision.get("enterprise")
               and d.get("evaluation") and epoch_of(str(d["time"])) <= epoch_of(str(decision["time"]))]
    return {
        "id": pid, "known": bool(record),
        "area": tr.number(record.get("area_mu")) if record.get("area_mu") is not None else "—",
        "use": tr.name("use", record["use"]) if record.get("use") else "—",
        "signed_on": tr.date(contract.get("signed_on")), "start_by": tr.date(start_by),
        "complete_by": tr.date(contract.get("complete_by")), "expires_on": tr.date(contract.get("expires_on")),
        "remedies": [tr.name("remedy", r) for r in contract.get("remedies") or []],
        "idle_years": _full_years(str(start_by), found) if start_by else None, "found_on": tr.date(found),
        "missed": missed,
        "latest_class": classes[-1].get("class") if classes else None,
        "latest_class_year": classes[-1].get("year") if classes else None,
        "no_renewal": "no_renewal" in (contract.get("remedies") or []),
        "remedy_proposed": remedies[-1] if remedies and remedies[-1].get("status") != "withdrawn" else None,
        "amount": _amount_text(decision.get("amount"), tr),
    }


def _amount_text(amount: Any, tr: Translator) -> dict[str, str] | None:
    """The decision's `amount` as the notice states it: the sum, its base and the share as a
    percentage (in decimal: 0.2 is 20, never 20.000000000000004); None when the decision has none."""
    if not isinstance(amount, Mapping) or amount.get("yuan") is None:
        return None
    share = amount.get("share")
    percent = tr.number(float(Decimal(str(share)) * 100), 4) if isinstance(share, (int, float)) else "—"
    return {"yuan": tr.money(amount["yuan"]), "base_yuan": tr.money(amount.get("base_yuan")), "percent": percent}


def notice_context(data: ReportData, decision_id: str, authority: Mapping[str, Any], lang: str) -> dict[str, Any]:
    """Everything a notice template shows for one decision."""
    tr = translator(lang)
    decisions = {str(d["id"]): d for d in data.decisions}
    decision = decisions.get(decision_id)
    if decision is None:
        raise UnknownDecision(f"no decision {decision_id!r} in this input ({len(decisions)} decisions)")
    by_id = {str(f["id"]): f for f in data.findings}
    numbers = document_numbers(data, authority, tr.lang)
    code = str(decision.get("enterprise"))
    registration = data.registry.get(code) or {}
    rule = data.rule(str(decision.get("rule")))
    rows = []
    for finding in _findings_of(data, decision, by_id, decisions):
        limit = finding.get("limit") or {}
        measured = finding.get("measured") or {}
        basis = finding.get("basis") or {}
        rows.append({"time": tr.time(finding.get("time")), "title": data.rule(str(finding.get("rule"))).title(tr.lang),
                     "pollutant": tr.pollutant(finding.get("pollutant")) if finding.get("pollutant") else "—",
                     "measured": value_text(tr, measured.get("value"), measured.get("unit")),
                     "judged": value_text(tr, finding.get("judged"), limit.get("unit")),
                     "limit": limit_text(tr, limit), "multiple": tr.number(multiple(finding)),
                     "standard": tr.basis({k: basis.get(k) for k in ("standard", "table") if basis.get(k)}),
                     "verified": finding.get("verified", True), "id": finding.get("id")})
    earlier = decisions.get(str(decision.get("supersedes"))) if decision.get("supersedes") else None
    reason = ""
    if earlier is not None:
        reason = tr.gettext("an inspection failed while the order was open") if (decision.get("evidence") or {}).get("events") \
            else tr.gettext("the deadline passed without a passing verification")
    extra = {k: v for k, v in decision.items() if k not in (
        "record", "id", "rule", "rule_version", "enterprise", "time", "list", "action", "deadline", "basis", "evidence",
        "supersedes", "ruleset", "evaluation", "surcharge_yuan_per_kwh", "prev", "hash", "status", "amount")}
    status = str(decision.get("status") or "")
    answered = bool(earlier and earlier.get("status") == "proposed" and status in ("effective", "withdrawn"))
    found = str(earlier["time"] if answered and earlier else decision["time"])  # a proposal's facts
    land = _land_context(data, decision, _findings_of(data, decision, by_id, decisions), found, tr) \
        if isinstance(decision.get("parcel"), str) else None
    return {
        "land": land, "proposal": status in ("proposed", "withdrawn"), "answered": answered,
        "answer": str((decision.get("basis") or {}).get("note") or "") if answered else "",
        "earlier_route": tr.route(str(earlier.get("action"))) if earlier else "",
        "remedy_number": numbers.get(str(land["remedy_proposed"]["id"]), "") if land and land["remedy_proposed"] else "",
        "tr": tr, "_": tr.gettext, "lang": tr.lang, "authority": authority, "name": authority["name"][tr.lang],
        "number": numbers[decision_id], "decision": decision, "code": code,
        "enterprise": registration.get("name") or tr.gettext("(unregistered enterprise)"),
        "registration": registration, "district": tr.name("district", registration.get("district") or "unregistered"),
        "industry": tr.name("industry", registration.get("industry") or "unregistered"),
        "list": tr.list_name(decision.get("list")), "route": tr.route(str(decision.get("action"))),
        "rule_title": rule.title(tr.lang), "basis": tr.basis(decision.get("basis")),
        "escalation_basis": tr.basis(rule.escalation) if rule.escalation else "",
        "deadline": tr.date(decision.get("deadline")) if decision.get("deadline") else "",
        "date": tr.date(decision.get("time")), "findings": rows,
        "earlier": earlier, "earlier_number": numbers.get(str(earlier["id"])) if earlier else "",
        "earlier_date": tr.date(earlier.get("time")) if earlier else "", "reason": reason,
        "earlier_deadline": tr.date(earlier.get("deadline")) if earlier and earlier.get("deadline") else "",
        "evaluation": decision.get("evaluation") or {}, "surcharge": decision.get("surcharge_yuan_per_kwh"),
        "status": tr.name("status", decision["status"]) if decision.get("status") else "",
        "approver": (authority.get("approver") or {}).get(tr.lang, ""),
        "appeal": {k: v[tr.lang] for k, v in (authority.get("appeal") or {}).items()},
        "specimen": bool(authority.get("specimen")), "extra": extra, "ruleset": decision.get("ruleset", data.ruleset),
        "family": FAMILY, "font_css": Markup(PLACEHOLDER),
    }


def notice_html(data: ReportData, decision_id: str, authority: Mapping[str, Any], lang: str = "zh") -> str:
    """The notice of one decision as an HTML document (print CSS, the font embedded)."""
    context = notice_context(data, decision_id, authority, lang)
    action = str(context["decision"].get("action"))
    if context["land"] is not None and action == "rectify":  # a standard-land shortfall: an order on the parcel
        action = "land_rectify"
    name = f"notice_{action}.html" if action in ROUTES or action == "land_rectify" else "notice_generic.html"
    html = environment().get_template(name).render(**context)
    return html.replace(PLACEHOLDER, font_face(html), 1)


@contextlib.contextmanager
def _source_date(epoch: int) -> Iterator[None]:
    """SOURCE_DATE_EPOCH for the duration of a PDF (font subsetting stamps no wall-clock time)."""
    before = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        yield
    finally:
        if before is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = before


def notice_pdf(data: ReportData, decision_id: str, authority: Mapping[str, Any], lang: str = "zh") -> bytes:
    """The notice as PDF bytes (WeasyPrint): the same input gives the same bytes."""
    from weasyprint import HTML  # imported when a PDF is made: loading Pango takes a moment

    html = notice_html(data, decision_id, authority, lang)
    decision = next(d for d in data.decisions if str(d["id"]) == decision_id)
    with _source_date(int(epoch_of(str(decision["time"])))):
        pdf = HTML(string=html).write_pdf()
    assert pdf is not None
    return bytes(pdf)
