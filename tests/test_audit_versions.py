"""Rules as of event time (issue 5): versions of one rule with effective periods.

The rule pack is test data (tests/data/audit_versions/rules.yaml), shipped by an in-memory
plugin handed to Engine(extra_plugins=...), as a third-party plugin would ship it.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from engine import Engine, Finding, load_plugins
from engine.plugins import PluginInfo, RulePackSource, hookimpl
from engine.devtools.examples import all_examples, run_example
from engine.judge import RulePackError

PACK = (Path(__file__).resolve().parent / "data" / "audit_versions" / "rules.yaml").read_text(encoding="utf-8")
SUBJECT = "91330200MA2AB1234Y"


def plugin(text: str = PACK) -> types.ModuleType:
    module = types.ModuleType("test_plugin_kilnver")

    @hookimpl
    def rectify_plugin_info() -> PluginInfo:
        return PluginInfo(name="kilnver", version="0.0.1", title="rule versions fixture", industries=("ceramics",),
                          processes=("kiln",))

    @hookimpl
    def rectify_rule_packs() -> list[RulePackSource]:
        return [RulePackSource(plugin="kilnver", origin="kilnver/rules.yaml", text=text)]

    module.rectify_plugin_info = rectify_plugin_info
    module.rectify_rule_packs = rectify_rule_packs
    return module


def reading(id: str, time: str, value: float) -> dict:
    return {"specversion": "1.0", "id": id, "source": "test", "type": "emission.measured", "subject": SUBJECT, "time": time,
            "data": {"outlet": "DA001", "process": "kiln", "pollutant": "a34013", "value": value, "unit": "mg/m3",
                     "period": "hour"}}


def test_an_old_log_replay_applies_the_version_in_force_at_each_event():
    engine = Engine(extra_plugins=[("kilnver", plugin())])
    versions = sorted(r.version for r in engine.rules if r.id == "kilnver.kiln.pm")
    assert versions == [1, 2]
    log = [
        {"specversion": "1.0", "id": "r", "source": "test", "type": "enterprise.registered", "subject": SUBJECT,
         "time": "2022-01-01T00:00:00+08:00",
         "data": {"name": "Kiln Works", "industry": "ceramics", "district": "Cixi", "in_park": True, "eia_approved_on": "2015-06-01"}},
        reading("a", "2023-06-01T10:00:00+08:00", 25),  # old limit 30: silent
        reading("b", "2023-12-31T23:00:00+08:00", 35),  # last day of version 1: exceeds 30
        reading("c", "2024-01-01T00:00:00+08:00", 25),  # first day of version 2: exceeds 20
    ]
    findings = [r for r in engine.run(log) if isinstance(r, Finding) and r.rule == "kilnver.kiln.pm"]
    assert [(f.event, f.rule_version, f.limit["value"], f.basis["table"]) for f in findings] == [
        (("b",), 1, 30, "old limit"), (("c",), 2, 20, "new limit")]
    assert findings[0].to_dict()["rule_version"] == 1
    assert findings[0].id != findings[1].id


def test_the_pack_examples_pass_for_both_versions():
    plugins = load_plugins(extra=[("kilnver", plugin())], autoload=False)
    results = [run_example(plugins, p, rule, example) for p, rule, example in all_examples(plugins)]
    assert len(results) == 2 and all(r.problem is None for r in results), results


@pytest.mark.parametrize("edit, message", [
    (("    valid_from: \"2024-01-01\"", "    valid_from: \"2023-12-31\""), "in force on the same day"),
    (("    valid_until: \"2023-12-31\"\n", ""), "versions of one rule need distinct `version` numbers"),
    (("    version: 2\n", "    version: 1\n"), "duplicate rule id"),
])
def test_overlapping_or_undated_versions_are_refused(edit, message):
    text = PACK.replace(*edit)
    assert text != PACK
    with pytest.raises(RulePackError, match=message):
        Engine(plugins=load_plugins(extra=[("kilnver", plugin(text))], autoload=False))
