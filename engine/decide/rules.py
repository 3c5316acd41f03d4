"""Decision rules: the `decisions:` of rule packs (and the programme policy), compiled once.

A decision rule says which findings, events or registrations put an enterprise on a list,
with which route (action), deadline and legal basis, and whether its decisions need the
approval of the people's government; thresholds and deadlines are parameters (a pack's own,
or the programme policy's: `programme` parameters are visible to every pack's decisions).

Two trigger kinds serve land (docs/land.md): a **watch** (`events` with a `deadline` taken
from the event's data, e.g. a parcel's agreed start date plus one year: the decision is made
when the deadline passes, unless an `unless` event of the parcel comes first, and only if
`when_due` then holds) and **decisions** (a decision the layer makes, by its list or its
mu-average class, decides for each parcel the enterprise holds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from engine.judge.expressions import Compiled, ExpressionError, compile_expression, names, parse
from engine.judge.rulepacks import RulePack, RulePackError
from engine.records import Finding

DAY = 86400.0
PROGRAMME = "programme"  # the policy pack (engine/decide/policy/programme.yaml)
CLOSE = "close_by_law"
# the names conditions may read, by where they are evaluated
REGISTRATION_ROOTS = frozenset({"enterprise", "params"})
EVENT_ROOTS = frozenset({"enterprise", "params", "data", "parcel"})
DUE_ROOTS = frozenset({"enterprise", "params", "parcel", "evaluation"})


@dataclass(frozen=True, slots=True)
class DecisionRule:
    """One compiled decision rule."""

    id: str
    version: int
    plugin: str
    title: str
    categories: frozenset[str] | None
    prefixes: tuple[str, ...] | None
    plugins: frozenset[str] | None
    count: int
    within: float | None
    on_registration: bool
    event_types: frozenset[str] | None  # an `events` trigger: any event of these types (with `where`)
    where_text: str | None
    where: Compiled | None = field(repr=False, compare=False)
    list: str | None
    action: str
    deadline_days: float | None
    escalation_basis: Mapping[str, str] | None
    basis: Mapping[str, str]
    params: Mapping[str, Any] = field(repr=False, compare=False)
    approval: bool = False  # decisions are proposals until an `approval.recorded`
    escalation_action: str = CLOSE  # the proposal a missed deadline leads to
    # a watch: deadline = the date at `deadline_from` (a path into the event) + years + days
    deadline_from: tuple[str, ...] | None = None
    deadline_years: int = 0
    deadline_offset_days: float = 0.0
    unless_types: frozenset[str] | None = None
    unless_text: str | None = None
    unless: Compiled | None = field(default=None, repr=False, compare=False)
    when_due_text: str | None = None
    when_due: Compiled | None = field(default=None, repr=False, compare=False)
    # a decisions trigger: the source ("rules" or "evaluation"), lists and mu-average classes
    decision_source: str | None = None
    decision_lists: frozenset[str] = frozenset()
    decision_classes: frozenset[str] = frozenset()
    examples: tuple[Mapping[str, Any], ...] = field(default=(), repr=False, compare=False)
    # `amount`: the path into the parcel's record (without `parcel.`), the share and the parameter naming it
    amount_of: tuple[str, ...] | None = None
    amount_share: float | None = None
    amount_parameter: str | None = None

    @property
    def kind(self) -> str:
        """What triggers the rule: "findings", "events", "registration", "watch" or "decisions"."""
        if self.on_registration:
            return "registration"
        if self.decision_source is not None:
            return "decisions"
        if self.deadline_from is not None:
            return "watch"
        return "events" if self.event_types is not None else "findings"

    def counts(self, finding: Finding, category: str) -> bool:
        """Whether a finding is evidence for this rule. Reads only the finding's rule (and its
        category) and plugin: the decision layer asks once per pair and keeps the answer."""
        if self.categories is not None and category not in self.categories:
            return False
        if self.plugins is not None and finding.plugin not in self.plugins:
            return False
        if self.prefixes is not None and not finding.rule.startswith(self.prefixes):
            return False
        return True


FEN = Decimal("0.01")
_DIGITS = 400  # any float to the fen (the largest has 309 digits before the point; a share is at most 1)


def amount_of(rule: DecisionRule, record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The `amount` of `rule`'s decision about the parcel whose record is `record`: {yuan (the
    share of the figure, rounded half up to the fen, computed in decimal so no binary noise gets
    in), base (the path read), base_yuan (the figure), share, parameter (its name, or null for a
    number in the rule)}; None when the rule has no `amount`, there is no record, or the record
    gives no number at the path (never invented)."""
    if rule.amount_of is None or rule.amount_share is None or record is None:
        return None
    value: Any = record
    for part in rule.amount_of:
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    with localcontext(prec=_DIGITS):
        yuan = (Decimal(str(value)) * Decimal(str(rule.amount_share))).quantize(FEN, rounding=ROUND_HALF_UP)
    return {"yuan": float(yuan), "base": ".".join(("parcel", *rule.amount_of)), "base_yuan": value,
            "share": rule.amount_share, "parameter": rule.amount_parameter}


