"""Languages: the catalogues are complete and well-formed, the locale picks the language, the
vocabulary names the programme's lists, routes and HJ 212 pollutants, CLI text follows --lang
while JSON stays the same, and enterprise names stand beside their codes."""

from __future__ import annotations

import json

import orjson
import pytest
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


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_numbers_of_any_size_and_none_that_are_not_finite(lang):
    """Every finite float is written in full (Babel's default 28-digit context could not quantize
    1e25 with three decimals: decimal.InvalidOperation); inf and nan (a sum past the largest
    float) show as —; ordinary numbers as before."""
    tr = translator(lang)
    assert tr.number(1234.5678) == "1,234.57" and tr.number(1234.5678, 3) == "1,234.568" and tr.number(3.0) == "3"
    assert tr.number(12, 0) == "12" and tr.number(0.125, 2) == "0.12" and tr.number(None) == "—"
    assert tr.money(2.675) == "2.68" and tr.money(25) == "25.00" and tr.money(None) == "—"
    assert tr.number(9.9e24, 3) == "9,900,000,000,000,000,000,000,000"
    assert tr.number(1e25, 3) == "10,000,000,000,000,000,000,000,000"
    assert tr.number(-1e30) == "-1,000,000,000,000,000,000,000,000,000,000"
    assert tr.money(1e26) == "100,000,000,000,000,000,000,000,000.00"
    assert tr.number(10**40 + 1, 0) == "10,000,000,000,000,000,000,000,000,000,000,000,000,001"
    largest = tr.number(1.7976931348623157e308, 3)
    assert largest.startswith("179,769,313,486,231,57") and len(largest.replace(",", "")) == 309
    assert tr.money(1.7976931348623157e308).endswith(",000.00")
    assert tr.number(5e-324, 3) == "0"
    for value in (float("inf"), float("-inf"), float("nan")):
        assert tr.number(value) == "—" and tr.number(value, 0) == "—" and tr.money(value) == "—"


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


