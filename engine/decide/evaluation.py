"""The yearly mu-average (亩均效益) evaluation: a barrier step of the decision layer.

The method is data (engine/decide/policy/mu_average.yaml, schema schemas/evaluation-method.schema.json,
rules in docs/mu-average.md). `finance.reported` events are kept per year and enterprise
(the latest by event time, then id, wins); `evaluation.closed` for a year ranks every
enterprise with a finance record for that year, population by population, assigns classes by
rank, lists enterprises by the method's listing rules with a route, attaches the
differentiated electricity surcharge to consecutive D years, and drops the year's records.

Everything is deterministic: enterprises are processed in code order, means are `math.fsum`
(exact, with fractions, when that sum leaves the float range), indicator values and scores are
rounded to `score_digits` decimals and the ranking uses the rounded score, ties are broken by
enterprise code, class boundaries are cumulative shares of the population size rounded half
up, computed exactly with fractions.

Both decision backends call this same code from `DecisionLayer.on_event`: it needs every
enterprise at once, so it is a barrier, not a per-enterprise correlation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from engine.judge.expressions import Compiled, ExpressionError, compile_expression, names, parse
from engine.judge.rulepacks import ParameterError, cached_by_parameters, parameter_problem
from engine.normalise.readings import epoch_of, plus_days
from engine.records import Decision
from engine.state import kept_copy
from engine.validate.schemas import core_validator
from engine.validate.yamlsafe import YamlError, load_yaml

ROOTS = frozenset({"enterprise", "finance", "indicator", "evaluation", "params", "closed_by_law"})
DEFAULT_METHOD = ("engine.decide.policy", "mu_average.yaml")

# flags of an indicator value (docs/mu-average.md)
MISSING, ZERO_DENOMINATOR, NO_BENCHMARK = "missing", "zero_denominator", "no_benchmark"


class MethodError(ValueError):
    """An evaluation method that is not valid (schema, expressions, shares, parameters)."""


@dataclass(frozen=True, slots=True)
class Indicator:
    id: str
    title: str
    unit: str
    numerator: tuple[str, str]
    denominator: tuple[str, str]
    multiplier: float
    weight: float
    benchmark: str | float  # "mean" or a fixed value
    cap: float | None
    zero_denominator: str = "zero"  # "zero": scores 0; "best": scores as the population's best (e.g. zero emissions)


@dataclass(frozen=True, slots=True)
class Population:
    id: str
    title: str
    when: Compiled = field(repr=False, compare=False)
    indicators: tuple[Indicator, ...]


@dataclass(frozen=True, slots=True)
class ListingRule:
    id: str
    when: Compiled = field(repr=False, compare=False)
    basis: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Method:
    """A compiled evaluation method."""

    name: str
    id: str
    version: int
    title: str
    populations: tuple[Population, ...]
    classes: tuple[tuple[str, Fraction], ...]  # by quota: (class, share in percent); empty with thresholds
    thresholds: tuple[tuple[str, float | None], ...]  # by score: (class, minimum score; None for the last)
    missing: str  # how an indicator without a value scores: "zero", or "mean" (the population's average score)
    digits: int
    exclusions: tuple[tuple[str, Compiled], ...] = field(repr=False, compare=False)
    list: str
    orders: frozenset[str]  # listed routes that are orders with a deadline
    rules: tuple[ListingRule, ...]
    routes: tuple[tuple[str, Compiled], ...] = field(repr=False, compare=False)
    surcharge_when: Compiled | None = field(repr=False, compare=False)
    surcharge_table: tuple[float, ...]
    surcharge_basis: Mapping[str, str] | None
    classify_basis: Mapping[str, str]
    params: Mapping[str, Any]
    digest: str  # sha256 of the method document after parameter overrides

    @property
    def classify_rule(self) -> str:
        return self.id + ".classify"

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.classes) or tuple(name for name, _ in self.thresholds)


def _validator() -> jsonschema.Draft202012Validator:
    return core_validator("evaluation-method.schema.json")


def _text(source: str | Path | None) -> tuple[str, str]:
    """A method's YAML text and its origin (for messages)."""
    if source is None:
        from importlib import resources

        package, name = DEFAULT_METHOD
        return resources.files(package).joinpath(name).read_text(encoding="utf-8"), f"{package}/{name}"
    try:
        return Path(source).read_text(encoding="utf-8"), str(source)
    except OSError as exc:
        raise MethodError(f"cannot read {source}: {exc}") from None


