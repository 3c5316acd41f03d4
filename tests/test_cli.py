"""The `rectify` command line, run as a real subprocess: outputs, summary, exit codes, determinism."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engine import Engine
from engine.devtools.demo import generate_city, write_jsonl
from engine.ingest import JsonlFiles
from engine.ingest.archive import Archive
from engine.run import archive_files

RECTIFY = [sys.executable, "-c", "from engine.cli import main; main()"]


def rectify(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*RECTIFY, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def city_log(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("city")
    path = folder / "events.jsonl"
    write_jsonl(generate_city(enterprises=150, days=1, seed=11).events, path)
    with path.open("a", encoding="utf-8") as handle:  # a few bad lines among the good
        handle.write("{not json\n")
        handle.write(json.dumps({"specversion": "1.0", "id": "bad-1", "source": "t", "type": "emission.measured",
                                 "subject": "91330200MA2AB12340", "time": "2024-03-04T10:00:00+08:00", "data": {}}) + "\n")
    return path


@pytest.fixture(scope="module")
def small_archive(city_log, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("archive") / "city"
    archive_files(Engine(), [city_log], directory)
    return directory


def test_run_writes_findings_and_quarantine_and_a_summary_that_adds_up(city_log, tmp_path):
    out, bad, summary = tmp_path / "out.jsonl", tmp_path / "bad.jsonl", tmp_path / "summary.json"
    result = rectify("run", str(city_log), "--out", str(out), "--quarantine", str(bad), "--summary-json", str(summary))
    assert result.returncode == 0, result.stderr
    records = [json.loads(x) for x in out.read_text().splitlines()]
    findings = [r for r in records if r["record"] == "finding"]
    assert {r["record"] for r in records} == {"finding", "decision"}
    quarantined = [json.loads(x) for x in bad.read_text().splitlines()]
    assert findings and all(f["record"] == "finding" for f in findings)
    assert {"foundry", "dyeing", "surface_treatment"} <= {f["plugin"] for f in findings} <= \
        {"foundry", "dyeing", "surface_treatment", "land"}
    assert [q["line"] for q in quarantined] == [len(city_log.read_text().splitlines()) - 1, len(city_log.read_text().splitlines())]
    assert "check character" in quarantined[1]["error"]
    counts = json.loads(summary.read_text())
    assert counts["read"] == counts["processed"] + counts["duplicate"] + counts["quarantined"] == len(city_log.read_text().splitlines())
    assert counts["quarantined"] == 2
    assert f"quarantined {counts['quarantined']}" in result.stderr
    expected_keys = ["record", "id", "rule", "rule_version", "plugin", "enterprise", "time", "event", "pollutant",
                     "measured", "judged", "limit", "basis", "verified", "ruleset", "corrections",
                     "prev", "hash"]  # the hash chain (engine/audit.py), added at the sink
    assert list(findings[0]) == expected_keys


def test_output_is_valid_against_the_record_schemas(city_log, tmp_path):
    import jsonschema

    from engine.validate import FORMATS, load_core_schema

    checker = jsonschema.FormatChecker(formats=())
    for name, function in FORMATS.items():
        checker.checks(name, raises=ValueError)(function)
    out = tmp_path / "out.jsonl"
    assert rectify("run", str(city_log), "--out", str(out)).returncode == 0
    seen = set()
    validators = {name: jsonschema.Draft202012Validator(load_core_schema(f"{name}.schema.json"), format_checker=checker)
                  for name in ("finding", "decision", "quarantine", "data_gap")}
    for text in out.read_text().splitlines():
        record = json.loads(text)
        validators[record["record"]].validate(record)
        seen.add(record["record"])
    assert seen == {"finding", "decision", "quarantine"}  # no --quarantine: bad lines stay in --out


def test_two_runs_give_identical_bytes(city_log, tmp_path):
    digests = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.jsonl"
        assert rectify("run", str(city_log), "--out", str(out), "--quarantine", str(tmp_path / f"{name}.bad")).returncode == 0
        digests.append((hashlib.sha256(out.read_bytes()).hexdigest(), hashlib.sha256((tmp_path / f"{name}.bad").read_bytes()).hexdigest()))
    assert digests[0] == digests[1]


def test_usage_errors_exit_2(tmp_path):
    assert rectify("run").returncode == 2
    assert rectify("run", str(tmp_path / "missing.jsonl")).returncode == 2
    assert rectify("frobnicate").returncode == 2


@pytest.mark.parametrize("command", ["run", "archive"])
def test_an_output_that_cannot_be_made_is_a_message_not_a_traceback(city_log, tmp_path, command):
    """An output under a path that is a file (or in a directory the user may not write, or on a
    full device): the file and the system's reason, exit 1, no traceback (until 2026-12-03 both
    commands ended with the OSError's traceback)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / ("findings.jsonl" if command == "run" else "archive")
    args = ["run", str(city_log), "--out", str(out), "--no-progress"] if command == "run" else \
        ["archive", str(city_log), "--out", str(out)]
    result = rectify(*args)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"rectify: {blocker}/") and last.endswith(": Not a directory"), last


