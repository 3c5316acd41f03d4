"""Ceramics (kiln) plugin for rectify: a TEST FIXTURE, not a real rule pack.

It exists to prove that a third-party industry plugin, installed as its own distribution,
is picked up through the ``rectify.plugins`` entry point with no change to ``engine/``.
Its single limit is a value set by the deploying authority for the test, not a standard's.
"""

from __future__ import annotations

from engine.plugins import PluginInfo, RulePackSource, hookimpl

__version__ = "0.1.0"

NAME = "ceramics"


@hookimpl
def rectify_plugin_info() -> PluginInfo:
    return PluginInfo(
        name=NAME,
        version=__version__,
        title="Ceramics kilns (test fixture plugin)",
        industries=("ceramics",),
        processes=("kiln",),
    )


@hookimpl
def rectify_rule_packs() -> list[RulePackSource]:
    return [RulePackSource.from_package(NAME, __name__, "rules.yaml")]
