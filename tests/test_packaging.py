"""A non-editable build ships what the engine reads at run time: schemas, rule packs, py.typed.

The editable install used for development reads everything from the source tree, so a
missing package-data entry would only show up for someone installing the wheel. This test
builds the wheel (offline, from a copy of the repository so no build/ or *.egg-info lands in
the tree) and looks inside it.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILT_IN = ("foundry", "dyeing", "surface_treatment", "land")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache",
        ".ruff_cache", ".hypothesis", ".benchmarks", "rectify-demo"))
    out = root / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--no-input", "--quiet", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as archive:
        yield archive


def _names(archive: zipfile.ZipFile) -> set[str]:
    return set(archive.namelist())


def _dist_info_file(archive: zipfile.ZipFile, name: str) -> str:
    matches = [n for n in archive.namelist() if n.count("/") == 1 and n.split("/")[0].endswith(".dist-info") and n.endswith("/" + name)]
    assert len(matches) == 1, matches
    return archive.read(matches[0]).decode("utf-8")


def test_wheel_ships_the_core_schemas(wheel):
    names = _names(wheel)
    expected = {"schemas/envelope.schema.json", "schemas/rulepack.schema.json"}
    expected |= {f"schemas/{p.name}" for p in (REPO / "schemas").glob("*.json")}
    events = sorted((REPO / "schemas" / "events").glob("*.json"))
    assert events, "the repository has no event schemas?"
    expected |= {f"schemas/events/{p.name}" for p in events}
    assert sorted(expected - names) == []


def test_wheel_ships_every_plugins_rule_pack_and_schemas(wheel):
    names = _names(wheel)
    expected = set()
    for plugin in BUILT_IN:
        folder = REPO / "plugins" / plugin
        expected.add(f"plugins/{plugin}/__init__.py")
        expected |= {f"plugins/{plugin}/{p.name}" for p in folder.glob("*.yaml")}
        expected |= {f"plugins/{plugin}/schemas/{p.name}" for p in (folder / "schemas").glob("*.json")}
        assert f"plugins/{plugin}/rules.yaml" in expected
    assert sorted(expected - names) == []


def test_every_plugin_folder_in_the_repo_is_built_in_and_packaged(wheel):
    """A new plugins/<x>/ without a pyproject entry would silently be missing from the wheel."""
    folders = sorted(p.name for p in (REPO / "plugins").iterdir() if (p / "__init__.py").is_file())
    assert folders == sorted(BUILT_IN)
    names = _names(wheel)
    for folder in folders:
        for path in (REPO / "plugins" / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".yaml", ".json"):
                assert path.relative_to(REPO).as_posix() in names


def test_wheel_ships_the_engine_typed_marker(wheel):
    names = _names(wheel)
    assert "engine/py.typed" in names
    assert {"engine/__init__.py", "engine/cli/__init__.py", "engine/pipeline.py", "engine/plugins/__init__.py"} <= names
    # every module and policy file of every stage package: a new folder missing from pyproject fails here
    shipped = {path.relative_to(REPO).as_posix() for path in (REPO / "engine").rglob("*")
               if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".yaml")}
    assert shipped <= names


def test_wheel_declares_the_plugins_and_the_console_script(wheel):
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # keep the names as written
    parser.read_string(_dist_info_file(wheel, "entry_points.txt"))
    assert dict(parser["rectify.plugins"]) == {name: f"plugins.{name}:plugin" for name in BUILT_IN}
    assert dict(parser["console_scripts"]) == {"rectify": "engine.cli:main"}


def test_wheel_does_not_ship_tests_or_test_plugins(wheel):
    names = _names(wheel)
    assert not [n for n in names if n.startswith("tests/") or "rectify_ceramics" in n or "rectify_broken" in n]
