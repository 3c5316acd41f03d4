"""Rule packs: YAML data validated against schemas/rulepack.schema.json, compiled once.

A compiled `Rule` carries its match sets (for the index), its closures (condition and
measure, from engine.expressions) and everything a finding must cite (basis, version,
verified). Rules that need a parameter the deploying authority has not set, or an option
that is off, are kept aside as inactive with the reason, so `rectify rules` can show them.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jsonschema
import orjson

from engine.judge.expressions import Compiled, ExpressionError, compile_expression, holds_upward, names, parse
from engine.units import BENCHMARK_UNITS, UNITS
from engine.plugins import RulePackSource
from engine.validate.schemas import core_validator, describe
from engine.validate.yamlsafe import YamlError, load_yaml

READING_TYPES = ("emission.measured", "discharge.measured")
SCOPE_ROOTS = frozenset({"judged", "measured", "data", "event", "enterprise", "params", "metric", "parcel"})


class RulePackError(ValueError):
    """A rule pack that is not valid: says which pack, which rule and what is wrong."""


class ParameterError(RulePackError):
    """A parameter value set by the deploying authority (`--params`) that does not fit the
    parameter's declared kind and unit: names the pack (or method) and the parameter."""

    def __init__(self, pack: str, name: str, reason: str) -> None:
        super().__init__(f"parameter {pack}.{name}: {reason}")
        self.pack, self.name, self.reason = pack, name, reason


# units that count whole things: a parameter in one of them takes an integer
COUNT_UNITS = frozenset({"findings", "years", "enterprises", "events"})
# the unit of a share of a figure (e.g. the idle-land fee's share of the land price): a number in (0, 1]
SHARE_UNIT = "share"


def parameter_problem(spec: Mapping[str, Any], value: Any) -> str | None:
    """Why `value` cannot be the value of a parameter declared as `spec` ({value, unit}), or None.

    A parameter is a finite number >= 0 (an integer in a counting unit such as `findings`, in
    (0, 1] in the unit `share`), or, when its declared value is a mapping or a list, the same
    shape of such numbers (benchmark volumes per category, surcharges per year), or, when its declared value is a
    list of names (mu-average classes), a list of short names. NaN, infinity, text and
    booleans never are numbers: a rule with such a parameter could never fire, yet would be
    listed active.
    """
    default, unit = spec.get("value"), spec.get("unit", "")
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping) or not value:
            return f"expected a mapping of categories to numbers in {unit} (like {dict(default)!r}), got {_shown(value)}"
        for key, item in value.items():
            problem = _number_problem(item, unit, False)
            if problem is not None:
                return f"[{key!r}]: {problem}"
        return None
    if isinstance(default, list) and default and all(isinstance(item, str) for item in default):
        # a set of names (e.g. mu-average classes): any number of short names
        if not isinstance(value, list) or len(value) > 100 or \
                not all(isinstance(item, str) and 0 < len(item) <= 64 for item in value):
            return f"expected a list of names in {unit} (like {list(default)!r}), got {_shown(value)}"
        return None
    if isinstance(default, list):
        if not isinstance(value, list) or len(value) != len(default):
            return f"expected a list of {len(default)} numbers in {unit}, got {_shown(value)}"
        for index, item in enumerate(value):
            problem = _number_problem(item, unit, False)
            if problem is not None:
                return f"[{index}]: {problem}"
        return None
    problem = _number_problem(value, unit, unit in COUNT_UNITS)
    if problem is None and unit == SHARE_UNIT and not 0 < value <= 1:
        return f"expected a share in (0, 1] (0.2 for 20 %), got {value!r}"
    return problem


def _number_problem(value: Any, unit: str, whole: bool) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number in {unit}, got {_shown(value)}"
    if not math.isfinite(value):
        return f"expected a finite number in {unit}, got {value!r}"
    if value < 0:
        return f"expected a number >= 0 in {unit}, got {value!r}"
    if whole and value != int(value):
        return f"expected a whole number of {unit}, got {value!r}"
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '…' if len(text) > 40 else text}"


