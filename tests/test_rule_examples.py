"""Every example of every rule pack runs through a real Engine (events given → findings expected)."""

from __future__ import annotations

import pytest

from engine import load_plugins
from engine.devtools.examples import all_examples, run_example

PLUGINS = load_plugins()
EXAMPLES = all_examples(PLUGINS)


def test_every_rule_has_examples_and_all_three_plugins_contribute():
    rules = {rule_id for _, rule_id, _ in EXAMPLES}
    plugins = {plugin for plugin, _, _ in EXAMPLES}
    assert {"foundry", "dyeing", "surface_treatment"} <= plugins
    # the schema requires examples on every rule, so every rule of every pack appears here
    from engine.judge import parse_pack

    declared = {r["id"] for source in PLUGINS.rule_packs for r in parse_pack(source).document.get("rules", [])}
    assert rules == declared


@pytest.mark.parametrize(("plugin", "rule_id", "example"), EXAMPLES,
                         ids=[f"{rule_id}:{example['name'][:40]}" for _, rule_id, example in EXAMPLES])
def test_rule_example(plugin, rule_id, example):
    result = run_example(PLUGINS, plugin, rule_id, example)
    assert result.problem is None, result.problem