def _document(text: str, origin: str) -> dict[str, Any]:
    try:
        document = load_yaml(text, origin)
    except YamlError as exc:
        raise MethodError(str(exc)) from None
    if not isinstance(document, dict):
        raise MethodError(f"{origin}: expected a mapping")
    return document


def load_method(source: str | Path | Mapping[str, Any] | None = None,
                parameters: Mapping[str, Mapping[str, Any]] | None = None) -> Method:
    """Read, validate and compile a method (default: the built-in one).

    `parameters` are the authority's `--params`: the entry named after the method
    (`mu_average` for the default) overrides its parameters' values. A file is read on every
    call; what is compiled from its text and the parameters is cached (the Method is immutable:
    the engines a process builds alike share it).
    """
    if isinstance(source, Mapping):
        return _compile_method(dict(source), "<method>", parameters)
    text, origin = _text(source)
    return _method_from_text(text, origin, parameters)


@cached_by_parameters
def _method_from_text(text: str, origin: str, parameters: Mapping[str, Mapping[str, Any]] | None) -> Method:
    return _compile_method(_document(text, origin), origin, parameters)


def _compile_method(document: dict[str, Any], origin: str, parameters: Mapping[str, Mapping[str, Any]] | None) -> Method:
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise MethodError(f"{origin}: {where}: {error.message}")
    params = {n: s["value"] for n, s in document.get("parameters", {}).items()}
    for name, value in (parameters or {}).get(document["method"], {}).items():
        if name not in params:
            raise MethodError(f"{origin}: --params sets {name!r}, which the method does not define")
        problem = parameter_problem(document["parameters"][name], value)
        if problem is not None:
            raise ParameterError(document["method"], name, problem)
        params[name] = value
        document["parameters"][name] = {**document["parameters"][name], "value": value}

    def expression(text: str, what: str) -> Compiled:
        try:
            return compile_expression(text, ROOTS)
        except ExpressionError as exc:
            raise MethodError(f"{origin} ({what}): {exc}") from None

    def check_params(text: str, what: str) -> None:
        try:
            read = names(parse(text))
        except ExpressionError as exc:
            raise MethodError(f"{origin} ({what}): {exc}") from None
        for path in read:
            if path[0] != "params" or len(path) < 2:
                continue
            if path[1] not in params:
                raise MethodError(f"{origin} ({what}): names no parameter {path[1]!r}")
            if params[path[1]] is None:
                raise MethodError(f"{origin} ({what}): parameter {path[1]!r} has no value (set it with --params)")

    populations = []
    seen_populations: set[str] = set()
    for spec in document["populations"]:
        if spec["id"] in seen_populations:
            raise MethodError(f"{origin}: population {spec['id']!r} is defined twice")
        seen_populations.add(spec["id"])
        indicators = []
        ids: set[str] = set()
        limit = score_limit(len(spec["indicators"]))
        for ind in spec["indicators"]:
            if ind["id"] in ids:
                raise MethodError(f"{origin}: indicator {ind['id']!r} appears twice in population {spec['id']!r}")
            ids.add(ind["id"])
            for key in ("weight", "cap"):
                if ind.get(key) is not None and not float(ind[key]) <= limit:
                    raise MethodError(f"{origin}: indicator {ind['id']!r}: {key} {ind[key]:g} is too large: the scores of "
                                      f"{len(spec['indicators'])} indicators would not add up to a finite number")
            num, den = ind["numerator"].split("."), ind["denominator"].split(".")
            indicators.append(Indicator(
                id=ind["id"], title=ind.get("title", ind["id"]), unit=ind.get("unit", ""),
                numerator=(num[0], num[1]), denominator=(den[0], den[1]), multiplier=float(ind.get("multiplier", 1)),
                weight=float(ind["weight"]), benchmark=ind["benchmark"] if ind["benchmark"] == "mean" else float(ind["benchmark"]),
                cap=None if ind.get("cap") is None else float(ind["cap"]),
                zero_denominator=ind.get("zero_denominator", "zero"),
            ))
        check_params(spec["when"], f"population {spec['id']}")
        populations.append(Population(spec["id"], spec.get("title", spec["id"]),
                                      expression(spec["when"], f"population {spec['id']}"), tuple(indicators)))
    specs = document["classes"]
    if len({c["class"] for c in specs}) != len(specs):
        raise MethodError(f"{origin}: a class appears twice")
    classes: tuple[tuple[str, Fraction], ...] = ()
    thresholds: tuple[tuple[str, float | None], ...] = ()
    if all("share" in c for c in specs):
        classes = tuple((c["class"], Fraction(str(c["share"]))) for c in specs)
        if sum(share for _, share in classes) != 100:
            raise MethodError(f"{origin}: class shares add up to {float(sum(s for _, s in classes))}, not 100")
    elif all("min_score" in c for c in specs[:-1]) and not any("share" in c for c in specs) and "min_score" not in specs[-1]:
        thresholds = tuple((c["class"], float(c["min_score"]) if "min_score" in c else None) for c in specs)
        minimums = [m for _, m in thresholds[:-1]]
        if any(a <= b for a, b in zip(minimums, minimums[1:])):  # type: ignore[operator]
            raise MethodError(f"{origin}: class minimum scores must fall from the best class down")
    else:
        raise MethodError(f"{origin}: classes are either all by share (quotas adding up to 100) or all by min_score "
                          "(from the best class down; the last class, without min_score, takes the rest)")
    listing = document["listing"]
    for rule in listing["rules"]:
        check_params(rule["when"], rule["id"])
    for route in listing["routes"]:
        check_params(route["when"], f"route {route['action']}")
    if listing["routes"][-1]["when"].strip() != "true":
        raise MethodError(f"{origin}: the last route must be the default (when: 'true')")
    surcharge = document.get("surcharge")
    table: tuple[float, ...] = ()
    if surcharge is not None:
        name = surcharge["yuan_per_kwh"]
        value = params.get(name, "absent") if name in params else "absent"
        if value == "absent":
            raise MethodError(f"{origin} (surcharge): names no parameter {name!r}")
        if not isinstance(value, list) or not value or not all(isinstance(v, (int, float)) for v in value):
            raise MethodError(f"{origin} (surcharge): parameter {name!r} must be a non-empty list of yuan/kWh")
        table = tuple(float(v) for v in value)
        check_params(surcharge["when"], "surcharge")
    for exclusion in document.get("exclusions", []):
        check_params(exclusion["when"], f"exclusion {exclusion['id']}")
    digest = "sha256:" + hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return Method(
        name=document["method"], id=document["id"], version=document["version"], title=document["title"]["en"],
        populations=tuple(populations), classes=classes, thresholds=thresholds,
        missing=document.get("missing_scores", "zero"), digits=int(document.get("score_digits", 6)),
        exclusions=tuple((e["id"], expression(e["when"], f"exclusion {e['id']}")) for e in document.get("exclusions", [])),
        list=listing["list"], orders=frozenset(listing.get("orders", ())),
        rules=tuple(ListingRule(r["id"], expression(r["when"], r["id"]), r["basis"]) for r in listing["rules"]),
        routes=tuple((r["action"], expression(r["when"], f"route {r['action']}")) for r in listing["routes"]),
        surcharge_when=expression(surcharge["when"], "surcharge") if surcharge is not None else None,
        surcharge_table=table, surcharge_basis=(surcharge or {}).get("basis"),
        classify_basis=document.get("classify_basis", document["basis"]), params=params, digest=digest,
    )


