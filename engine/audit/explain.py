"""Why was this decided? `explain(engine, events, record_id)` for a finding, a decision or a data gap.

Record the facts that mattered, not every step (OPA's lesson): for a finding, the rule and
its version, the condition with the values of every name it reads (re-evaluated against the
scope rebuilt from the record, the evidence events and the registration in force at that
time), the corrections applied, the evidence events and the legal basis. For a decision, the
decision rule (trigger, list, route, deadline), the evidence findings (each briefly
explained) and events, the order it supersedes, and an amount's computation (base × share: the
parcel's field and the parameter). For a data gap, the rule, the evidence events, the reason,
the inputs the event lacks and what the engine would need to judge it (structured, so that the
text can say it in either language), and the value measured if any.

The records come from a replay of the event log with the same configuration; when the
auditor also has the log (JSONL or store), the logged record is compared with the replay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from engine.i18n import Message, Translator, translator
from engine.judge.expressions import names, parse
from engine.judge.rulepacks import Rule
from engine.judge.thresholds import benchmark_ratio
from engine.normalise.readings import epoch_of
from engine.pipeline import Engine
from engine.records import DataGap, Decision, Finding


class NotFound(LookupError):
    """No finding, decision or data gap with that id in the replay (`text`: the sentence as a
    Message; str(): English)."""

    def __init__(self, text: Message) -> None:
        super().__init__(str(text))
        self.text = text


def _lookup(scope: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = scope
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part)
        else:
            return None
    return value


def _values(texts: Iterable[str | None], scope: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for text in texts:
        if not text:
            continue
        for path in names(parse(text)):
            key = ".".join(path)
            if key not in out:
                out[key] = _lookup(scope, path)
    return out


def _scan(events: Iterable[Any], wanted: set[str], enterprise: str, parcel: str | None = None
          ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Evidence events by id, the enterprise's registrations in input order, and the events about
    `parcel` (any holder's) in input order."""
    found: dict[str, dict[str, Any]] = {}
    registrations: list[dict[str, Any]] = []
    about: list[dict[str, Any]] = []
    for item in events:
        raw = getattr(item, "text", item)
        try:
            event = orjson.loads(raw) if isinstance(raw, (bytes, str)) else raw
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("id") in wanted and event["id"] not in found:
            found[event["id"]] = event
        if event.get("type") == "enterprise.registered" and event.get("subject") == enterprise:
            registrations.append(event)
        data = event.get("data")
        if parcel is not None and isinstance(data, dict) and data.get("parcel") == parcel:
            about.append(event)
    return found, registrations, about


def _registration_at(registrations: list[dict[str, Any]], time: str) -> dict[str, Any] | None:
    at = epoch_of(time)
    chosen = None
    for event in registrations:
        if epoch_of(event["time"]) <= at:
            chosen = event
    return chosen["data"] if chosen else None


def _rule(engine: Engine, rule_id: str, version: int) -> tuple[Rule | None, dict[str, Any]]:
    """The judging rule of a finding or data gap, and its summary (`loaded: False` when this
    engine's rule set lacks that version)."""
    rule = next((r for r in engine.rules if r.id == rule_id and r.version == version), None)
    if rule is None:
        return None, {"id": rule_id, "version": version, "loaded": False}
    return rule, {"id": rule.id, "version": rule.version, "title": rule.title_en, "plugin": rule.plugin,
                  "valid_from": rule.valid_from, "valid_until": rule.valid_until, "verified": rule.verified,
                  "severity": rule.severity}


def _scope(engine: Engine, rule: Rule, record: Finding | DataGap, first: Mapping[str, Any],
           registration: Mapping[str, Any] | None, judged: Any, measured: Any) -> dict[str, Any]:
    """The scope `rule` saw, rebuilt from the record, its first evidence event and the registration."""
    event = {"type": first.get("type"), "time": record.time, "subject": record.enterprise,
             **({"id": first["id"]} if "id" in first else {})}
    parcel = engine.parcels.get(record.enterprise, record.parcel) if record.parcel else None  # as the replay ended
    return engine.judge.scope(rule, event, first.get("data", {}), registration, judged, measured, parcel)


