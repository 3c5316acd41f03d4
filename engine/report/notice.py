"""Rectification notices: the bureau's written work product, one document per decision, as PDF.

In: `ReportData` (the decisions, findings and registry of a run or a store), an issuing
authority (a YAML file validated by schemas/authority.schema.json; without one, the built-in
example, which marks every page SPECIMEN), a decision id and a language. Out: the notice as HTML
(`notice_html`) and as PDF bytes (`notice_pdf`, WeasyPrint), one template per route:

- `rectify`: 限期整改通知书 (a rectification order with its deadline);
- `close_by_law`: a closure proposal to the people's government with approval authority;
- `eliminate`, `merge_reorganize`, `vacate`, `relocate_to_park`, `transform_upgrade`: notices of
  the route; `classify`: the mu-average evaluation result; any other route: a generic notice
  that shows the decision's fields as they are.

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
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from markupsafe import Markup

from engine.i18n import translator
from engine.normalise.readings import epoch_of
from engine.report.data import ReportData
from engine.report.fonts import FAMILY, font_face
from engine.report.html import PLACEHOLDER, environment, limit_text, multiple, value_text
from engine.validate.schemas import core_validator

ROUTES = ("rectify", "close_by_law", "eliminate", "merge_reorganize", "vacate", "relocate_to_park", "transform_upgrade",
          "classify")
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
        "supersedes", "ruleset", "evaluation", "surcharge_yuan_per_kwh", "prev", "hash", "status")}
    return {
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
    name = f"notice_{action}.html" if action in ROUTES else "notice_generic.html"
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