def score_limit(indicators: int) -> float:
    """The largest magnitude of an indicator's score: `indicators` such scores add up to a finite float."""
    return math.nextafter(sys.float_info.max / max(indicators, 1), 0.0)


def _mean(values: list[float]) -> float:
    """`math.fsum` of finite values ÷ their number; exactly (fractions) when that sum leaves the float
    range (the mean of finite floats is a finite float)."""
    try:
        total = math.fsum(values)
    except OverflowError:  # an intermediate sum beyond the float range
        total = math.inf
    if math.isfinite(total):
        return total / len(values)
    return float(sum(map(Fraction, values), Fraction(0)) / len(values))


def class_bounds(size: int, classes: tuple[tuple[str, Fraction], ...]) -> list[tuple[str, int]]:
    """(class, last rank of the class): cumulative share × size, rounded half up (exactly)."""
    bounds, cumulative = [], Fraction(0)
    for name, share in classes:
        cumulative += share
        bounds.append((name, math.floor(size * cumulative / 100 + Fraction(1, 2))))
    return bounds


@dataclass(slots=True)
class Ranked:
    """One enterprise in a year's ranking (or why it was not ranked)."""

    enterprise: str
    finance_event: str
    population: str | None = None
    rank: int | None = None
    size: int | None = None
    klass: str | None = None
    score: float | None = None
    tied: bool = False
    indicators: dict[str, dict[str, Any]] = field(default_factory=dict)
    excluded: str | None = None
    consecutive_d_years: int = 0
    listed_by: str | None = None
    action: str | None = None
    surcharge: float | None = None
    values: dict[str, float | None] = field(default_factory=dict)

    def evaluation(self, method: Method, year: int) -> dict[str, Any]:
        """The `evaluation` object of the decision record."""
        return {"method": method.id, "year": year, "population": self.population, "size": self.size, "rank": self.rank,
                "class": self.klass, "score": self.score, "tied": self.tied,
                "consecutive_d_years": self.consecutive_d_years, "indicators": self.indicators}

    def to_dict(self) -> dict[str, Any]:
        return {"enterprise": self.enterprise, "population": self.population, "rank": self.rank, "size": self.size,
                "class": self.klass, "score": self.score, "tied": self.tied, "indicators": self.indicators,
                "excluded": self.excluded, "consecutive_d_years": self.consecutive_d_years, "listed_by": self.listed_by, "action": self.action, "surcharge_yuan_per_kwh": self.surcharge}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _score(weight: float, value: float, benchmark: float) -> float:
    """weight × value ÷ benchmark; divided first when the product leaves the float range."""
    score = weight * value / benchmark
    return score if math.isfinite(score) else weight * (value / benchmark)


