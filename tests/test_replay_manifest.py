"""Replay pins its rule set (issue 15, item 9): `rectify run` records what made the rule set
(LOG.manifest.json, or the store's meta), and `rectify replay` rebuilds exactly that engine,
whatever else is installed; a plugin missing or at another version is refused by name.

Tried as a new user would: the ceramics test distribution (tests/data/rectify_ceramics) is
pip-installed into a private directory and put on PYTHONPATH, like a plugin from PyPI.

What main (69b045b) did: after installing any extra plugin, every older log failed
`replay --verify` at field 'ruleset' (exit 1) until the user found the right
`--disable-plugin` flags.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.devtools.demo import generate_city, write_jsonl
from test_third_party_plugin import rectify as rectify_with
from test_third_party_plugin import sites  # noqa: F401 - the fixture installing the test distributions


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "events.jsonl"
    write_jsonl(generate_city(enterprises=120, days=1, seed=7).events, path)
    return path


def test_an_extra_installed_plugin_does_not_break_the_replay_of_an_older_log(sites, events, tmp_path):
    out = tmp_path / "out.jsonl"
    made = rectify_with("run", str(events), "--out", str(out), paths=[], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["plugins"] == {"dyeing": "0.2.0", "foundry": "0.2.0", "land": "0.2.0", "surface_treatment": "0.2.0"}
    assert manifest["ruleset"] == json.loads(out.read_text().splitlines()[0])["ruleset"]
    replayed = rectify_with("replay", str(events), "--verify", str(out), paths=[sites["ceramics"]], cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replay matches" in replayed.stdout
    assert "ignoring installed plugin ceramics 0.1.0: the log was made without it" in replayed.stderr
    # without the manifest, today's installed set decides, and the rule set differs (what main always did)
    ignored = rectify_with("replay", str(events), "--verify", str(out), "--ignore-manifest", paths=[sites["ceramics"]],
                           cwd=tmp_path)
    assert ignored.returncode == 1 and "field 'ruleset'" in ignored.stdout


def test_options_parameters_and_as_of_come_from_the_manifest(events, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("foundry:\n  energy_kgce_per_t_castings: 550\nprogramme:\n  repeat_count: 2\n")
    out = tmp_path / "out.jsonl"
    made = rectify_with("run", str(events), "--out", str(out), "--option", "dyeing.gb4287.table3", "--params", str(params),
                        "--as-of", "2025-01-01T00:00:00+08:00", "--quarantine", str(tmp_path / "q.jsonl"),
                        paths=[], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    replayed = rectify_with("replay", str(events), "--verify", str(out), paths=[], cwd=tmp_path)
    assert replayed.returncode == 0 and "replay matches" in replayed.stdout, replayed.stdout + replayed.stderr


def test_a_plugin_missing_or_at_another_version_is_refused_by_name(sites, events, tmp_path):
    out = tmp_path / "with-ceramics.jsonl"
    made = rectify_with("run", str(events), "--out", str(out), paths=[sites["ceramics"]], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    missing = rectify_with("replay", str(events), "--verify", str(out), paths=[], cwd=tmp_path)
    assert missing.returncode == 3
    assert "the log was made with plugin(s) not installed: ceramics 0.1.0: install those versions" in missing.stderr
    path = Path(f"{out}.manifest.json")
    manifest = json.loads(path.read_text())
    manifest["plugins"]["ceramics"] = "0.0.9"
    path.write_text(json.dumps(manifest))
    other = rectify_with("replay", str(events), "--verify", str(out), paths=[sites["ceramics"]], cwd=tmp_path)
    assert other.returncode == 3
    assert "at another version: ceramics 0.0.9 (installed: 0.1.0)" in other.stderr


def test_a_manifest_that_does_not_rebuild_the_logs_rule_set_is_refused(events, tmp_path):
    out = tmp_path / "out.jsonl"
    assert rectify_with("run", str(events), "--out", str(out), paths=[], cwd=tmp_path).returncode == 0
    path = Path(f"{out}.manifest.json")
    manifest = json.loads(path.read_text())
    manifest["options"] = ["dyeing.gb4287.table3"]  # edited: not what made the log
    path.write_text(json.dumps(manifest))
    result = rectify_with("replay", str(events), "--verify", str(out), paths=[], cwd=tmp_path)
    assert result.returncode == 3 and "the rebuilt rule set sha256:" in result.stderr and "is not the log's" in result.stderr
    path.write_text('{"manifest": 1, "ruleset": "x"}')
    broken = rectify_with("replay", str(events), "--verify", str(out), paths=[], cwd=tmp_path)
    assert broken.returncode == 3 and "not a valid manifest" in broken.stderr


def test_a_store_keeps_its_manifest(sites, events, tmp_path):
    store = tmp_path / "d.db"
    made = rectify_with("run", str(events), "--store", str(store), paths=[], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    replayed = rectify_with("replay", str(events), "--verify", str(store), paths=[sites["ceramics"]], cwd=tmp_path)
    assert replayed.returncode == 0 and "replay matches" in replayed.stdout, replayed.stdout + replayed.stderr