def test_unknown_option_is_a_configuration_error_exit_3(city_log):
    result = rectify("run", str(city_log), "--option", "dyeing.gb4287.table9")
    assert result.returncode == 3
    assert "unknown option(s) dyeing.gb4287.table9" in result.stderr


def test_validate_exit_codes(city_log, tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(city_log.read_text().splitlines()[:50]) + "\n")
    assert rectify("validate", str(good)).returncode == 0
    result = rectify("validate", str(city_log))
    assert result.returncode == 1
    assert f"{city_log}:" in result.stdout and "invalid JSON" in result.stdout


def test_rules_lists_basis_verified_and_inactive_reasons():
    result = rectify("rules")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    cupola = next(x for x in lines if x.startswith("foundry.gb39726.t1.cupola.pm\t"))
    assert "GB 39726" in cupola and "\tverified\t" in cupola and cupola.endswith("active")
    energy = next(x for x in lines if "energy" in x and x.startswith("foundry."))
    assert "needs parameter params.energy_kgce_per_t_castings" in energy
    rows = [json.loads(x) for x in rectify("rules", "--json").stdout.splitlines()]
    assert {r["plugin"] for r in rows} >= {"foundry", "dyeing", "surface_treatment"}


def test_params_file_activates_an_nf_rule(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("foundry:\n  energy_kgce_per_t_castings: 550\n")
    result = rectify("rules", "--params", str(params))
    energy = next(x for x in result.stdout.splitlines() if "energy" in x and x.startswith("foundry."))
    assert energy.endswith("\tactive")


def test_disable_plugin_by_option_and_environment(tmp_path):
    import os

    listed = rectify("plugins", "--disable-plugin", "dyeing").stdout
    assert "dyeing\tblocked" in listed and "foundry\t" in listed
    env = {**os.environ, "RECTIFY_DISABLE_PLUGINS": "foundry,surface_treatment"}
    listed = rectify("plugins", env=env).stdout
    assert "foundry\tblocked" in listed and "surface_treatment\tblocked" in listed and "dyeing\t0.2.0" in listed


def test_logs_are_json_when_not_on_a_terminal(city_log, tmp_path):
    result = rectify("run", str(city_log), "--out", str(tmp_path / "o.jsonl"))
    events = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    assert {"engine_ready", "run_finished"} <= {e["event"] for e in events}


def test_report_summarises_lists_routes_and_progress(city_log):
    result = rectify("report", str(city_log), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["decisions"] == sum(report["by_list_action"].values())
    assert report["progress"]["scattered_polluted"]["target"] == 5000
    assert report["progress"]["land_freed_mu"]["target"] == 45000
    assert set(report["by_industry"]) <= {"foundry", "dyeing", "surface_treatment", "other"}
    text = rectify("report", str(city_log)).stdout
    assert "progress against the programme targets" in text


def test_as_of_must_be_a_time(city_log):
    assert rectify("run", str(city_log), "--as-of", "next tuesday").returncode == 2


def test_demo_small_city_reports_all_three_plugins(tmp_path):
    result = rectify("demo", "--enterprises", "300", "--days", "1", "--out-dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "foundry" in result.stdout and "dyeing" in result.stdout and "surface_treatment" in result.stdout
    assert (tmp_path / "demo" / "findings.jsonl").stat().st_size > 0


@pytest.mark.parametrize("cores,load,jobs,used", [(1, 0.0, 2, 0), (2, 0.1, 1, 1), (2, 0.1, 4, 1), (2, 1.2, 1, 0),
                                                   (3, 0.0, 1, 1), (4, 0.0, 8, 3), (4, 1.5, 8, 2), (4, 3.5, 2, 0)])
def test_jobs_run_sorting_processes_only_where_they_can_help(monkeypatch, capsys, small_archive, tmp_path, cores, load,
                                                             jobs, used):
    """A sorting process helps only on a core nobody else uses (measured: 1.31-1.48x on an idle
    2-core machine, 0.35x on the same machine at load 3-4): `--jobs` uses at most the cores
    beyond the engine's own that other processes leave free (psutil over 0.2 s); with none it says so
    (jobs_ignored) and runs in this process. So it does for files under AUTO_JOBS_BYTES in all,
    where a sorting process saves about what the core sample costs, without sampling."""
    import os

    import psutil

    from engine.cli.logs import configure
    from engine.cli.run import AUTO_JOBS_BYTES, _usable_jobs

    configure("info")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    samples = []
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: samples.append(interval) or 100 * load / cores)
    large = tmp_path / "large.jsonl"
    with large.open("wb") as handle:
        handle.truncate(AUTO_JOBS_BYTES)  # sparse: only its size matters here
    assert _usable_jobs(jobs, [JsonlFiles([__file__])]) == [0] and samples == []
    err = capsys.readouterr().err
    assert "jobs_ignored" in err and f"under {AUTO_JOBS_BYTES >> 20} MiB" in err
    files = [JsonlFiles([large])]  # files another process can read again
    assert _usable_jobs(jobs, files) == [used]
    err = capsys.readouterr().err
    assert ("jobs_ignored" in err) == (used == 0)
    assert ("jobs_capped" in err) == (0 < used < jobs)  # fewer than asked, and it says so
    # an archive runs in this process, which says so; JSONL files beside it get the sorting processes
    assert _usable_jobs(jobs, [Archive(small_archive)]) == [0]
    assert "jobs_ignored" in capsys.readouterr().err
    assert _usable_jobs(jobs, [Archive(small_archive)] + files) == [0, used]
    assert "jobs_ignored" in capsys.readouterr().err  # for the archive, or for want of a free core
    for inputs in ([JsonlFiles(["-"])], files + [JsonlFiles(["-"])], [iter([])]):
        assert set(_usable_jobs(jobs, inputs)) == {0}  # standard input, --hj212 packets: in this process
        assert "jobs_ignored" in capsys.readouterr().err


def test_rectify_run_with_its_sorting_process_killed_says_so_and_exits_1(city_log, tmp_path, monkeypatch):
    """`rectify run EVENTS.jsonl --jobs 1` whose sorting process is killed in the first chunk it
    took (the out-of-memory killer sends SIGKILL): one line naming the process, the chunk and the
    signal; exit 1, no traceback, no process left."""
    import multiprocessing
    import os
    import signal

    import psutil
    from click.testing import CliRunner

    from engine.cli import cli
    from engine.fast import workers

    log = tmp_path / "events.jsonl"
    log.write_bytes(city_log.read_bytes() * 6)  # more chunks than the engine's process sorts before one is taken
    original = workers._sort_share

    def killed_in_its_first_chunk(lane, *args):  # in the forked sorting process, as it sorts the chunk it took
        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)

        lane.sort = die
        original(lane, *args)

    monkeypatch.setattr(workers, "_sort_share", killed_in_its_first_chunk)
    monkeypatch.setattr("engine.cli.run.AUTO_JOBS_BYTES", 0)  # a sorting process for a small log too
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: 0.0)  # a free core: --jobs 1 is used
    result = CliRunner().invoke(cli, ["run", str(log), "--out", str(tmp_path / "o.jsonl"), "--no-progress",
                                      "--jobs", "1"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert re.search(r"rectify: rectify-sort-0 ended before it handed over chunk \d+ \(killed by SIGKILL",
                     result.output), result.output
    assert "Traceback" not in result.output and not multiprocessing.active_children()


def test_jobs_auto_asks_for_one_sorting_process_on_large_jsonl_files_only(monkeypatch, capsys, small_archive, tmp_path):
    """`--jobs auto`, the default: one sorting process for JSONL files of AUTO_JOBS_BYTES (64 MiB)
    or more, on the same terms as `--jobs 1` (a free core); none, without a word, for smaller
    files, archives, standard input and packets."""
    import os

    import psutil

    from engine.cli.logs import configure
    from engine.cli.run import AUTO_JOBS_BYTES, _usable_jobs

    configure("info")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    load = {"cores": 0.1}
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: 100 * load["cores"] / 2)
    large, half = tmp_path / "large.jsonl", tmp_path / "half.jsonl"
    with large.open("wb") as handle:
        handle.truncate(AUTO_JOBS_BYTES)  # sparse: only its size matters here
    with half.open("wb") as handle:
        handle.truncate(AUTO_JOBS_BYTES // 2)
    assert _usable_jobs(None, [JsonlFiles([large])]) == [1]
    assert _usable_jobs(None, [JsonlFiles([half, half])]) == [1]  # the files together
    for inputs in ([JsonlFiles([half])], [Archive(small_archive)], [JsonlFiles([large]), Archive(small_archive)],
                   [JsonlFiles([large, "-"])], [JsonlFiles([large]), iter([])]):
        assert set(_usable_jobs(None, inputs)) == {0}
    assert capsys.readouterr().err == ""  # auto says nothing where it does not ask
    load["cores"] = 1.2  # the other core busy: as `--jobs 1`, it says so and runs in this process
    assert _usable_jobs(None, [JsonlFiles([large])]) == [0]
    assert "jobs_ignored" in capsys.readouterr().err


def test_the_default_run_of_a_large_log_is_the_run_with_no_sorting_process(city_log, tmp_path):
    """A log past 64 MiB (the city's events, then a line of zeros as long as the threshold: a disk
    image's tail) gives the same bytes by default (`--jobs auto`) as with `--jobs 0`, and the log
    says which it ran (one sorting process, or none because no core was free)."""
    from engine.cli.run import AUTO_JOBS_BYTES

    log = tmp_path / "large.jsonl"
    with log.open("wb") as handle:
        handle.write(city_log.read_bytes())
        handle.write(b"\0" * AUTO_JOBS_BYTES + b"\n")
    runs = {}
    for jobs in ("auto", "0"):
        done = subprocess.run([*RECTIFY, "run", str(log), "--no-progress", "--jobs", jobs], capture_output=True, check=True)
        logged = [orjson.loads(line) for line in done.stderr.splitlines() if line.startswith(b"{")]
        runs[jobs] = done.stdout, [entry["jobs"] for entry in logged if entry["event"] == "batch_path"], \
            [entry for entry in logged if entry["event"] == "jobs_ignored"]
    assert runs["auto"][0] == runs["0"][0]
    assert b"longer than the limit" in runs["auto"][0]
    assert runs["0"][1:] == ([0], [])
    assert runs["auto"][1] == [1] and runs["auto"][2] == [] or runs["auto"][1] == [0] and len(runs["auto"][2]) == 1


def test_jobs_with_a_store_say_they_run_in_this_process(city_log, tmp_path):
    done = subprocess.run([*RECTIFY, "run", str(city_log), "--store", str(tmp_path / "d.db"), "--no-progress",
                           "--jobs", "1"], capture_output=True, check=True)
    logged = [orjson.loads(line) for line in done.stderr.splitlines() if line.startswith(b"{")]
    ignored = [entry for entry in logged if entry["event"] == "jobs_ignored"]
    assert len(ignored) == 1 and "--store" in ignored[0]["reason"]


def test_jobs_on_standard_input_say_they_run_in_this_process(city_log):
    """Sorting processes read the files again themselves: on standard input `--jobs` says so and
    runs in this process, with the same output as without it."""
    text = city_log.read_bytes()
    plain = subprocess.run([*RECTIFY, "run", "-", "--no-progress"], input=text, capture_output=True, check=True)
    jobs = subprocess.run([*RECTIFY, "run", "-", "--no-progress", "--jobs", "2"], input=text, capture_output=True,
                          check=True)
    assert jobs.stdout == plain.stdout
    logged = [orjson.loads(line) for line in jobs.stderr.splitlines() if line.startswith(b"{")]
    ignored = [entry for entry in logged if entry["event"] == "jobs_ignored"]
    assert len(ignored) == 1 and "standard input" in ignored[0]["reason"]
    assert [entry["jobs"] for entry in logged if entry["event"] == "batch_path"] == [0]
