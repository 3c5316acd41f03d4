"""A fourth industry plugin, installed as its own distribution, loads with no change to engine/.

The plugin's source is test data (tests/data/rectify_ceramics): a normal setuptools project
with an entry point in the group ``rectify.plugins``. The module fixture pip-installs it
(offline, --no-deps --no-build-isolation) into a private ``--target`` directory, and the
tests run the real ``rectify`` CLI in a subprocess with that directory on PYTHONPATH, so
importlib.metadata sees the distribution exactly as it would see one installed from PyPI.

tests/data/rectify_broken is a second distribution whose module raises ImportError: it must
be reported by name with its cause while the other plugins still load. The rule-id conflict
tests need no installation: they hand in-memory plugin modules to load_plugins(extra=...).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, load_plugins
from engine.plugins import PluginInfo, RulePackSource, hookimpl
from engine.plugins import PluginConflict
from engine.judge import RulePackError, compile_rules, parse_pack

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
BUILT_IN = {"foundry", "dyeing", "surface_treatment", "land"}
VERSIONS = {"foundry": "0.2.0", "dyeing": "0.2.0", "surface_treatment": "0.2.0", "land": "0.2.0", "ceramics": "0.1.0"}
CERAMICS_RULE = "ceramics.fixture.kiln.pm"
SUBJECT = "91330200MA2AB1234Y"  # a valid unified social credit code
CLI = "from engine.cli import main; main()"


# ---- installation (once per module) ---------------------------------------------------


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    """{'ceramics': site dir, 'broken': site dir}: each distribution in its own --target.

    Installed offline from copies (a build writes build/ and *.egg-info next to the source);
    the two pip runs go in parallel.
    """
    root = tmp_path_factory.mktemp("third_party")
    jobs = {}
    for key, project in (("ceramics", "rectify_ceramics"), ("broken", "rectify_broken")):
        copy = root / "src" / project
        shutil.copytree(DATA / project, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        site = root / f"site_{key}"
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                   "--disable-pip-version-check", "--no-input", "--quiet", "--target", str(site), str(copy)]
        jobs[key] = (site, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for key, (_, job) in jobs.items():
        output, _ = job.communicate(timeout=120)
        assert job.returncode == 0, f"pip install of the {key} test distribution failed:\n{output}"
    return {key: site for key, (site, _) in jobs.items()}


def _env(paths: list[Path], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RECTIFY_DISABLE_PLUGINS", "RECTIFY_PLUGINS_AUTOLOAD")}
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in paths] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def _python(code: str, *args: str, paths: list[Path], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    # cwd is a temporary directory, so `engine` is imported from the installed project, not from ''.
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=_env(paths, **extra))


def rectify(*args: str, paths: list[Path], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the `rectify` CLI (engine.cli:main, the console script) in a fresh interpreter."""
    return _python(CLI, *args, paths=paths, cwd=cwd, **extra)


def _plugin_lines(stdout: str) -> dict[str, list[str]]:
    return {line.split("\t")[0]: line.split("\t")[1:] for line in stdout.splitlines() if line.strip()}


def _log_events(stderr: str) -> list[dict[str, Any]]:
    events = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            events.append(record)
    return events


