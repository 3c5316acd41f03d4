"""Rule-pack examples as tests: events given → findings (or decisions) expected, run through a
real Engine.

Every rule carries examples, and so may every decision rule (the `land` pack's all do); the test
suite runs all of them (tests/test_rule_examples.py) and `python -m engine.devtools.examples
[RULES.yaml ...]` runs them from the command line while a pack is being written. A decision
example may give `as_of`, the reference time of its run (orders and watches due before it fall
due); its `expect` lists the decisions of that rule, each matched as a subset of the record.
A rule's example may also give `gaps`, the data-gap records of that rule, matched the same way.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.judge import parse_pack
from engine.pipeline import Engine
from engine.plugins import PluginSet, load_plugins
from engine.records import DataGap, Decision, Finding, Quarantined

DEFAULT_SUBJECT = "91330200MA2AB1234Y"


@dataclass(frozen=True, slots=True)
class ExampleResult:
    rule: str
    name: str
    problem: str | None


def envelope(given: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fill the envelope fields an example may leave out."""
    events = []
    for number, item in enumerate(given, start=1):
        event = {"specversion": "1.0", "id": f"ex-{number}", "source": "example", "subject": DEFAULT_SUBJECT}
        event.update(item)
        events.append(event)
    return events


def subset_problem(expected: Any, actual: Any, path: str = "") -> str | None:
    """Why `actual` does not contain `expected` (numbers compared to 1e-9), or None."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{path or 'finding'}: expected an object, got {actual!r}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}{key}: missing"
            problem = subset_problem(value, actual[key], f"{path}{key}.")
            if problem:
                return problem
        return None
    if isinstance(expected, (int, float)) and not isinstance(expected, bool) and isinstance(actual, (int, float)):
        if math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-9):
            return None
        return f"{path.rstrip('.')}: expected {expected!r}, got {actual!r}"
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return f"{path.rstrip('.')}: expected {len(expected)} items, got {len(actual)}"
        for index, (e, a) in enumerate(zip(expected, actual)):
            problem = subset_problem(e, a, f"{path}[{index}].")
            if problem:
                return problem
        return None
    if expected != actual:
        return f"{path.rstrip('.')}: expected {expected!r}, got {actual!r}"
    return None


def run_example(plugins: PluginSet, plugin: str, rule_id: str, example: Mapping[str, Any]) -> ExampleResult:
    """Run one example (of a rule, or of a decision rule) on a fresh engine configured as the example asks."""
    parameters = {plugin: dict(example["parameters"])} if example.get("parameters") else None
    # an example is one enterprise's story: its own events move the clock (quorum 1); the guard
    # against one source moving time for everyone (engine/normalise/clock.py) has no one to guard
    engine = Engine(plugins=plugins, options=example.get("options", ()), parameters=parameters, clock_quorum=1)
    decision = any(r.id == rule_id for r in (*engine.decision_rules, *engine.inactive_decisions))
    active = engine.decision_rules if decision else engine.rules
    inactive = engine.inactive_decisions if decision else engine.inactive_rules
    if all(r.id != rule_id for r in active):
        if not example["expect"] and any(r.id == rule_id for r in inactive):
            return ExampleResult(rule_id, example["name"], None)  # inactive here, so silent as expected
        reason = next((r.reason for r in inactive if r.id == rule_id), "not loaded")
        return ExampleResult(rule_id, example["name"], f"rule is inactive in this example: {reason}")
    records = list(engine.run(envelope(example["given"]), as_of=example.get("as_of")))
    quarantined = [r for r in records if isinstance(r, Quarantined)]
    if quarantined:
        return ExampleResult(rule_id, example["name"], f"given event quarantined: {quarantined[0].error}")
    kind, what = (Decision, "decision") if decision else (Finding, "finding")
    found = [r.to_dict() for r in records if isinstance(r, kind) and r.rule == rule_id]
    expected = example["expect"]
    if len(found) != len(expected):
        return ExampleResult(rule_id, example["name"], f"expected {len(expected)} {what}(s), got {len(found)}: {found}")
    for index, (want, got) in enumerate(zip(expected, found)):
        problem = subset_problem(want, got)
        if problem:
            return ExampleResult(rule_id, example["name"], f"{what} {index}: {problem}")
    if "gaps" in example:  # the data gaps of this rule, when the example says which
        gaps = [r.to_dict() for r in records if isinstance(r, DataGap) and r.rule == rule_id]
        if len(gaps) != len(example["gaps"]):
            return ExampleResult(rule_id, example["name"], f"expected {len(example['gaps'])} data gap(s), got {len(gaps)}: {gaps}")
        for index, (want, got) in enumerate(zip(example["gaps"], gaps)):
            problem = subset_problem(want, got)
            if problem:
                return ExampleResult(rule_id, example["name"], f"data gap {index}: {problem}")
    return ExampleResult(rule_id, example["name"], None)


def all_examples(plugins: PluginSet) -> list[tuple[str, str, Mapping[str, Any]]]:
    """Every (plugin, rule id, example) of the loaded rule packs, rules and decision rules, sorted by id."""
    pairs = []
    for source in plugins.rule_packs:
        pack = parse_pack(source)
        for rule in [*pack.document.get("rules", []), *pack.document.get("decisions", [])]:
            pairs.extend((pack.plugin, rule["id"], example) for example in rule.get("examples", ()))
    return sorted(pairs, key=lambda item: (item[1], item[2]["name"]))


def main(argv: list[str]) -> int:
    plugins = load_plugins()
    wanted = {arg.split("/")[-2] for arg in argv if "/" in arg}
    failures = 0
    count = 0
    for plugin, rule_id, example in all_examples(plugins):
        if wanted and plugin not in wanted:
            continue
        count += 1
        result = run_example(plugins, plugin, rule_id, example)
        if result.problem:
            failures += 1
            print(f"FAIL {result.rule} — {result.name}: {result.problem}")
    print(f"{count - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