@dataclass(frozen=True, slots=True)
class Window:
    """Dates (inclusive, local event date) in which a rule applies to a facility class."""

    start: str | None
    end: str | None

    def covers(self, day: str) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)

    def meets(self, first_day: str, last_day: str) -> bool:
        """Whether it covers some date from `first_day` to `last_day` (inclusive)."""
        return (self.start is None or last_day >= self.start) and (self.end is None or first_day <= self.end)


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")


def shown(value: Any) -> str:
    """A value as a data-gap detail shows it: text as is, whole numbers without a decimal point,
    other numbers as Python writes them (shortest round trip), null/true/false, JSON for the rest."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return orjson.dumps(value, default=dict, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True)
class GapSpec:
    """A rule's `data_gap` (rules on facts): when `when` holds, the event lacks a figure the rule
    must judge, and the judge writes a data gap (reason `figure_missing`) instead of judging.
    `parts` is the detail text: literal text, and the compiled `{name.path}` placeholders."""

    when_text: str
    detail_text: str
    when: Compiled = field(repr=False, compare=False)
    parts: tuple[str | Compiled, ...] = field(repr=False, compare=False)

    def detail(self, scope: Mapping[str, Any]) -> str:
        """The detail text with each placeholder replaced by its value in `scope`."""
        return "".join(part if isinstance(part, str) else shown(part(scope)) for part in self.parts)


def _gap_spec(spec: Mapping[str, Any], roots: frozenset[str]) -> GapSpec:
    when = compile_expression(spec["when"], roots)
    text = spec["detail"]
    parts: list[str | Compiled] = []
    last = 0
    for match in _PLACEHOLDER.finditer(text):
        parts.extend((text[last:match.start()], compile_expression(match.group(1), roots)))
        last = match.end()
    parts.append(text[last:])
    return GapSpec(spec["when"], text, when, tuple(p for p in parts if p != ""))


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule. Frozen: the engine shares it across enterprises and threads."""

    id: str
    version: int
    plugin: str
    title_zh: str
    title_en: str
    category: str
    type: str
    industries: frozenset[str] | None
    processes: frozenset[str] | None
    pollutants: frozenset[str] | None
    points: frozenset[str] | None
    destinations: frozenset[str] | None
    kinds: frozenset[str] | None
    periods: frozenset[str]
    unit: str | None
    parameters: Mapping[str, Any]
    pack_parameters: Mapping[str, Any]
    limit: Mapping[str, Any] | None
    o2_reference: Mapping[str, float]
    benchmark: Mapping[str, float] | None
    benchmark_unit: str | None
    condition_text: str
    condition: Compiled = field(repr=False, compare=False)
    measure_text: str | None
    # compiled unbounded (as `limit_from`'s): past the float range it gives ±inf or NaN, which the
    # judge writes as a data gap (`figure_out_of_range`), where a missing figure gives None
    measure: Compiled | None = field(repr=False, compare=False)
    new_facility_from: str | None
    windows: Mapping[str, Window] | None
    option: str | None
    unless_option: str | None
    basis: Mapping[str, str]
    verified: bool
    status: str | None
    severity: str
    uses_facility: bool
    threshold: tuple[Any, ...] | None
    examples: tuple[Mapping[str, Any], ...] = field(repr=False, compare=False)
    # rule versions (issue 5): the dates (inclusive) this version is in force; folded into `windows`
    valid_from: str | None = None
    valid_until: str | None = None
    # a threshold the condition cannot be true without (`threshold`, or the threshold half of
    # `<guard> and judged > limit`): the batch path's gates cut on it (engine/judge/thresholds.py)
    necessary: tuple[Any, ...] | None = None
    # a limit that differs per event (e.g. a parcel's own commitments): ("min" | "value", expression
    # text, compiled); the finding's `limit` is {min|value: its value, unit}
    limit_from: tuple[str, str, Compiled] | None = field(default=None, repr=False, compare=False)
    # rules on facts: when the event lacks a figure the rule must judge, a data gap instead (`GapSpec`)
    data_gap: GapSpec | None = field(default=None, repr=False, compare=False)

    def applies_on(self, day: str, eia_approved_on: str | None) -> bool:
        """Whether the rule is in force on a local date for a facility with this EIA date."""
        if self.windows is None:
            return True
        window = self.windows.get(self.facility(eia_approved_on))
        return window is not None and window.covers(day)

    def in_force_on(self, day: str) -> bool:
        """Whether the rule applies on a local date to some facility class (`applies_on` for one of
        them): when not, the judge skips it for every reading of that date."""
        return self.windows is None or any(window.covers(day) for window in self.windows.values())

    def in_force_between(self, first_day: str, last_day: str) -> bool:
        """`in_force_on` some date from `first_day` to `last_day` (inclusive local dates)."""
        return self.windows is None or any(window.meets(first_day, last_day) for window in self.windows.values())

    def in_force_throughout(self, first_day: str, last_day: str) -> bool:
        """`in_force_on` every date from `first_day` to `last_day` (one facility class's window covers them all)."""
        return self.windows is None or any(window.covers(first_day) and window.covers(last_day)
                                           for window in self.windows.values())

    def facility(self, eia_approved_on: str | None) -> str:
        """'new' when the EIA was approved on or after the standard's date, else 'existing'."""
        if self.new_facility_from and eia_approved_on and eia_approved_on >= self.new_facility_from:
            return "new"
        return "existing"