def _evidence(ids: Iterable[str], evidence: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    ids = list(ids)
    return {"events": [{"id": e["id"], "type": e["type"], "time": e["time"], "data": e.get("data")}
                       for e in (evidence[i] for i in ids if i in evidence)],
            "missing": [i for i in ids if i not in evidence]}


def _head(engine: Engine, kind: str, record: Finding | DataGap) -> tuple[Rule | None, dict[str, Any]]:
    """The rule of a finding or data gap (None when this rule set lacks it) and the explanation's
    first fields: the record's kind, id, enterprise, time, rule set and the rule's summary."""
    rule, summary = _rule(engine, record.rule, record.rule_version)
    return rule, {"record": kind, "id": record.id, "enterprise": record.enterprise, "time": record.time,
                  "ruleset": record.ruleset, "rule": summary}


def explain_finding(engine: Engine, finding: Finding, evidence: Mapping[str, dict[str, Any]],
                    registrations: list[dict[str, Any]]) -> dict[str, Any]:
    rule, out = _head(engine, "finding", finding)
    record = finding.to_dict()
    events = [evidence[i] for i in finding.event if i in evidence]
    first: dict[str, Any] = events[0] if events else {"type": "", "data": {}}
    registration = _registration_at(registrations, finding.time)
    if rule is not None:
        scope = _scope(engine, rule, finding, first, registration, finding.judged, (finding.measured or {}).get("value"))
        out["condition"] = {"text": rule.condition_text, "measure": rule.measure_text,
                            "values": _values((rule.measure_text, rule.condition_text), scope),
                            "holds": rule.condition(scope) is True}
        if registration is not None and rule.windows is not None:
            out["facility"] = rule.facility(registration.get("eia_approved_on"))
    out.update(pollutant=finding.pollutant, measured=record["measured"], judged=finding.judged, limit=record["limit"],
               corrections=record["corrections"], basis=record["basis"], evidence=_evidence(finding.event, evidence))
    return out


def _gap_inputs(engine: Engine, rule: Rule, gap: DataGap, events: list[dict[str, Any]],
                registration: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the event(s) lacked for `rule` and what the engine needs, by reason: `inputs` (the
    missing fields, as paths into the event: `data.o2_percent`...) and the reason's own facts."""
    first: dict[str, Any] = events[0] if events else {"type": "", "data": {}}
    data: Mapping[str, Any] = first.get("data") or {}
    out: dict[str, Any] = {"inputs": []}
    if gap.reason == "o2_missing":
        process = data.get("process")
        out.update(inputs=["data.o2_percent"], process=process, o2_reference_percent=rule.o2_reference.get(process or ""),
                   events_without=[e["id"] for e in events if (e.get("data") or {}).get("o2_percent") is None])
    elif gap.reason == "benchmark_inputs_missing" and rule.benchmark is not None:
        # the inputs' own fault, else the judge's (a corrected value past the float range), as it wrote it
        cause = benchmark_ratio(rule, data)[1].get("reason") or gap.detail.partition(": ")[2] or None
        out.update(inputs=[f"data.{k}" for k in ("volume_m3", "production") if data.get(k) is None], cause=cause,
                   values={"data.volume_m3": data.get("volume_m3"), "data.production": data.get("production")},
                   benchmark={"unit": rule.benchmark_unit, "categories": sorted(rule.benchmark)})
    elif gap.reason == "too_few_values":
        out.update(values=len(gap.event), minimum=engine.minimums.get(gap.period))
    elif gap.reason == "figure_missing" and rule.data_gap is not None and not gap.detail.startswith("the limit "):
        scope = _scope(engine, rule, gap, first, registration, None, None)
        values = _values((rule.data_gap.when_text,), scope)
        out.update(inputs=[k for k, v in values.items() if v is None and k.startswith("data.")],
                   when={"text": rule.data_gap.when_text, "values": values, "holds": rule.data_gap.when(scope) is True})
    elif gap.reason in ("figure_out_of_range", "figure_missing"):  # the measure or the limit gave no number
        scope = _scope(engine, rule, gap, first, registration, None, None)
        texts = (rule.measure_text, rule.limit_from[1] if rule.limit_from is not None else None)
        out.update(expressions=[text for text in texts if text],
                   values={k: _plain(v) for k, v in _values(texts, scope).items()})
    return out


def _plain(value: Any) -> Any:
    """A value for JSON: a float past the float range as its name (`inf`, `-inf`, `nan`), not null."""
    return repr(value) if isinstance(value, float) and not math.isfinite(value) else value


def explain_gap(engine: Engine, gap: DataGap, evidence: Mapping[str, dict[str, Any]],
                registrations: list[dict[str, Any]]) -> dict[str, Any]:
    """A data gap: the rule, the reason, what the evidence events lacked (`gap`) and the events."""
    rule, out = _head(engine, "data_gap", gap)
    record = gap.to_dict()
    if gap.parcel is not None:
        out["parcel"] = gap.parcel
    events = [evidence[i] for i in gap.event if i in evidence]
    gap_facts: dict[str, Any] = {"reason": gap.reason, "detail": gap.detail}
    if rule is not None:
        gap_facts.update(_gap_inputs(engine, rule, gap, events, _registration_at(registrations, gap.time)))
    out.update(pollutant=gap.pollutant, period=gap.period, measured=record["measured"], basis=record["basis"],
               gap=gap_facts, evidence=_evidence(gap.event, evidence))
    return out


def _amount(decision: Decision, parcel_events: list[dict[str, Any]]) -> dict[str, Any]:
    """A decision's amount as computed: base × share = yuan, the parcel's field the base came from
    and the last event about the parcel, up to the decision, that gave that figure."""
    amount = decision.to_dict()["amount"]
    field = str(amount.get("base", "")).removeprefix("parcel.")
    path = tuple(field.split("."))
    at = epoch_of(decision.time)
    source = None
    for event in parcel_events:
        if epoch_of(event["time"]) <= at and _lookup(event.get("data") or {}, path) == amount.get("base_yuan"):
            source = {"id": event["id"], "type": event["type"], "time": event["time"]}
    return {**amount, "parcel": decision.parcel, "field": field, "source": source}


def explain_decision(engine: Engine, decision: Decision, findings: Mapping[str, Finding], decisions: Mapping[str, Decision],
                     evidence: Mapping[str, dict[str, Any]], registrations: list[dict[str, Any]],
                     parcel_events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rule = next((r for r in engine.decision_rules if r.id == decision.rule), None)
    record = decision.to_dict()
    out: dict[str, Any] = {"record": "decision", "id": decision.id, "enterprise": decision.enterprise, "time": decision.time,
                           "list": decision.list, "action": decision.action, "deadline": decision.deadline,
                           "basis": record["basis"], "ruleset": decision.ruleset}
    if decision.parcel is not None:
        out["parcel"] = decision.parcel
    if decision.amount is not None:
        out["amount"] = _amount(decision, parcel_events or [])
    if rule is None:
        out["rule"] = {"id": decision.rule, "version": decision.rule_version, "loaded": False}
    else:
        trigger: dict[str, Any] = {"count": rule.count,
                                   "within_days": rule.within / 86400.0 if rule.within is not None else None,
                                   "findings": {"categories": sorted(rule.categories) if rule.categories else None,
                                                "rules": list(rule.prefixes) if rule.prefixes else None,
                                                "plugins": sorted(rule.plugins) if rule.plugins else None},
                                   "registration": rule.on_registration, "kind": rule.kind}
        if rule.kind == "watch":
            trigger.update(deadline={"from": ".".join(rule.deadline_from or ()), "years": rule.deadline_years,
                                     "days": rule.deadline_offset_days},
                           events=sorted(rule.event_types or ()), unless=sorted(rule.unless_types or ()),
                           unless_where=rule.unless_text, when_due=rule.when_due_text)
        elif rule.kind == "decisions":
            trigger.update(source=rule.decision_source, lists=sorted(rule.decision_lists),
                           classes=sorted(rule.decision_classes))
        if rule.where_text:
            scope = {"enterprise": _registration_at(registrations, decision.time), "params": rule.params}
            trigger["where"] = {"text": rule.where_text, "values": _values((rule.where_text,), scope),
                                "holds": rule.where(scope) is True if rule.where is not None else None}
        out["rule"] = {"id": rule.id, "version": rule.version, "title": rule.title, "plugin": rule.plugin,
                       "deadline_days": rule.deadline_days, "trigger": trigger}
    if decision.supersedes:
        earlier = decisions.get(decision.supersedes)
        out["supersedes"] = {"id": decision.supersedes, **({"action": earlier.action, "time": earlier.time,
                                                            "deadline": earlier.deadline} if earlier else {})}
        out["escalation"] = ("the order's deadline passed without a passing verification" if not decision.events
                             else "a failing inspection while the order was open")
    out["evidence"] = {
        "findings": [{"id": f, **({"rule": findings[f].rule, "rule_version": findings[f].rule_version, "time": findings[f].time,
                                   "judged": findings[f].judged, "limit": dict(findings[f].limit) if findings[f].limit else None,
                                   "basis": dict(findings[f].basis)} if f in findings else {"missing": True})}
                     for f in decision.findings],
        "events": [{"id": e, **({"type": evidence[e]["type"], "time": evidence[e]["time"]} if e in evidence else {"missing": True})}
                   for e in decision.events],
    }
    return out


def explain(engine: Engine, lines: Any, record_id: str, as_of: str | None = None) -> dict[str, Any]:
    """Replay `lines` (a function giving a fresh iterable of input lines) and explain the record
    `record_id` (a finding, a decision or a data gap). NotFound when the replay makes none with
    that id; it says so when the id is an input event's."""
    findings: dict[str, Finding] = {}
    decisions: dict[str, Decision] = {}
    target: Finding | Decision | DataGap | None = None
    for record in engine.run_batch(lines(), as_of=as_of):
        if isinstance(record, Finding):
            findings[record.id] = record
        elif isinstance(record, Decision):
            decisions[record.id] = record
        if getattr(record, "id", None) == record_id and target is None:
            target = record  # type: ignore[assignment]
    if target is None:
        event = _scan(lines(), {record_id}, "")[0].get(record_id)
        if event is not None:
            raise NotFound(Message("{id} is an input event ({type}), not a record: explain takes the id of a finding, "
                                   "a decision or a data gap", id=repr(record_id), type=event.get("type")))
        raise NotFound(Message("no finding, decision or data gap {id} in the replay of this log with rule set {ruleset}",
                               id=repr(record_id), ruleset=engine.ruleset))
    wanted = set(target.events) if isinstance(target, Decision) else set(target.event)
    if isinstance(target, Decision):
        for fid in target.findings:
            if fid in findings:
                wanted.update(findings[fid].event)
    parcel = target.parcel if isinstance(target, Decision) and target.amount is not None else None
    evidence, registrations, parcel_events = _scan(lines(), wanted, target.enterprise, parcel)
    if isinstance(target, Finding):
        out = explain_finding(engine, target, evidence, registrations)
    elif isinstance(target, DataGap):
        out = explain_gap(engine, target, evidence, registrations)
    else:
        out = explain_decision(engine, target, findings, decisions, evidence, registrations, parcel_events)
    out["replayed"] = target.to_dict()
    return out


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _gap_text(report: Mapping[str, Any], tr: Translator) -> list[str]:
    """The lines of a data gap's explanation: reason, what is missing, what would let the engine
    judge it, the value measured, the evidence events."""
    _ = tr.gettext
    gap = report["gap"]
    reason = gap["reason"]
    lines = [_("reason: {reason} — {words}").format(reason=reason, words=tr.name("reason", reason))]
    if tr.lang == "en" and gap.get("detail"):
        lines.append("  " + _("detail: {text}").format(text=gap["detail"]))
    inputs = ", ".join(gap.get("inputs") or []) or "—"
    if reason == "o2_missing" and "o2_reference_percent" in gap:
        lines.append("  " + _("missing: {inputs}: the limit is referenced to {reference} % O2 for process {process} "
                              "and the reading carries no O2").format(
            inputs=inputs, reference=_json(gap["o2_reference_percent"]), process=gap.get("process") or "—"))
        lines.append("  " + _("to judge it the engine needs the O2 content measured with the value (o2_percent), "
                              "to correct the value to {reference} % O2").format(reference=_json(gap["o2_reference_percent"])))
    elif reason == "benchmark_inputs_missing" and "benchmark" in gap:
        if gap.get("inputs"):
            lines.append("  " + _("missing: {inputs}: the daily benchmark-volume correction needs the day's discharge "
                                  "volume and production").format(inputs=inputs))
        else:
            lines.append("  " + _("the benchmark-volume correction cannot be made: {cause}").format(cause=gap.get("cause")))
        for key, value in gap["values"].items():
            lines.append(f"    {key} = {_json(value)}")
        lines.append("  " + _("to judge it the engine needs the day's discharge volume (volume_m3) and production "
                              "(quantity, unit and category: one of {categories}; benchmark volume in {unit})").format(
            categories=", ".join(gap["benchmark"]["categories"]), unit=gap["benchmark"]["unit"]))
    elif reason == "too_few_values" and "minimum" in gap:
        period = {"hour": _("hourly"), "day": _("daily")}.get(report["period"], report["period"])
        lines.append("  " + _("missing: valid values: the {period} mean has {values}, the authority's minimum is {minimum}").format(
            period=period, values=gap["values"], minimum=_json(gap["minimum"])))
        lines.append("  " + _("to judge it the engine needs a {period} mean of at least {minimum} valid values").format(
            minimum=_json(gap["minimum"]), period=period))
    elif reason == "figure_missing" and "when" in gap:
        lines.append("  " + (_("missing: {inputs} (parcel {parcel})").format(inputs=inputs, parcel=report["parcel"])
                             if report.get("parcel") else _("missing: {inputs}").format(inputs=inputs)))
        lines.append("  " + _("gap condition: {text}").format(text=gap["when"]["text"]) + "  ("
                     + (_("holds") if gap["when"]["holds"] else _("DOES NOT HOLD on re-evaluation")) + ")")
        for key, value in gap["when"]["values"].items():
            lines.append(f"    {key} = {_json(value)}")
        lines.append("  " + _("to judge it the engine needs the figure(s) {inputs} in the event").format(inputs=inputs))
    elif "expressions" in gap:  # figure_out_of_range, or a limit that gave no number
        lines.append("  " + _("no finite number from: {texts}").format(texts="; ".join(gap["expressions"])))
        for key, value in gap["values"].items():
            lines.append(f"    {key} = {_json(value)}")
        lines.append("  " + _("to judge it the engine needs figures that give a finite number (a divisor this small "
                              "is likely an error of unit or entry)"))
    lines.append(_("measured {measured}").format(measured=_json(report.get("measured"))))
    for event in report["evidence"]["events"]:
        lines.append("  " + _("evidence event {id} {type} {time} {data}").format(
            id=event["id"], type=event["type"], time=event["time"], data=_json(event["data"])))
    for missing in report["evidence"]["missing"]:
        lines.append("  " + _("evidence event {id}").format(id=missing) + " " + _("(missing)"))
    return lines


def explain_text(report: Mapping[str, Any], lang: str = "en", name: str = "") -> str:
    """A short human reading of `explain`'s result in `lang`: plain text, values as JSON (never a
    Python repr); `name` is the enterprise's registered name, shown beside its code."""
    tr = translator(lang)
    _ = tr.gettext
    rule = report["rule"]
    who = report["enterprise"] + (f" {name}" if name else "")
    lines = [_("{record} {id}  enterprise {enterprise}  time {time}").format(
        record=tr.label("record", report["record"]), id=report["id"], enterprise=who, time=report["time"]),
        _("rule {id} version {version}").format(id=rule["id"], version=rule["version"])
        + (f" — {rule.get('title')}" if rule.get("title") else "")
        + ("" if rule.get("loaded", True) else "  " + _("(NOT in this engine's rule set)"))]
    if rule.get("valid_from") or rule.get("valid_until"):
        lines.append("  " + _("in force {start} to {end}").format(start=rule.get("valid_from") or "…", end=rule.get("valid_until") or "…"))
    basis = report.get("basis") or {}
    lines.append(_("basis: {basis}").format(basis=", ".join(
        str(v) for v in (basis.get("standard"), basis.get("table"), basis.get("clause")) if v) if lang == "en" else tr.basis(basis)))
    if report["record"] == "data_gap":
        lines.extend(_gap_text(report, tr))
    elif report["record"] == "finding":
        condition = report.get("condition")
        if condition:
            if condition.get("measure"):
                lines.append(_("measure: {text}").format(text=condition["measure"]))
            lines.append(_("condition: {text}").format(text=condition["text"]) + "  ("
                         + (_("holds") if condition["holds"] else _("DOES NOT HOLD on re-evaluation")) + ")")
            for key, value in condition["values"].items():
                lines.append(f"  {key} = {_json(value)}")
        lines.append(_("measured {measured}  judged {judged}  limit {limit}").format(
            measured=_json(report.get("measured")), judged=_json(report.get("judged")), limit=_json(report.get("limit"))))
        for correction in report.get("corrections", []):
            lines.append("  " + _("correction: {items}").format(items=", ".join(f"{k}={_json(v)}" for k, v in correction.items())))
        for event in report["evidence"]["events"]:
            lines.append("  " + _("evidence event {id} {type} {time} {data}").format(
                id=event["id"], type=event["type"], time=event["time"], data=_json(event["data"])))
    else:
        lines.append(_("decision: list {list}  action {action}").format(list=tr.label("list", report["list"]),
                                                                       action=tr.label("route", report["action"]))
                     + ("  " + _("deadline {deadline}").format(deadline=report["deadline"]) if report.get("deadline") else ""))
        trigger = rule.get("trigger")
        if trigger and trigger.get("kind") == "watch":
            deadline = trigger["deadline"]
            lines.append("  " + _("trigger: a watch from {events}, due at {path} plus {years} year(s) and {days} day(s), "
                                  "unless {unless}").format(events=", ".join(trigger["events"]), path=deadline["from"],
                                                            years=deadline["years"], days=_json(deadline["days"]),
                                                            unless=", ".join(trigger["unless"]) or "—"))
            if trigger.get("when_due"):
                lines.append("  " + _("decided if, when due: {text}").format(text=trigger["when_due"]))
        elif trigger and trigger.get("kind") == "decisions":
            lines.append("  " + _("trigger: decisions of the {source}: lists {lists}, classes {classes}, per parcel held").format(
                source=trigger["source"], lists=", ".join(trigger["lists"]) or "—", classes=", ".join(trigger["classes"]) or "—"))
        elif trigger:
            lines.append("  " + _("trigger: {count} finding(s)").format(count=trigger["count"])
                         + (" " + _("within {days} days").format(days=trigger["within_days"]) if trigger["within_days"] else "")
                         + (" " + _("(registration)") if trigger["registration"] else ""))
            if "where" in trigger:
                lines.append("  " + _("where {text}: {values}").format(text=trigger["where"]["text"], values=", ".join(
                    f"{k}={_json(v)}" for k, v in trigger["where"]["values"].items())))
        amount = report.get("amount")
        if amount:
            lines.append("  " + _("amount: {base_yuan} yuan ({field} of parcel {parcel}) × share {share} (parameter {parameter}) "
                                  "= {yuan} yuan").format(
                base_yuan=tr.money(amount.get("base_yuan")), field=amount.get("field"), parcel=amount.get("parcel"),
                share=_json(amount.get("share")), parameter=amount.get("parameter") or "—", yuan=tr.money(amount.get("yuan"))))
            if amount.get("source"):
                source = amount["source"]
                lines.append("    " + _("{field} from event {id} {type} {time}").format(
                    field=amount["field"], id=source["id"], type=source["type"], time=source["time"]))
        if "supersedes" in report:
            reasons = {"the order's deadline passed without a passing verification":
                       _("the order's deadline passed without a passing verification"),
                       "a failing inspection while the order was open": _("a failing inspection while the order was open")}
            lines.append("  " + _("supersedes {id}: {reason}").format(id=report["supersedes"]["id"],
                                                                     reason=reasons.get(report["escalation"], report["escalation"])))
        for f in report["evidence"]["findings"]:
            lines.append("  " + _("evidence finding {id}").format(id=f["id"]) + (
                " " + _("{rule} v{version} {time} judged {judged} limit {limit}").format(
                    rule=f["rule"], version=f["rule_version"], time=f["time"], judged=_json(f["judged"]), limit=_json(f["limit"]))
                if "rule" in f else " " + _("(missing)")))
        for e in report["evidence"]["events"]:
            lines.append("  " + _("evidence event {id}").format(id=e["id"])
                         + (f" {e['type']} {e['time']}" if "type" in e else " " + _("(missing)")))
    logged = report.get("logged")
    if logged is not None:
        lines.append(_("logged record: {verdict}").format(verdict=_("matches the replay") if logged["matches"]
                                                          else _("DIFFERS from the replay in {fields}").format(fields=", ".join(logged["fields"]))))
    return "\n".join(lines)