@dataclass(frozen=True, slots=True)
class InactiveDecision:
    id: str
    plugin: str
    reason: str


def _as_set(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


def pack_values(document: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A pack's parameter values after the authority's overrides."""
    found = {n: spec["value"] for n, spec in document.get("parameters", {}).items()}
    found.update({k: v for k, v in overrides.get(document["pack"], {}).items() if k in found})
    return found


def programme_parameters(packs: Iterable[RulePack], overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The programme policy's parameter values (deadlines, validity minimums, targets)."""
    return next((pack_values(p.document, overrides or {}) for p in packs if p.document["pack"] == PROGRAMME), {})


ROUTE_DEADLINES = {  # route -> the programme parameter with its deadline (days)
    "eliminate": "eliminate_deadline_days",
    "merge_reorganize": "merge_deadline_days",
    "relocate_to_park": "relocate_deadline_days",
    "transform_upgrade": "transform_deadline_days",
    "vacate": "vacate_deadline_days",
}


def compile_decisions(packs: Iterable[RulePack], parameters: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> tuple[list[DecisionRule], list[InactiveDecision]]:
    """Compile the `decisions:` of every pack, sorted by id; a duplicate id names both plugins."""
    overrides = parameters or {}
    seen: dict[str, str] = {}
    active: list[DecisionRule] = []
    inactive: list[InactiveDecision] = []
    packs = sorted(packs, key=lambda p: p.plugin)
    programme = programme_parameters(packs, overrides)
    for pack in packs:
        document = pack.document
        pack_params = pack_values(document, overrides)
        for spec in document.get("decisions", []):
            if spec["id"] in seen:
                raise RulePackError(f"duplicate decision id {spec['id']!r}: defined by plugin {seen[spec['id']]!r} and by plugin {pack.plugin!r}")
            if not spec["id"].startswith(document["pack"] + "."):
                raise RulePackError(f"{pack.origin}: decision {spec['id']!r} must start with {document['pack'] + '.'!r}")
            seen[spec["id"]] = pack.plugin
            local = {n: p["value"] for n, p in spec.get("parameters", {}).items()}
            missing: list[str] = []

            def resolve(value: Any, what: str) -> Any:
                if value is None or isinstance(value, (int, float)):
                    return value
                for table in (local, pack_params, programme):
                    if value in table:
                        if table[value] is None:
                            missing.append(value)
                        return table[value]
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): {what} names no parameter {value!r}")

            def signed(value: Any, what: str) -> Any:
                if isinstance(value, str) and value.startswith("-"):
                    found = resolve(value[1:], what)
                    return -found if isinstance(found, (int, float)) else found
                return resolve(value, what)

            trigger = spec["trigger"]
            count = resolve(trigger.get("count", 1), "count")
            within = resolve(trigger.get("within_days"), "within_days")
            deadline = resolve(spec.get("deadline_days"), "deadline_days")
            watch = trigger.get("deadline")
            where_text = trigger.get("where")
            unless_spec = trigger.get("unless") or {}

            def compiled(text: str | None, roots: frozenset[str]) -> Compiled | None:
                if not text:
                    return None
                try:
                    expression = compile_expression(text, roots)
                except ExpressionError as exc:
                    raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): {exc}") from None
                for path in names(parse(text)):
                    if path[0] == "params":
                        if len(path) < 2 or path[1] not in pack_params:
                            raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): unknown pack parameter {'.'.join(path)!r}")
                        if pack_params[path[1]] is None:
                            missing.append(path[1])
                return expression

            where = compiled(where_text, EVENT_ROOTS if watch or trigger.get("decisions") else REGISTRATION_ROOTS)
            unless = compiled(unless_spec.get("where"), EVENT_ROOTS)
            when_due = compiled(spec.get("when_due"), DUE_ROOTS)
            years = signed(watch.get("years", 0), "deadline.years") if watch else 0
            days = signed(watch.get("days", 0), "deadline.days") if watch else 0
            if watch and (not trigger.get("events") or spec.get("deadline_days") is not None):
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): a deadline trigger watches `events` and makes "
                                    "its decision at the deadline (no deadline_days)")
            if (unless_spec or spec.get("when_due")) and not watch:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): unless and when_due go with a deadline trigger")
            if years is not None and not float(years).is_integer():
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): deadline.years must be a whole number")
            if spec["action"] == "rectify" and spec.get("deadline_days") is None:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): a rectify order needs deadline_days")
            if spec.get("approval") and spec.get("deadline_days") is not None:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): a decision that needs approval has no deadline "
                                    "(its route starts once approved)")
            if spec.get("deadline_days") is not None and "escalation" not in spec:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): an order with a deadline needs an escalation basis")
            kinds = [k for k in ("findings", "events", "registration", "decisions") if trigger.get(k)]
            if len(kinds) != 1:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): the trigger needs exactly one of findings, "
                                    f"events, registration, decisions (got {', '.join(kinds) or 'none'})")
            chosen = trigger.get("decisions") or {}
            if chosen and not (chosen.get("lists") or chosen.get("classes")):
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): a decisions trigger needs lists or classes")
            if kinds[0] != "findings" and ("count" in trigger or "within_days" in trigger):
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): count and within_days go with a findings trigger")
            findings = trigger.get("findings")
            prefixes = _as_set((findings or {}).get("rules"))
            amount = spec.get("amount")
            share = resolve(amount["share"], "amount.share") if amount else None
            if amount and share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                                                 or not 0 < share <= 1):
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): amount.share must be a number in (0, 1], "
                                    f"got {share!r}")
            if missing:
                inactive.append(InactiveDecision(spec["id"], pack.plugin, "needs parameter " + ", ".join(sorted(set(missing)))))
                continue
            active.append(DecisionRule(
                id=spec["id"], version=spec["version"], plugin=pack.plugin, title=spec["title"]["en"],
                categories=_as_set((findings or {}).get("category")),
                prefixes=tuple(sorted(prefixes)) if prefixes else None,
                plugins=_as_set((findings or {}).get("plugin")),
                count=int(count or 1),
                within=float(within) * DAY if within is not None else None,
                on_registration=bool(trigger.get("registration")),
                event_types=_as_set((trigger.get("events") or {}).get("types")),
                where_text=where_text, where=where,
                list=spec["list"], action=spec["action"],
                deadline_days=float(deadline) if deadline is not None else None,
                escalation_basis=(spec.get("escalation") or {}).get("basis"),
                basis=spec["basis"], params=pack_params, approval=bool(spec.get("approval", False)),
                escalation_action=(spec.get("escalation") or {}).get("action", CLOSE),
                deadline_from=tuple(watch["from"].split(".")) if watch else None,
                deadline_years=int(years or 0), deadline_offset_days=float(days or 0),
                unless_types=_as_set(unless_spec.get("types")), unless_text=unless_spec.get("where"), unless=unless,
                when_due_text=spec.get("when_due"), when_due=when_due,
                decision_source=chosen.get("source"), decision_lists=frozenset(chosen.get("lists", ())),
                decision_classes=frozenset(chosen.get("classes", ())),
                examples=tuple(spec.get("examples", ())),
                amount_of=tuple(amount["of"].split(".")[1:]) if amount else None,
                amount_share=float(share) if share is not None else None,
                amount_parameter=amount["share"] if amount and isinstance(amount["share"], str) else None,
            ))
    active.sort(key=lambda r: r.id)
    inactive.sort(key=lambda r: r.id)
    return active, inactive