@dataclass(frozen=True, slots=True)
class InactiveRule:
    """A rule that is loaded but not evaluated, and why."""

    id: str
    version: int
    plugin: str
    title: str
    basis: Mapping[str, str]
    verified: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RulePack:
    """A parsed, schema-valid pack (before options and parameters are applied).

    `lines` maps field paths (`rules[3].condition`) to their line in the YAML text."""

    plugin: str
    origin: str
    document: Mapping[str, Any]
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def where(self, path: str) -> str:
        """"ORIGIN:LINE: PATH" for messages about one field (ORIGIN alone when the line is unknown)."""
        parts = path.replace("[", ".[").split(".")
        for end in range(len(parts), 0, -1):  # a field written through an alias: the line of its rule
            line = self.lines.get(".".join(parts[:end]).replace(".[", "["))
            if line is not None:
                return f"{self.origin}:{line}: {path}"
        return f"{self.origin}: {path}"


def _rulepack_validator() -> jsonschema.Draft202012Validator:
    return core_validator("rulepack.schema.json")


def _jsonable(value: Any) -> Any:
    """YAML may produce dates; the pack document keeps only JSON types (for the fingerprint)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return value.isoformat()
    return value


@functools.lru_cache(maxsize=128)
def parse_pack(source: RulePackSource) -> RulePack:
    """Parse and schema-check one YAML pack; errors name the pack and the field path.

    Cached by content: engines built in one process (tests, shards) parse a pack once.
    The returned document is shared and never mutated.
    """
    lines: dict[str, int] = {}
    try:
        document = load_yaml(source.text, source.origin, lines=lines)  # safe, and bounded in size, aliases, depth, numbers
    except YamlError as exc:
        raise RulePackError(str(exc)) from None
    document = _jsonable(document)
    error = jsonschema.exceptions.best_match(_rulepack_validator().iter_errors(document))
    if error is not None:
        where = _rule_hint(document, list(error.absolute_path))
        line = _line_of(lines, list(error.absolute_path))
        raise RulePackError(f"{source.origin}{f':{line}' if line else ''}{where}: {describe(error)}")
    if document["pack"] != source.plugin:
        raise RulePackError(f"{source.origin}: pack {document['pack']!r} is shipped by plugin {source.plugin!r}; they must match")
    for rule in document.get("rules", []):
        if not rule["id"].startswith(document["pack"] + "."):
            raise RulePackError(f"{source.origin}: rule {rule['id']!r} must start with {document['pack'] + '.'!r}")
    return RulePack(plugin=source.plugin, origin=source.origin, document=document, lines=lines)


def parameters_key(value: Any) -> Any:
    """A hashable copy of JSON-typed configuration (the `--params`) that keeps every type, for
    caches of what is compiled from it; None when it holds anything else or nests too deep (then
    nothing is cached). `parameters_from_key` gives the value back."""
    try:
        return _key(value)
    except RecursionError:
        return None


def _key(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return (type(value).__name__, value)
    if isinstance(value, Mapping):
        items = []
        for name, item in value.items():
            inner = _key(item)
            if not isinstance(name, str) or inner is None:
                return None
            items.append((name, inner))
        return ("map", tuple(sorted(items)))
    if isinstance(value, (list, tuple)):
        inner_items = tuple(_key(item) for item in value)
        return None if any(item is None for item in inner_items) else (type(value).__name__, inner_items)
    return None


def parameters_from_key(key: Any) -> Any:
    """The value `parameters_key` was made from (a fresh copy)."""
    kind, value = key
    if kind == "map":
        return {name: parameters_from_key(item) for name, item in value}
    if kind == "list":
        return [parameters_from_key(item) for item in value]
    if kind == "tuple":
        return tuple(parameters_from_key(item) for item in value)
    return value


_Built = TypeVar("_Built")


def cached_by_parameters(build: Callable[..., _Built]) -> Callable[..., _Built]:
    """`build(*hashable_args, parameters)`, cached by its arguments (up to 16 results): the
    parameters through `parameters_key`, so a copy with the same JSON values finds the same
    result; parameters it cannot key are built afresh. Errors are not cached. For what is
    compiled from configuration and never changed afterwards."""

    @functools.lru_cache(maxsize=16)
    def by_key(*args: Any) -> _Built:
        return build(*args[:-1], parameters_from_key(args[-1]))

    @functools.wraps(build)
    def cached(*args: Any) -> _Built:
        key = parameters_key(args[-1])
        return build(*args) if key is None else by_key(*args[:-1], key)

    return cached


def field_path(path: Iterable[Any]) -> str:
    """A JSON path as the YAML loader names fields: `rules[3].condition`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(lines: Mapping[str, int], path: list[Any]) -> int | None:
    """The line of the deepest field of `path` the YAML text names."""
    for end in range(len(path), 0, -1):
        line = lines.get(field_path(path[:end]))
        if line is not None:
            return line
    return None