# ---- verify and replay in both languages (the audit commands an official reads) --------------


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A small real event log, its decision log as `rectify run --out` writes it (with its
    manifest), and damaged copies: record 3 edited, record 5 removed."""
    folder = tmp_path_factory.mktemp("audited")
    events = folder / "events.jsonl"
    write_jsonl(generate_city(enterprises=40, days=1, seed=7).events, events)
    out = folder / "out.jsonl"
    made = CliRunner().invoke(cli, ["run", str(events), "--out", str(out), "--no-progress"])
    assert made.exit_code == 0, made.output
    lines = out.read_bytes().split(b"\n")[:-1]
    third = json.loads(lines[2])
    edited = folder / "edited.jsonl"
    edited.write_bytes(b"".join(x + b"\n" for x in lines[:2] + [orjson.dumps({**third, "enterprise": "X"})] + lines[3:]))
    removed = folder / "removed.jsonl"
    removed.write_bytes(b"".join(x + b"\n" for x in lines[:4] + lines[5:]))
    manifest = json.loads((folder / "out.jsonl.manifest.json").read_text())
    (folder / "edited.jsonl.manifest.json").write_text(json.dumps(manifest))
    manifest["plugins"]["dyeing"] = "9.9.9"
    refused = folder / "refused.jsonl"
    refused.write_bytes(out.read_bytes())
    (folder / "refused.jsonl.manifest.json").write_text(json.dumps(manifest))
    return {"events": str(events), "out": str(out), "edited": str(edited), "removed": str(removed),
            "refused": str(refused), "third": third, "fifth": json.loads(lines[5]), "fourth": json.loads(lines[4]),
            "head": json.loads(lines[-1])["hash"], "records": len(lines)}


def _rectify(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_verify_speaks_both_languages_and_json_and_exit_codes_do_not_change(audited, monkeypatch):
    a = audited
    intact = {lang: _rectify("verify", a["out"], "--lang", lang) for lang in ("en", "zh")}
    assert [r.exit_code for r in intact.values()] == [0, 0]
    assert intact["en"].stderr == f"{a['out']}: {a['records']} records, chain intact, head {a['head']}\n"
    assert intact["zh"].stderr == f"{a['out']}：共 {a['records']} 条记录，哈希链完整，链头 {a['head']}\n"

    edited = {lang: _rectify("verify", a["edited"], "--lang", lang) for lang in ("en", "zh")}
    assert [r.exit_code for r in edited.values()] == [1, 1]
    rid = a["third"]["id"]
    assert edited["en"].stdout == f"{a['edited']}:3: edited: line 3 (id {rid}): content does not match its hash: " \
                                  "the record was edited\n"
    assert edited["zh"].stdout == f"{a['edited']}:3：篡改：第 3 条记录（编号 {rid}）：内容与其哈希值不符：记录被篡改\n"
    assert edited["en"].stderr == f"{a['edited']}: {a['records']} records, CHAIN BROKEN (1 problem(s)), head {a['head']}\n"
    assert edited["zh"].stderr == f"{a['edited']}：共 {a['records']} 条记录，哈希链断裂（1 处问题），链头 {a['head']}\n"

    removed = {lang: _rectify("verify", a["removed"], "--lang", lang) for lang in ("en", "zh")}
    assert [r.exit_code for r in removed.values()] == [1, 1]
    rid, prev = a["fifth"]["id"], a["fifth"]["prev"][:12]
    assert removed["en"].stdout == f"{a['removed']}:5: removed: record(s) removed between line 4 and line 5 (id {rid}) " \
                                   f"(its predecessor {prev}… is missing), or line 4 was edited and its hash recomputed\n"
    assert removed["zh"].stdout == f"{a['removed']}:5：删除：第 4 条记录与第 5 条记录（编号 {rid}）之间有记录被删除" \
                                   f"（其前一条记录 {prev}… 缺失），或第 4 条记录被篡改后重新计算了哈希值\n"

    cut = _rectify("verify", a["out"], "--head", "f" * 64, "--lang", "zh")
    assert cut.exit_code == 1 and "：截断：日志止于第" in cut.stdout and "末尾有记录被删除（或增加）" in cut.stdout

    as_json = [_rectify("verify", a["removed"], "--json", "--lang", lang) for lang in ("en", "zh")]
    assert as_json[0].stdout == as_json[1].stdout and as_json[0].exit_code == as_json[1].exit_code == 1
    assert "record(s) removed between line 4" in json.loads(as_json[1].stdout)["problems"][0]["message"]  # JSON: English

    monkeypatch.setenv("LANG", "zh_CN.UTF-8")  # the locale's language by default
    assert _rectify("verify", a["edited"]).stdout == edited["zh"].stdout


def test_verify_errors_speak_both_languages(audited, tmp_path):
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\x00\x01 not a log")
    errors = {lang: _rectify("verify", str(binary), "--lang", lang) for lang in ("en", "zh")}
    assert [r.exit_code for r in errors.values()] == [1, 1]
    assert errors["en"].stderr.endswith("; LOG DAMAGED\n") and errors["zh"].stderr.endswith("；日志已损坏\n")
    store = _rectify("verify", "--store", audited["out"], "--lang", "zh")
    assert store.exit_code == 1 and "不是 SQLite 存储" in store.stderr and store.stderr.endswith("存储已损坏\n")
    usage = _rectify("verify", "--lang", "zh")
    assert usage.exit_code == 2 and "请给出 LOG 或 --store DB（二者之一）" in usage.stderr


def test_replay_speaks_both_languages_and_json_and_exit_codes_do_not_change(audited):
    a = audited
    same = {lang: _rectify("replay", a["events"], "--verify", a["out"], "--lang", lang) for lang in ("en", "zh")}
    assert [r.exit_code for r in same.values()] == [0, 0]
    assert same["en"].stdout == f"replay matches {a['out']}: {a['records']} records, head {a['head']}\n"
    assert same["zh"].stdout == f"重放结果与 {a['out']} 一致：共 {a['records']} 条记录，链头 {a['head']}\n"

    differs = {lang: _rectify("replay", a["events"], "--verify", a["edited"], "--lang", lang) for lang in ("en", "zh")}
    assert [r.exit_code for r in differs.values()] == [1, 1]
    rid, enterprise = a["third"]["id"], a["third"]["enterprise"]
    assert differs["en"].stdout.splitlines() == [
        f"{a['edited']}:3: chain edited: line 3 (id {rid}): content does not match its hash: the record was edited",
        f"first divergence at line 3 (id {rid}): field 'enterprise': logged \"X\", replayed \"{enterprise}\""]
    assert differs["zh"].stdout.splitlines() == [
        f"{a['edited']}:3：哈希链问题（篡改）：第 3 条记录（编号 {rid}）：内容与其哈希值不符：记录被篡改",
        f"首个差异位于第 3 条记录（编号 {rid}）：字段 'enterprise'：日志为 \"X\"，重放为 \"{enterprise}\""]

    as_json = [_rectify("replay", a["events"], "--verify", a["edited"], "--json", "--lang", lang) for lang in ("en", "zh")]
    assert as_json[0].stdout == as_json[1].stdout and as_json[0].exit_code == as_json[1].exit_code == 1

    refused = {lang: _rectify("replay", a["events"], "--verify", a["refused"], "--lang", lang) for lang in ("en", "zh")}
    assert [r.exit_code for r in refused.values()] == [3, 3]
    assert "rectify: configuration error: the log was made with plugin(s) at another version: dyeing 9.9.9 (installed: " \
        in refused["en"].stderr and refused["en"].stderr.endswith("): install those versions to replay it\n")
    assert "rectify：配置错误：生成该日志的插件与本机不符——版本不同：dyeing 9.9.9（已安装：" in refused["zh"].stderr
    assert refused["zh"].stderr.endswith("）：请安装这些版本后再重放\n")

    usage = _rectify("replay", a["events"], "--verify", a["out"], "--option", "dyeing.gb4287.table3", "--lang", "zh")
    assert usage.exit_code == 2 and "日志的清单文件已指定其规则集；--options 会改变规则集" in usage.stderr


def test_explain_and_decisions_messages_speak_both_languages(audited, tmp_path):
    missing = {lang: _rectify("explain", "F-nosuchrecord", "--events", audited["events"], "--lang", lang) for lang in ("en", "zh")}
    assert [r.exit_code for r in missing.values()] == [1, 1]
    said = {lang: result.stderr.splitlines()[-1] for lang, result in missing.items()}  # after the engine's log line
    assert said["en"].startswith("rectify: no finding, decision or data gap 'F-nosuchrecord' in the replay of this log")
    assert said["zh"].startswith("rectify：以规则集 sha256:") and said["zh"].endswith("未找到编号为 'F-nosuchrecord' 的发现、决定或数据缺失记录")
    db = tmp_path / "run.db"
    assert _rectify("run", audited["events"], "--store", str(db), "--no-progress").exit_code == 0
    counted = {lang: _rectify("decisions", "--store", str(db), "--kind", "decision", "--lang", lang) for lang in ("en", "zh")}
    count = len(counted["en"].stdout.splitlines())
    assert counted["en"].stderr == f"{count} record(s)\n" and counted["zh"].stderr == f"共 {count} 条记录\n"