def _event(id: str, type: str, time: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": id, "source": "test", "type": type, "subject": SUBJECT, "time": time, "data": data}


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    """A ceramics enterprise; one hourly kiln PM reading over the limit (45 > 30), one under (25)."""
    path = tmp_path_factory.mktemp("events") / "kiln.jsonl"
    events = [
        _event("c-1", "enterprise.registered", "2024-01-01T00:00:00+08:00",
               {"name": "Kiln Works", "industry": "ceramics", "district": "Cixi", "in_park": True,
                "eia_approved_on": "2015-06-01"}),
        _event("c-2", "emission.measured", "2024-03-01T10:00:00+08:00",
               {"outlet": "DA001", "process": "kiln", "pollutant": "a34013", "value": 45, "unit": "mg/m3", "period": "hour"}),
        _event("c-3", "emission.measured", "2024-03-01T11:00:00+08:00",
               {"outlet": "DA001", "process": "kiln", "pollutant": "a34013", "value": 25, "unit": "mg/m3", "period": "hour"}),
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


# ---- the ceramics plugin, through its entry point -------------------------------------


def test_the_distribution_is_installed_outside_the_repo_and_seen_through_its_entry_point(sites, tmp_path):
    code = (
        "import json\n"
        "from importlib import metadata\n"
        "eps = [e for e in metadata.entry_points(group='rectify.plugins') if e.name == 'ceramics']\n"
        "import rectify_ceramics\n"
        "print(json.dumps({'eps': [[e.dist.name, e.value] for e in eps], 'file': rectify_ceramics.__file__}))\n"
    )
    result = _python(code, paths=[sites["ceramics"]], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert [(name.replace("_", "-").lower(), value) for name, value in found["eps"]] == [("rectify-ceramics", "rectify_ceramics")]
    assert Path(found["file"]).resolve().is_relative_to(sites["ceramics"].resolve())


def test_rectify_plugins_lists_ceramics_alongside_the_built_in_plugins(sites, tmp_path):
    result = rectify("plugins", paths=[sites["ceramics"]], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = _plugin_lines(result.stdout)
    assert set(lines) == BUILT_IN | {"ceramics"}
    assert lines["ceramics"][:2] == ["0.1.0", "1 active rules"]
    assert "FAILED" not in result.stdout and "blocked" not in result.stdout
    ready = [e for e in _log_events(result.stderr) if e["event"] == "engine_ready"]
    assert ready and ready[0]["plugins"] == sorted(BUILT_IN | {"ceramics"})


def test_without_the_distribution_ceramics_is_absent():
    # this test process does not have the --target directory on its path
    assert set(load_plugins().names) == BUILT_IN


def test_rectify_rules_lists_the_ceramics_rule(sites, tmp_path):
    result = rectify("rules", paths=[sites["ceramics"]], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines() if line.strip()]
    # id, plugin, basis, verified, state
    assert [row for row in rows if row[1] == "ceramics"] == [[CERAMICS_RULE, "ceramics", "test fixture", "UNVERIFIED", "active"]]
    assert {row[1] for row in rows} == BUILT_IN | {"ceramics"}


def test_rectify_run_yields_exactly_the_ceramics_finding(sites, events_file, tmp_path):
    summary_path = tmp_path / "summary.json"
    result = rectify("run", str(events_file), "--no-progress", "--summary-json", str(summary_path),
                     paths=[sites["ceramics"]], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 1, records
    finding = records[0]
    assert finding["record"] == "finding"
    assert finding["rule"] == CERAMICS_RULE and finding["plugin"] == "ceramics"
    assert finding["enterprise"] == SUBJECT and finding["event"] == ["c-2"]
    assert finding["time"] == "2024-03-01T10:00:00+08:00" and finding["pollutant"] == "a34013"
    assert finding["measured"] == {"value": 45.0, "unit": "mg/m3"} and finding["judged"] == 45.0
    assert finding["limit"] == {"value": 30, "unit": "mg/m3"}
    assert finding["verified"] is False and finding["basis"]["standard"] == "test fixture"
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert (summary["read"], summary["processed"], summary["quarantined"]) == (3, 3, 0)
    assert summary["findings"] == {"ceramics": 1} and summary["unregistered_events"] == 0


def test_the_ceramics_examples_pass(sites, tmp_path):
    # engine.examples keeps only the packs named by their folder: ".../ceramics/rules.yaml"
    # (the built-in plugins are blocked only to keep the four example engines quick to build)
    result = _python("import sys; from engine.devtools.examples import main; sys.exit(main(sys.argv[1:]))",
                     "rectify_ceramics/ceramics/rules.yaml", paths=[sites["ceramics"]], cwd=tmp_path,
                     RECTIFY_DISABLE_PLUGINS=",".join(sorted(BUILT_IN)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "4 passed, 0 failed"


def test_disabling_ceramics_removes_it_and_its_industry(sites, events_file, tmp_path):
    # a blocked plugin is not even imported: the broken one is not reported as FAILED
    listed = rectify("plugins", paths=[sites["ceramics"], sites["broken"]], cwd=tmp_path,
                     RECTIFY_DISABLE_PLUGINS="ceramics, broken")
    assert listed.returncode == 0, listed.stderr
    lines = _plugin_lines(listed.stdout)
    assert lines["ceramics"] == ["blocked"] and lines["broken"] == ["blocked"]
    assert "FAILED" not in listed.stdout
    assert set(lines) - {"ceramics", "broken"} == BUILT_IN

    run = rectify("run", str(events_file), "--no-progress", paths=[sites["ceramics"]], cwd=tmp_path,
                  RECTIFY_DISABLE_PLUGINS="ceramics")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert not [r for r in records if r["record"] == "finding"]
    quarantined = {r["line"]: r["error"] for r in records if r["record"] == "quarantine"}
    assert sorted(quarantined) == [1, 2, 3]
    # the industry and the process existed only because the plugin declared them
    assert quarantined[1].startswith("data.industry: 'ceramics' is not one of ")
    assert "'foundry'" in quarantined[1] and "'dyeing'" in quarantined[1]
    assert quarantined[2].startswith("data.process: 'kiln' is not one of ")
    assert quarantined[3].startswith("data.process: 'kiln' is not one of ")


def test_no_engine_or_core_schema_file_mentions_ceramics():
    """The point: a new industry needs no change to engine/ (nor to the core schemas or metadata)."""
    offenders = []
    for folder in (REPO / "engine", REPO / "schemas"):
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            if re.search(r"ceramic|kiln", path.read_text(encoding="utf-8", errors="replace"), re.IGNORECASE):
                offenders.append(str(path.relative_to(REPO)))
    if re.search(r"ceramic", (REPO / "pyproject.toml").read_text(encoding="utf-8"), re.IGNORECASE):
        offenders.append("pyproject.toml")
    assert offenders == []


# ---- a plugin that fails to import -----------------------------------------------------


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_still_load(sites, tmp_path):
    paths = [sites["broken"], sites["ceramics"]]
    listed = rectify("plugins", paths=paths, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = _plugin_lines(listed.stdout)
    assert set(lines) == BUILT_IN | {"ceramics", "broken"}
    assert lines["broken"][0] == "FAILED"
    cause = lines["broken"][1]
    assert "rectify_broken" in cause
    assert "ImportError: rectify_broken needs kiln_firmware_sdk, which is not installed" in cause
    for name in BUILT_IN | {"ceramics"}:  # loaded, with their rules
        assert lines[name][0] == VERSIONS[name] and lines[name][1] != "0 active rules", lines[name]
    warnings = [e for e in _log_events(listed.stderr) if e["event"] == "plugin_failed"]
    assert [(w["plugin"], w["level"]) for w in warnings] == [("broken", "warning")]
    assert "kiln_firmware_sdk" in warnings[0]["cause"]


# ---- two plugins and one rule id -------------------------------------------------------

PACK = """\
pack: {pack}
version: "test.1"
title: {{zh: 测试, en: Test pack}}
rules:
  - id: {rule_id}
    version: 1
    title: {{zh: 测试规则, en: Test rule}}
    applies_to: {{type: emission.measured, pollutant: a34013}}
    period: hour
    parameters: {{limit: {{value: 30, unit: mg/m3, status: NF, description: set for this test}}}}
    condition: judged > limit
    basis: {{standard: test fixture}}
    verified: false
    severity: minor
    examples:
      - name: silent
        given: [{{type: emission.measured, time: "2024-03-01T10:00:00+08:00", data: {{outlet: DA001, process: other, pollutant: a34013, value: 1, unit: mg/m3, period: hour}}}}]
        expect: []
"""


def _plugin(name: str, packs: list[tuple[str, str]]) -> types.ModuleType:
    """An in-memory plugin module named `name` shipping packs [(pack, rule id), ...]."""
    module = types.ModuleType(f"test_plugin_{name}")

    @hookimpl
    def rectify_plugin_info() -> PluginInfo:
        return PluginInfo(name=name, version="0.0.1", title=f"test plugin {name}")

    @hookimpl
    def rectify_rule_packs() -> list[RulePackSource]:
        return [RulePackSource(plugin=name, origin=f"{name}/rules{i}.yaml", text=PACK.format(pack=pack, rule_id=rule_id))
                for i, (pack, rule_id) in enumerate(packs)]

    module.rectify_plugin_info = rectify_plugin_info
    module.rectify_rule_packs = rectify_rule_packs
    return module


def test_two_plugins_claiming_one_rule_id_is_an_error_naming_both():
    # 'tiles' ships a pack that claims kilns' namespace and kilns' rule id
    plugins = load_plugins(extra=[("kilns", _plugin("kilns", [("kilns", "kilns.pm")])),
                                  ("tiles", _plugin("tiles", [("kilns", "kilns.pm")]))], autoload=False)
    assert plugins.names == ("kilns", "tiles") and plugins.failures == ()
    # Rule ids are namespaced by pack (= plugin name), so the claim is refused at the pack,
    # and the error names both plugins.
    with pytest.raises(RulePackError) as raised:
        Engine(plugins=plugins)
    assert str(raised.value) == "tiles/rules0.yaml: pack 'kilns' is shipped by plugin 'tiles'; they must match"


def test_a_rule_id_outside_the_plugins_namespace_is_an_error_naming_it():
    plugins = load_plugins(extra=[("kilns", _plugin("kilns", [("kilns", "kilns.pm")])),
                                  ("tiles", _plugin("tiles", [("tiles", "kilns.pm")]))], autoload=False)
    with pytest.raises(RulePackError) as raised:
        Engine(plugins=plugins)
    assert str(raised.value) == "tiles/rules0.yaml: rule 'kilns.pm' must start with 'tiles.'"


def test_the_duplicate_rule_id_guard_names_both_plugins():
    """The last line of defence in compile_rules, fed packs that bypass the namespace check."""
    kilns = parse_pack(RulePackSource("kilns", "kilns/rules.yaml", PACK.format(pack="kilns", rule_id="kilns.pm")))
    tiles = parse_pack(RulePackSource("tiles", "tiles/rules.yaml", PACK.format(pack="tiles", rule_id="tiles.pm")))
    tiles = type(tiles)(plugin=tiles.plugin, origin=tiles.origin,
                        document={**tiles.document, "rules": [{**tiles.document["rules"][0], "id": "kilns.pm"}]})
    with pytest.raises(RulePackError, match=r"duplicate rule id 'kilns\.pm': defined by plugin 'kilns' and by plugin 'tiles'"):
        compile_rules([tiles, kilns])


def test_one_plugin_repeating_a_rule_id_is_an_error():
    plugins = load_plugins(extra=[("kilns", _plugin("kilns", [("kilns", "kilns.pm"), ("kilns", "kilns.pm")]))], autoload=False)
    with pytest.raises(RulePackError, match=r"duplicate rule id 'kilns\.pm'"):
        Engine(plugins=plugins)


def test_two_plugins_with_one_name_is_a_conflict():
    with pytest.raises(PluginConflict, match="'kilns'"):
        load_plugins(extra=[("kilns", _plugin("kilns", [("kilns", "kilns.pm")])),
                            ("kilns", _plugin("kilns", [("kilns", "kilns.other")]))], autoload=False)
