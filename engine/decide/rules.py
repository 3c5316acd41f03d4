"""Decision rules: the `decisions:` of rule packs (and the programme policy), compiled once.

A decision rule says which findings, events or registrations put an enterprise on a list,
with which route (action), deadline and legal basis, and whether its decisions need the
approval of the people's government; thresholds and deadlines are parameters (a pack's own,
or the programme policy's: `programme` parameters are visible to every pack's decisions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.judge.expressions import Compiled, ExpressionError, compile_expression
from engine.judge.rulepacks import RulePack, RulePackError
from engine.records import Finding

DAY = 86400.0
PROGRAMME = "programme"  # the policy pack (engine/decide/policy/programme.yaml)


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

    @property
    def kind(self) -> str:
        """What triggers the rule: "findings", "events" or "registration"."""
        return "registration" if self.on_registration else "events" if self.event_types is not None else "findings"

    def counts(self, finding: Finding, category: str) -> bool:
        """Whether a finding is evidence for this rule."""
        if self.categories is not None and category not in self.categories:
            return False
        if self.plugins is not None and finding.plugin not in self.plugins:
            return False
        if self.prefixes is not None and not finding.rule.startswith(self.prefixes):
            return False
        return True


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

            trigger = spec["trigger"]
            count = resolve(trigger.get("count", 1), "count")
            within = resolve(trigger.get("within_days"), "within_days")
            deadline = resolve(spec.get("deadline_days"), "deadline_days")
            where_text = trigger.get("where")
            try:
                where = compile_expression(where_text, frozenset({"enterprise", "params"})) if where_text else None
            except ExpressionError as exc:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): {exc}") from None
            if spec["action"] == "rectify" and spec.get("deadline_days") is None:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): a rectify order needs deadline_days")
            if spec.get("approval") and spec.get("deadline_days") is not None:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): a decision that needs approval has no deadline "
                                    "(its route starts once approved)")
            if spec.get("deadline_days") is not None and "escalation" not in spec:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): an order with a deadline needs an escalation basis")
            kinds = [k for k in ("findings", "events", "registration") if trigger.get(k)]
            if len(kinds) != 1:
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): the trigger needs exactly one of findings, "
                                    f"events, registration (got {', '.join(kinds) or 'none'})")
            if kinds[0] != "findings" and ("count" in trigger or "within_days" in trigger):
                raise RulePackError(f"{pack.origin} (decision {spec['id']!r}): count and within_days go with a findings trigger")
            findings = trigger.get("findings")
            prefixes = _as_set((findings or {}).get("rules"))
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
            ))
    active.sort(key=lambda r: r.id)
    inactive.sort(key=lambda r: r.id)
    return active, inactive