def _rule_hint(document: Any, path: list[Any]) -> str:
    if len(path) >= 2 and path[0] == "rules" and isinstance(document, dict):
        try:
            return f" (rule {document['rules'][path[1]]['id']!r})"
        except (KeyError, IndexError, TypeError):
            return ""
    return ""


def _as_set(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


def _window(spec: Mapping[str, str] | None) -> Window | None:
    return None if spec is None else Window(spec.get("from"), spec.get("until"))


def compile_rules(
    packs: Iterable[RulePack],
    *,
    options: Iterable[str] = (),
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[list[Rule], list[InactiveRule]]:
    """Compile every rule of every pack, sorted by id; duplicates name both plugins.

    `options` switches named options on; `parameters` sets pack-level parameter values
    ({pack: {name: value}}), as the deploying authority does for values marked NF.
    """
    enabled = set(options)
    overrides = parameters or {}
    seen: dict[str, str] = {}
    versions: dict[str, list[Mapping[str, Any]]] = {}
    active: list[Rule] = []
    inactive: list[InactiveRule] = []
    declared_options: set[str] = set()
    packs = sorted(packs, key=lambda p: p.plugin)
    for pack in packs:
        declared_options.update(pack.document.get("options", {}))
    unknown = sorted(enabled - declared_options)
    if unknown:
        raise RulePackError(f"unknown option(s) {', '.join(unknown)}; declared: {', '.join(sorted(declared_options)) or 'none'}")
    for pack in packs:
        document = pack.document
        pack_params = {name: spec["value"] for name, spec in document.get("parameters", {}).items()}
        pack_units = {name: spec["unit"] for name, spec in document.get("parameters", {}).items()}
        for name, value in overrides.get(document["pack"], {}).items():
            if name not in pack_params:
                raise ParameterError(document["pack"], name, f"pack {document['pack']!r} has no such parameter to set")
            problem = parameter_problem(document["parameters"][name], value)
            if problem is not None:
                raise ParameterError(document["pack"], name, problem)
            pack_params[name] = value
        for index, spec in enumerate(document.get("rules", [])):
            if spec["id"] in seen and not _another_version(spec, seen[spec["id"]], pack.plugin, versions):
                raise RulePackError(
                    f"duplicate rule id {spec['id']!r}: defined by plugin {seen[spec['id']]!r} and by plugin {pack.plugin!r}"
                    + (" (versions of one rule need distinct `version` numbers, each with valid_from / valid_until)"
                       if seen[spec["id"]] == pack.plugin else "")
                )
            seen[spec["id"]] = pack.plugin
            versions.setdefault(spec["id"], []).append(spec)
            try:
                rule, reason = _compile_rule(spec, pack, pack_params, pack_units, enabled)
            except ExpressionError as exc:
                texts = (("measure", spec.get("measure")), ("data_gap.when", spec.get("data_gap", {}).get("when")),
                         ("data_gap.detail", spec.get("data_gap", {}).get("detail")))
                which = next((name for name, text in texts if text and exc.text in (text, *_PLACEHOLDER.findall(text))),
                             "condition")
                raise RulePackError(f"{pack.where(f'rules[{index}].{which}')} (rule {spec['id']!r}): {exc}") from None
            if reason is None:
                active.append(rule)
            else:
                inactive.append(InactiveRule(rule.id, rule.version, rule.plugin, rule.title_en, rule.basis, rule.verified, reason))
    _check_periods(versions)
    active.sort(key=lambda r: (r.id, r.version))
    inactive.sort(key=lambda r: (r.id, r.version))
    return active, inactive


def _dated(spec: Mapping[str, Any]) -> bool:
    return spec.get("valid_from") is not None or spec.get("valid_until") is not None


def _another_version(spec: Mapping[str, Any], plugin: str, now: str, versions: Mapping[str, list[Mapping[str, Any]]]) -> bool:
    """A repeated rule id is allowed as another version of the rule: same pack, new version
    number, and every version dated (valid_from / valid_until)."""
    earlier = versions.get(spec["id"], [])
    return (plugin == now and _dated(spec) and all(_dated(e) for e in earlier)
            and spec["version"] not in {e["version"] for e in earlier})


def _check_periods(versions: Mapping[str, list[Mapping[str, Any]]]) -> None:
    """Versions of one rule must not be in force on the same day, and must be ordered in time."""
    for rule_id, specs in versions.items():
        if len(specs) < 2:
            continue
        ordered = sorted(specs, key=lambda v: v.get("valid_from") or "")
        for a, b in zip(ordered, ordered[1:]):
            if a.get("valid_until") is None or b.get("valid_from") is None or a["valid_until"] >= b["valid_from"]:
                raise RulePackError(f"rule {rule_id!r}: versions {a['version']} and {b['version']} are in force on the same "
                                    "day (give each valid_from / valid_until, without overlap)")
            if a["version"] > b["version"]:
                raise RulePackError(f"rule {rule_id!r}: version {b['version']} is in force after version {a['version']}")


def _in_force(windows: dict[str, Window] | None, start: str | None, end: str | None) -> dict[str, Window] | None:
    """Facility windows narrowed to a rule version's period (both inclusive)."""
    if start is None and end is None:
        return windows
    if windows is None:
        windows = {"new": Window(None, None), "existing": Window(None, None)}
    narrowed = {}
    for facility, w in windows.items():
        lo = max(x for x in (w.start, start) if x is not None) if (w.start or start) else None
        hi = min(x for x in (w.end, end) if x is not None) if (w.end or end) else None
        narrowed[facility] = Window(lo, hi)
    return narrowed


def _compile_rule(
    spec: Mapping[str, Any],
    pack: RulePack,
    pack_params: Mapping[str, Any],
    pack_units: Mapping[str, str],
    enabled: set[str],
) -> tuple[Rule, str | None]:
    rule_params = {name: p["value"] for name, p in spec.get("parameters", {}).items()}
    rule_units = {name: p["unit"] for name, p in spec.get("parameters", {}).items()}
    roots = SCOPE_ROOTS | frozenset(rule_params)
    applies = spec["applies_to"]
    condition = compile_expression(spec["condition"], roots)
    measure_text = spec.get("measure")
    measure = compile_expression(measure_text, roots, unbounded=True) if measure_text else None
    limit_from = None
    if "limit_from" in spec:
        (bound, bound_text), = spec["limit_from"].items()
        limit_from = (bound, bound_text, compile_expression(bound_text, roots, unbounded=True))
        if not spec.get("unit"):
            raise RulePackError(f"{pack.origin} (rule {spec['id']!r}): a rule with limit_from needs a unit")
    data_gap = _gap_spec(spec["data_gap"], roots) if "data_gap" in spec else None
    if data_gap is not None and applies["type"] in READING_TYPES:
        raise RulePackError(f"{pack.origin} (rule {spec['id']!r}): data_gap is for rules on facts; a reading's data gaps "
                            "are the engine's (O2, benchmark volume, too few values)")
    read = (names(parse(spec["condition"])) + (names(parse(measure_text)) if measure_text else [])
            + (names(parse(limit_from[1])) if limit_from else [])
            + (names(parse(data_gap.when_text)) + [tuple(p.split(".")) for p in _PLACEHOLDER.findall(data_gap.detail_text)]
               if data_gap else []))
    missing = sorted({n for n, v in rule_params.items() if v is None})
    for path in read:
        if path[0] == "params":
            if len(path) < 2 or path[1] not in pack_params:
                raise RulePackError(f"{pack.origin} (rule {spec['id']!r}): unknown pack parameter {'.'.join(path)!r}")
            if pack_params[path[1]] is None:
                missing.append(f"params.{path[1]}")
    unit = spec.get("unit") or rule_units.get("limit") or rule_units.get("low")
    limit: dict[str, Any] | None = None
    if "limit" in rule_params and rule_params["limit"] is not None:
        limit = {"value": rule_params["limit"], "unit": rule_units["limit"]}
    elif "low" in rule_params or "high" in rule_params:
        limit = {"min": rule_params.get("low"), "max": rule_params.get("high"), "unit": rule_units.get("low") or rule_units.get("high")}
        limit = {k: v for k, v in limit.items() if v is not None}
    rule_type = applies["type"]
    if rule_type in READING_TYPES and measure is None and unit not in UNITS:
        raise RulePackError(f"{pack.origin} (rule {spec['id']!r}): a reading rule needs a 'limit' (or low/high) parameter in a known unit, got {unit!r}")
    correction = spec.get("correction", {})
    benchmark: Mapping[str, float] | None = None
    benchmark_unit: str | None = None
    if "benchmark_volume" in correction:
        name = correction["benchmark_volume"]
        if name in rule_params:
            benchmark, benchmark_unit = rule_params[name], rule_units[name]
        elif name in pack_params:
            benchmark, benchmark_unit = pack_params[name], pack_units[name]
        else:
            raise RulePackError(f"{pack.origin} (rule {spec['id']!r}): benchmark_volume names no parameter {name!r}")
        if not holds_upward(parse(spec["condition"]), ("judged",)) or measure_text:
            raise RulePackError(
                f"{pack.origin} (rule {spec['id']!r}): a benchmark-volume-corrected rule must be an upper limit on judged "
                "(judged > x or judged >= x, combined with and/or; no measure): the correction can only raise the value"
            )
        if benchmark is None:
            missing.append(name)
        elif not isinstance(benchmark, Mapping) or benchmark_unit not in BENCHMARK_UNITS:
            raise RulePackError(
                f"{pack.origin} (rule {spec['id']!r}): benchmark parameter {name!r} must map categories to volumes in "
                f"{' or '.join(BENCHMARK_UNITS)}"
            )
    effective = spec.get("effective")
    windows = None
    if effective is not None:
        windows = {k: w for k, w in (("new", _window(effective.get("new"))), ("existing", _window(effective.get("existing")))) if w}
    windows = _in_force(windows, spec.get("valid_from"), spec.get("valid_until"))
    rule = Rule(
        id=spec["id"],
        version=spec["version"],
        plugin=pack.plugin,
        title_zh=spec["title"]["zh"],
        title_en=spec["title"]["en"],
        category=spec.get("category", "emission" if rule_type == "emission.measured" else "discharge" if rule_type == "discharge.measured" else "process"),
        type=rule_type,
        industries=_as_set(applies.get("industry")),
        processes=_as_set(applies.get("process")),
        pollutants=_as_set(applies.get("pollutant")),
        points=_as_set(applies.get("point")),
        destinations=_as_set(applies.get("destination")),
        kinds=_as_set(applies.get("kind")),
        periods=_as_set(spec.get("period", "none")) or frozenset({"none"}),
        unit=unit,
        parameters=dict(rule_params),
        pack_parameters=dict(pack_params),
        limit=limit,
        o2_reference=dict(correction.get("o2_reference", {})),
        benchmark=benchmark,
        benchmark_unit=benchmark_unit,
        condition_text=spec["condition"],
        condition=condition,
        measure_text=measure_text,
        measure=measure,
        new_facility_from=(effective or {}).get("new_facility_from"),
        windows=windows,
        option=spec.get("option"),
        unless_option=spec.get("unless_option"),
        basis=dict(spec["basis"]),
        verified=spec["verified"],
        status=spec.get("status"),
        severity=spec["severity"],
        uses_facility=any(p[:2] == ("enterprise", "facility") for p in read),
        threshold=_threshold(spec["condition"], measure_text, rule_params),
        examples=tuple(spec["examples"]),
        valid_from=spec.get("valid_from"),
        valid_until=spec.get("valid_until"),
        necessary=_necessary(spec["condition"], measure_text, rule_params),
        limit_from=limit_from,
        data_gap=data_gap,
    )
    reason = None
    if rule.option and rule.option not in enabled:
        reason = f"option {rule.option} is off"
    elif rule.unless_option and rule.unless_option in enabled:
        reason = f"replaced while option {rule.unless_option} is on"
    elif missing:
        reason = "needs parameter " + ", ".join(sorted(set(missing))) + " (set by the deploying authority)"
    return rule, reason


def _threshold(condition: str, measure: str | None, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The specialised form of the commonest conditions, evaluated without building a scope.

    Only exact spellings qualify; anything else runs through the compiled expression, and
    tests/test_rule_examples.py runs every rule's examples either way.
    """
    if measure is not None:
        return None
    text = " ".join(condition.split())
    number = (int, float)
    if text == "judged > limit" and isinstance(params.get("limit"), number):
        return ("gt", params["limit"])
    if text == "judged >= limit" and isinstance(params.get("limit"), number):
        return ("ge", params["limit"])
    if text == "judged < low or judged > high" and isinstance(params.get("low"), number) and isinstance(params.get("high"), number):
        return ("range", params["low"], params["high"])
    return None


_GUARD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]* (==|!=) '[^'\\()]*'")


def _necessary(condition: str, measure: str | None, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A specialised threshold the condition implies: the condition itself (`_threshold`), or one
    half of `<guard> and <threshold>` where the guard is a plain comparison of a name with a
    string (e.g. `enterprise.sub_sector == 'batik' and judged > limit`). Only these spellings
    qualify, so "cannot fire unless the threshold is exceeded" holds by the language's `and`."""
    found = _threshold(condition, measure, params)
    if found is not None or measure is not None:
        return found
    parts = " ".join(condition.split()).split(" and ")
    if len(parts) != 2:
        return None
    for guard, rest in (parts, parts[::-1]):
        if _GUARD.fullmatch(guard):
            threshold = _threshold(rest, None, params)
            if threshold is not None and threshold[0] != "range":
                return threshold
    return None


def fingerprint(packs: Iterable[RulePack], plugins: Iterable[tuple[str, str]], engine_version: str,
                options: Iterable[str], parameters: Mapping[str, Mapping[str, Any]] | None) -> str:
    """sha256 over the rule packs, plugin names and versions, engine version and configuration."""
    content = {
        "engine": engine_version,
        "plugins": sorted(plugins),
        "packs": sorted((p.document for p in packs), key=lambda d: d["pack"]),
        "options": sorted(options),
        "parameters": parameters or {},
    }
    return "sha256:" + hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
