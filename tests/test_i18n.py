"""Languages: the catalogues are complete and well-formed, the locale picks the language, the
vocabulary names the programme's lists, routes and HJ 212 pollutants, CLI text follows --lang
while JSON stays the same, and enterprise names stand beside their codes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from engine.cli import cli
from engine.devtools import i18n as catalogues
from engine.devtools.demo import generate_city, write_jsonl
from engine.i18n import resolve_lang, translator


def test_catalogues_are_complete_and_consistent():
    assert catalogues.check() == []


def test_the_locale_chooses_the_language():
    assert resolve_lang(None, {"LANG": "zh_CN.UTF-8"}) == "zh"
    assert resolve_lang(None, {"LANG": "en_GB.UTF-8"}) == "en"
    assert resolve_lang(None, {"LC_ALL": "C", "LANG": "zh_CN.UTF-8"}) == "en"
    assert resolve_lang(None, {}) == "en"
    assert resolve_lang("zh", {"LANG": "C"}) == "zh"


def test_official_names():
    zh = translator("zh")
    assert [zh.list_name(x) for x in ("backward_capacity", "high_consumption_low_efficiency", "scattered_polluted")] == \
        ["淘汰落后产能", "高耗低效", "低散乱污"]
    assert zh.route("rectify") == "限期整改" and zh.route("close_by_law") == "依法关停"
    assert zh.pollutant("a34013") == "烟尘" and zh.pollutant("w01018") == "化学需氧量" and zh.pollutant("w20117") == "六价铬"
    assert "铸造工业大气污染物排放标准" in zh.name("standard", "GB 39726-2020")
    assert zh.route("future_route") == "future_route"  # unknown identifiers show as they are
    assert zh.date("2024-03-01T08:00:00+08:00") == "2024年3月1日"
    assert translator("en").list_name("scattered_polluted") == "Scattered and polluted"


def test_cli_text_follows_lang_and_json_does_not(tmp_path, monkeypatch):
    log = tmp_path / "events.jsonl"
    write_jsonl(generate_city(enterprises=120, days=1, seed=7).events, log)
    en = CliRunner().invoke(cli, ["report", str(log)]).stdout
    zh = CliRunner().invoke(cli, ["report", str(log), "--lang", "zh"]).stdout
    assert "progress against the programme targets" in en and "目标任务完成进度" in zh and "淘汰落后产能" in zh
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert CliRunner().invoke(cli, ["report", str(log)]).stdout == zh
    assert CliRunner().invoke(cli, ["report", str(log), "--json"]).stdout == \
        CliRunner().invoke(cli, ["report", str(log), "--json", "--lang", "en"]).stdout


def test_names_beside_codes_and_clean_explain(tmp_path):
    log = tmp_path / "events.jsonl"
    write_jsonl(generate_city(enterprises=300, days=1, seed=5).events, log)
    db = tmp_path / "run.db"
    assert CliRunner().invoke(cli, ["run", str(log), "--store", str(db)]).exit_code == 0
    registry = {e["subject"]: e["data"]["name"] for e in map(json.loads, log.read_text().splitlines())
                if e["type"] == "enterprise.registered"}
    listed = CliRunner().invoke(cli, ["decisions", "--store", str(db), "--kind", "decision"]).stdout.splitlines()
    assert listed
    for line in listed:
        columns = line.split("\t")
        assert columns[4] == registry[columns[3]], line
    order = next(line.split("\t")[2] for line in listed if "scattered_polluted/rectify" in line)
    text = CliRunner().invoke(cli, ["explain", order, "--events", str(log)]).stdout
    assert "{'" not in text and "': " not in text  # JSON values, no Python reprs
    code = next(line.split("\t")[3] for line in listed if order in line)
    assert f"enterprise {code} {registry[code]}" in text
    zh = CliRunner().invoke(cli, ["explain", order, "--events", str(log), "--lang", "zh"]).stdout
    assert "限期整改" in zh and "低散乱污" in zh


def test_the_run_summary_follows_lang_with_the_same_counts(tmp_path):
    """`rectify run` and `rectify demo` print their summary in the language asked for (issue 17:
    every human-facing output); the counts are the same numbers in both."""
    import re

    log = tmp_path / "events.jsonl"
    write_jsonl(generate_city(enterprises=120, days=1, seed=7).events, log)
    texts = {}
    for lang in ("en", "zh"):
        result = CliRunner().invoke(cli, ["run", str(log), "--out", str(tmp_path / f"{lang}.jsonl"), "--no-progress",
                                          "--lang", lang])
        assert result.exit_code == 0, result.output
        texts[lang] = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert texts["en"][0].startswith("read ") and texts["zh"][0].startswith("读入 ")
    assert "淘汰落后产能" in "\n".join(texts["zh"]) or "低散乱污" in "\n".join(texts["zh"])
    numbers = [[re.findall(r"\d+", line) for line in text[:2]] for text in (texts["en"], texts["zh"])]
    assert numbers[0] == numbers[1]  # read/processed/duplicate/quarantined, findings per plugin
    assert (tmp_path / "en.jsonl").read_bytes() == (tmp_path / "zh.jsonl").read_bytes()  # records: no language
    demo = CliRunner().invoke(cli, ["demo", "--enterprises", "60", "--out-dir", str(tmp_path / "demo"), "--no-progress",
                                    "--lang", "zh"])
    assert demo.exit_code == 0, demo.output
    assert "演示城市：60 家企业" in demo.stdout and "专项整治汇总：" in demo.stdout and "目标任务完成进度" in demo.stdout


def test_chinese_columns_line_up():
    from engine.report.summary import pad

    assert pad("依法关停", 10) == "依法关停  " and pad("close", 10) == "close     " and pad("淘汰落后产能/依法关停", 4) == "淘汰落后产能/依法关停"
