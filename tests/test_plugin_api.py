"""The plugin API (`engine.plugins`): one import place, a helper for the usual hooks, old paths deprecated."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import plugins.dyeing
import plugins.foundry
import plugins.land
import plugins.surface_treatment
from engine import Engine
from engine.plugins import EventSchema, IndustryPlugin, Metric, PluginInfo, RulePackSource, hookimpl, load_plugins


@pytest.mark.parametrize("old,names", [
    ("engine.contributions", ["EventSchema", "Metric", "PluginInfo", "RulePackSource"]),
    ("engine.hookspecs", ["hookimpl", "hookspec"]),
])
def test_the_old_import_paths_still_work_with_a_deprecation_warning(old, names):
    code = textwrap.dedent(f"""
        import warnings
        warnings.simplefilter("error", DeprecationWarning)
        try:
            import {old}
        except DeprecationWarning as warning:
            print("warned:", warning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import importlib, engine.plugins
        module = importlib.import_module("{old}")
        assert all(getattr(module, n) is getattr(engine.plugins, n) for n in {names!r})
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "warned:" in result.stdout and "engine.plugins" in result.stdout


def test_the_built_in_plugins_are_industry_plugins_answering_every_hook():
    for module in (plugins.foundry, plugins.dyeing, plugins.surface_treatment, plugins.land):
        plugin = module.plugin
        assert isinstance(plugin, IndustryPlugin)
        info = plugin.rectify_plugin_info()
        assert isinstance(info, PluginInfo) and info.name == plugin.name and info.version == module.__version__
        assert all(isinstance(p, RulePackSource) and p.plugin == plugin.name for p in plugin.rectify_rule_packs())
        assert all(isinstance(s, EventSchema) and s.plugin == plugin.name for s in plugin.rectify_event_schemas())
        assert all(isinstance(m, Metric) and m.plugin == plugin.name for m in plugin.rectify_metrics())
    assert [m.name for m in plugins.foundry.plugin.rectify_metrics()] == ["foundry_energy_kgce_per_t"]


def test_an_industry_plugin_and_a_hook_module_load_side_by_side():
    """An IndustryPlugin object and a module of @hookimpl functions register the same way."""
    import types

    kiln = types.ModuleType("kiln_plugin")

    @hookimpl
    def rectify_plugin_info() -> PluginInfo:
        return PluginInfo(name="kiln", version="9", title="kilns", industries=("kiln",))

    kiln.rectify_plugin_info = rectify_plugin_info
    glass = IndustryPlugin(name="glass", version="1", title="glass", package="plugins.dyeing", industries=("glass",),
                           rule_packs=())
    loaded = load_plugins(extra=[("kiln", kiln), ("glass", glass)], autoload=False)
    assert loaded.names == ("glass", "kiln") and loaded.failures == ()
    engine = Engine(plugins=loaded)
    assert {"glass", "kiln"} <= set(engine.validator.industries)