class Evaluation:
    """Finance records per (year, enterprise) and the consecutive-D history; closes years.

    Memory: the finance records of open years only (a year's are dropped when it closes), and
    one entry per enterprise whose last class was D (pruned when a year closes without it).
    """

    def __init__(self, method: Method, ruleset: str, registration: Callable[[str], Mapping[str, Any] | None],
                 deadlines: Mapping[str, float] | None = None) -> None:
        self.method = method
        self._deadlines = dict(deadlines or {})  # route -> days: listed routes become orders with a deadline
        self._ruleset = ruleset
        self._registration = registration
        self._finance: dict[int, dict[str, tuple[float, str, Mapping[str, Any]]]] = {}
        self._closed: set[int] = set()
        self._streak: dict[str, tuple[int, int, str]] = {}  # enterprise -> (last D year, consecutive D years, decision id)
        self.keep: set[int] = set()  # years whose ranking `close` keeps in `rankings` (for `rectify evaluate`)
        self.rankings: dict[int, list[Ranked]] = {}
        self.late_finance = 0  # finance.reported for a year already closed: ignored
        self._closed_by_law: Collection[str] = ()
        # rows gathered from every partition of a distributed run, for the next close of a year
        self._adopted: dict[int, dict[str, tuple[Mapping[str, Any] | None, bool]]] = {}

    @property
    def open_years(self) -> list[int]:
        return sorted(self._finance)

    def is_closed(self, year: int) -> bool:
        """Whether `evaluation.closed` has been processed for the year."""
        return year in self._closed

    def on_event(self, event: Mapping[str, Any], epoch: float, closed_by_law: Collection[str]) -> list[Decision]:
        self._closed_by_law = closed_by_law  # the decision layer's live set (for a provisional `rank`)
        if event["type"] == "finance.reported":
            self.record(event, epoch)
            return []
        if event["type"] == "evaluation.closed":
            return self.close(event, closed_by_law)
        return []

    def record(self, event: Mapping[str, Any], epoch: float | None = None) -> None:
        """Keep a finance record: the latest by (event time, id) per enterprise and year."""
        year = event["data"]["year"]
        if year in self._closed:
            self.late_finance += 1
            return
        epoch = epoch_of(event["time"]) if epoch is None else epoch
        per_year = self._finance.setdefault(year, {})
        current = per_year.get(event["subject"])
        if current is None or (epoch, event["id"]) > (current[0], current[1]):
            per_year[event["subject"]] = (epoch, event["id"], kept_copy(event["data"]))

    # ---- ranking --------------------------------------------------------------------------

    def rank(self, year: int, closed_by_law: Collection[str] | None = None) -> list[Ranked]:
        """The ranking of a year from the records held (no side effects)."""
        if closed_by_law is None:
            closed_by_law = self._closed_by_law
        method, digits = self.method, self.method.digits
        records = self._finance.get(year, {})
        adopted = self._adopted.get(year)
        out: list[Ranked] = []
        members: dict[str, list[tuple[Ranked, dict[str, Any]]]] = {p.id: [] for p in method.populations}
        exclusions, populations, params = method.exclusions, method.populations, method.params
        for enterprise in sorted(records):
            _, event_id, data = records[enterprise]
            if adopted is not None:
                registration, closed = adopted[enterprise]
            else:
                registration, closed = self._registration(enterprise), enterprise in closed_by_law
            scope = {"enterprise": registration, "finance": data, "params": params,
                     "closed_by_law": closed, "indicator": {}, "evaluation": {}}
            row = Ranked(enterprise, event_id)
            out.append(row)
            for name, when in exclusions:  # the first exclusion that holds
                if when(scope) is True:
                    row.excluded = name
                    break
            else:
                for population in populations:  # the first population whose `when` holds
                    if population.when(scope) is True:
                        row.population = population.id
                        members[population.id].append((row, scope))
                        break
                else:
                    row.excluded = "no_population"
        for population in method.populations:
            rows = members[population.id]
            if rows:
                self._rank_population(population, rows, year, digits)
        return out

    def _rank_population(self, population: Population, rows: list[tuple[Ranked, dict[str, Any]]], year: int, digits: int) -> None:
        method = self.method
        totals: list[list[float]] = [[] for _ in rows]
        limit = score_limit(len(population.indicators))  # so that an enterprise's total is a finite number
        for indicator in population.indicators:  # one indicator at a time: its values, benchmark, scores, cells
            (top, field), (bottom, under), multiplier = indicator.numerator, indicator.denominator, indicator.multiplier
            column: list[float | None] = []
            flags: list[str | None] = []
            zeros: set[int] = set()  # rows whose denominator is zero (e.g. no emissions at all), or as good as
            for index, (_, scope) in enumerate(rows):
                numerator = (scope[top] or {}).get(field)
                denominator = (scope[bottom] or {}).get(under)
                if not _number(numerator) or not _number(denominator):
                    value, flag = None, MISSING
                elif denominator == 0:
                    value, flag = None, ZERO_DENOMINATOR
                    zeros.add(index)
                else:
                    value, flag = numerator / denominator * multiplier, None
                    if not math.isfinite(value):  # a denominator so small the quotient leaves the float range:
                        value, flag = None, ZERO_DENOMINATOR  # as good as zero, and scored as zero is
                        zeros.add(index)
                column.append(value)
                flags.append(flag)
            if indicator.benchmark == "mean":
                defined = [v for v in column if v is not None]
                benchmark = _mean(defined) if defined else None
            else:
                benchmark = float(indicator.benchmark)
            weight, cap, key = indicator.weight, indicator.cap, indicator.id
            scores: list[float | None] = [None] * len(column)
            if benchmark is not None and benchmark > 0:
                scores = [None if value is None else _score(weight, value, benchmark) for value in column]
                if cap is not None:
                    scores = [None if score is None else min(score, cap) for score in scores]
            if benchmark is None or not benchmark > 0 or not all(x is None or abs(x) <= limit for x in scores):
                # no benchmark, or one so small beside a value that a score is beyond the float range
                # (÷ the number of indicators, so that totals stay finite): a value that is there has no score
                scores = [None] * len(column)
                flags = [NO_BENCHMARK if value is not None else flag for value, flag in zip(column, flags)]
            scored = [x for x in scores if x is not None]
            # a true zero denominator on a "best" indicator (no emissions at all) scores as the best
            # in the population (the cap, when set); a missing value scores 0, or the mean score
            best = cap if cap is not None else max(scored, default=weight)
            average = _mean(scored) if scored else 0.0
            benchmark_shown = None if benchmark is None else round(benchmark, digits)
            best_for_zero, mean_for_missing = indicator.zero_denominator == "best", method.missing == "mean"
            for index, (row, _) in enumerate(rows):
                value, flag, score = column[index], flags[index], scores[index]
                if score is None:
                    if best_for_zero and index in zeros:
                        score = best
                    elif mean_for_missing and flag == MISSING:
                        score = average
                    else:
                        score = 0.0
                shown = None if value is None else round(value, digits)
                row.indicators[key] = {"value": shown, "flag": flag, "benchmark": benchmark_shown, "score": round(score, digits)}
                row.values[key] = shown
                totals[index].append(score)
        for index, (row, _) in enumerate(rows):
            row.score = round(math.fsum(totals[index]), digits) + 0.0
        ordered = sorted((row for row, _ in rows), key=lambda r: (-(r.score or 0.0), r.enterprise))
        size = len(ordered)
        bounds = class_bounds(size, method.classes)
        last_class = method.class_names[-1]
        bound = 0  # the class of the current position (classes by share: positions only grow)
        for position, row in enumerate(ordered, start=1):
            row.rank, row.size = position, size
            if bounds:
                while position > bounds[bound][1]:
                    bound += 1
                row.klass = bounds[bound][0]
            else:  # by score thresholds
                row.klass = next(name for name, low in method.thresholds if low is None or (row.score or 0.0) >= low)
            row.tied = ((position >= 2 and ordered[position - 2].score == row.score)
                        or (position < size and ordered[position].score == row.score))
        by_row = {id(row): scope for row, scope in rows}
        rules, routes, surcharge_when = method.rules, method.routes, method.surcharge_when
        for row in ordered:
            scope = by_row[id(row)]
            previous = self._streak.get(row.enterprise)
            if row.klass == last_class:
                row.consecutive_d_years = previous[1] + 1 if previous is not None and previous[0] == year - 1 else 1
            scope["indicator"] = dict(row.values)
            scope["evaluation"] = {"year": year, "population": row.population, "class": row.klass, "score": row.score,
                                   "rank": row.rank, "size": size, "consecutive_d_years": row.consecutive_d_years}
            for rule in rules:  # the first listing rule that holds lists the enterprise; the first route that holds
                if rule.when(scope) is True:
                    row.listed_by = rule.id
                    row.action = next(action for action, when in routes if when(scope) is True)
                    break
            if surcharge_when is not None and row.consecutive_d_years > 0 and surcharge_when(scope) is True:
                row.surcharge = method.surcharge_table[min(row.consecutive_d_years, len(method.surcharge_table)) - 1]

    # ---- the barrier ----------------------------------------------------------------------

    def close(self, event: Mapping[str, Any], closed_by_law: Collection[str] = ()) -> list[Decision]:
        """`evaluation.closed`: one decision per ranked enterprise, in population then rank order.

        A second close of a year already closed decides nothing (its records are gone).
        """
        year = event["data"]["year"]
        if year in self._closed:
            return []
        ranking = self.rank(year, closed_by_law)
        self._closed.add(year)
        self._finance.pop(year, None)
        self._adopted.pop(year, None)
        order = {p.id: n for n, p in enumerate(self.method.populations)}
        ranked = sorted((r for r in ranking if r.rank is not None), key=lambda r: (order[r.population or ""], r.rank or 0))
        out: list[Decision] = []
        last_class = self.method.class_names[-1]
        for row in ranked:
            previous = self._streak.get(row.enterprise)
            supersedes = previous[2] if previous is not None and row.consecutive_d_years > 1 else None
            decision = self._decision(row, year, event, supersedes)
            out.append(decision)
            if row.klass == last_class:
                self._streak[row.enterprise] = (year, row.consecutive_d_years, decision.id)
            else:
                self._streak.pop(row.enterprise, None)
        for enterprise in [e for e, (last, _, _) in self._streak.items() if last < year - 1]:
            del self._streak[enterprise]
        if year in self.keep:
            self.rankings[year] = ranking
        return out

    # ---- a ranking across partitions (engine/distributed.py) ---------------------------------

    def gather(self, year: int, is_closed: Callable[[str], bool]) -> dict[str, tuple[Any, Any, bool]]:
        """What this engine holds of a year: {enterprise: (finance record, registration, closed by law)}."""
        return {e: (record, self._registration(e), is_closed(e)) for e, record in self._finance.get(year, {}).items()}

    def adopt(self, year: int, rows: Mapping[str, tuple[Any, Any, bool]]) -> None:
        """Rank `year`, at its next close, on rows gathered from every partition (see `gather`)."""
        if year in self._closed:
            return
        self._finance[year] = {e: row[0] for e, row in rows.items()}
        self._adopted[year] = {e: (row[1], row[2]) for e, row in rows.items()}

    def forget_year(self, year: int) -> None:
        """A year closed elsewhere (by the driver of a distributed run): closed here too, records dropped."""
        self._closed.add(year)
        self._finance.pop(year, None)

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Open years' finance, closed years, D streaks, kept rankings, as JSON data."""
        return {
            "finance": [[year, [[e, list(v)] for e, v in by.items()]] for year, by in self._finance.items()],
            "closed": sorted(self._closed),
            "streak": [[e, list(v)] for e, v in self._streak.items()],
            "rankings": [[year, [dataclasses.asdict(r) for r in rows]] for year, rows in self.rankings.items()],
            "late_finance": self.late_finance,
            "adopted": [[year, [[e, list(v)] for e, v in by.items()]] for year, by in self._adopted.items()],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._finance = {year: {e: (v[0], v[1], v[2]) for e, v in by} for year, by in state["finance"]}
        self._closed = set(state["closed"])
        self._streak = {e: (v[0], v[1], v[2]) for e, v in state["streak"]}
        self.rankings = {year: [Ranked(**r) for r in rows] for year, rows in state["rankings"]}
        self.late_finance = state["late_finance"]
        self._adopted = {year: {e: (v[0], v[1]) for e, v in by} for year, by in state.get("adopted", [])}

    def _decision(self, row: Ranked, year: int, event: Mapping[str, Any], supersedes: str | None) -> Decision:
        method = self.method
        if row.listed_by is not None:
            rule = row.listed_by
            basis = next(r.basis for r in method.rules if r.id == rule)
            listed: str | None = method.list
            action = row.action or "transform_upgrade"
        else:
            rule, basis, listed, action = method.classify_rule, method.classify_basis, None, "classify"
        events = tuple(sorted((row.finance_event, event["id"])))
        key = "|".join((rule, str(method.version), row.enterprise, event["time"], action, "", ",".join(events),
                        supersedes or "", str(year)))
        days = self._deadlines.get(action) if listed is not None and action in method.orders else None
        return Decision(
            id="D-" + hashlib.sha256(key.encode()).hexdigest()[:24], rule=rule, rule_version=method.version,
            enterprise=row.enterprise, time=event["time"], list=listed, action=action,
            deadline=plus_days(event["time"], days) if days is not None else None, basis=basis,
            findings=(), events=events, supersedes=supersedes, ruleset=self._ruleset,
            evaluation=row.evaluation(method, year), surcharge_yuan_per_kwh=row.surcharge,
        )


# ---- `rectify evaluate` ---------------------------------------------------------------------

def ranking_json(method: Method, year: int, rows: list[Ranked], closed: bool) -> dict[str, Any]:
    """The ranking as data: ranked enterprises in population then rank order, then the others."""
    order = {p.id: n for n, p in enumerate(method.populations)}
    ranked = sorted((r for r in rows if r.rank is not None), key=lambda r: (order[r.population or ""], r.rank or 0))
    return {"year": year, "method": method.id, "method_version": method.version, "closed": closed,
            "ranking": [r.to_dict() for r in ranked],
            "not_ranked": [{"enterprise": r.enterprise, "reason": r.excluded} for r in rows if r.rank is None]}


def _cell(cell: Mapping[str, Any]) -> str:
    if cell["value"] is None:
        return f"- ({cell['flag']})"
    text = f"{cell['value']:,.2f}"
    return text + (f" ({cell['flag']})" if cell["flag"] else "")


def ranking_text(method: Method, year: int, rows: list[Ranked], closed: bool) -> str:
    """A readable table per population: rank, enterprise, class, score, then each indicator value."""
    state = "closed" if closed else "provisional: no evaluation.closed for this year in the input"
    lines = [f"mu-average evaluation {year} ({method.id} v{method.version}; {state})"]
    data = ranking_json(method, year, rows, closed)
    for population in method.populations:
        members = [r for r in data["ranking"] if r["population"] == population.id]
        lines.append(f"population {population.id}: {len(members)} ranked ({population.title})")
        if not members:
            continue
        ids = [i.id for i in population.indicators]
        lines.append("\t".join(["rank", "enterprise", "class", "score", *ids, "listed", "surcharge"]))
        for r in members:
            listed = f"{r['action']} ({r['listed_by']})" if r["listed_by"] else "-"
            surcharge = "-" if r["surcharge_yuan_per_kwh"] is None else f"{r['surcharge_yuan_per_kwh']} yuan/kWh"
            tie = "=" if r["tied"] else ""
            lines.append("\t".join([f"{r['rank']}{tie}", r["enterprise"], r["class"], f"{r['score']:.6f}",
                                    *(_cell(r["indicators"][i]) for i in ids), listed, surcharge]))
    if data["not_ranked"]:
        lines.append("not ranked: " + ", ".join(f"{r['enterprise']} ({r['reason']})" for r in data["not_ranked"]))
    return "\n".join(lines)
