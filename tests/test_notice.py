"""`rectify notice`: a notice per decision as PDF, checked by extracting its text (pdftotext)
and rendering its pages (pdftoppm); the same input gives the same bytes; the authority file is
validated; a decision of a kind this version does not know still gets a notice."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.devtools.demo import generate_city, with_follow_up, write_jsonl
from engine.report import ReportData
from engine.report.notice import AuthorityError, load_authority, notice_html, notice_pdf

PDFTOTEXT, PDFTOPPM = shutil.which("pdftotext"), shutil.which("pdftoppm")
needs_poppler = pytest.mark.skipif(PDFTOTEXT is None or PDFTOPPM is None, reason="poppler-utils (.ci/run installs it)")

AUTHORITY = """
name: {zh: 宁波市生态环境局, en: Ningbo Municipal Ecology and Environment Bureau}
code: 11330200MB0000001X
contact: "0574-12345678"
document_number:
  default: {zh: 甬环改, en: NBEE-U}
  routes: {rectify: {zh: 甬环限改, en: NBEE-R}}
  first: 7
approver: {zh: 宁波市人民政府, en: Ningbo Municipal People's Government}
appeal:
  reconsideration: {zh: 宁波市人民政府, en: Ningbo Municipal People's Government}
  court: {zh: 有管辖权的人民法院, en: the people's court with jurisdiction}
"""


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notice")
    log = folder / "events.jsonl"
    write_jsonl(with_follow_up(generate_city(enterprises=300, days=1, seed=5), seed=5).events, log)  # with closures
    out = folder / "out.jsonl"
    result = CliRunner().invoke(cli, ["run", str(log), "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    decisions = {}
    for record in records:
        if record["record"] == "decision" and "parcel" not in record:  # the programme's routes (land: below)
            decisions.setdefault(record["action"], record)
    authority = folder / "authority.yaml"
    authority.write_text(AUTHORITY, encoding="utf-8")
    registry = {r["subject"]: r["data"] for r in map(json.loads, log.read_text().splitlines())
                if r["type"] == "enterprise.registered"}
    return folder, log, decisions, authority, registry, records


def pdf_text(path: Path) -> str:
    return subprocess.run([PDFTOTEXT, "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def notice(*args: str) -> object:
    return CliRunner().invoke(cli, ["notice", *args])


@needs_poppler
def test_a_rectification_notice_in_chinese(city, tmp_path):
    folder, log, decisions, authority, registry, records = city
    order = decisions["rectify"]
    out = tmp_path / "notice.pdf"
    result = notice(order["id"], "--events", str(log), "--out", str(out), "--lang", "zh", "--authority", str(authority))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-")
    text = pdf_text(out)
    flat = "".join(text.split())
    name = registry[order["enterprise"]]["name"]
    assert "限期整改通知书" in flat and "宁波市生态环境局" in flat and name in flat and order["enterprise"] in flat
    year = order["time"][:4]
    numbered = sorted(r["id"] for r in records if r["record"] == "decision" and r["action"] == "rectify")
    assert f"甬环限改〔{year}〕" in flat and "号" in flat
    deadline = order["deadline"][:10].split("-")
    assert f"{int(deadline[0])}年{int(deadline[1])}月{int(deadline[2])}日前完成整改" in flat
    findings = {r["id"]: r for r in records if r["record"] == "finding"}
    evidence = [findings[f] for f in order["evidence"]["findings"]]
    for finding in evidence:  # measured and judged values, the limit, the standard
        assert f"{finding['judged']:g}" in flat and finding["basis"]["standard"].split(" (")[0].replace(" ", "") in flat
        assert f"{finding['limit']['value']:g}" in flat
    assert "行政复议" in flat and "样本" not in flat and numbered
    # pages render to PNG: not blank
    subprocess.run([PDFTOPPM, "-r", "40", "-png", str(out), str(tmp_path / "page")], check=True)
    from PIL import Image

    pages = sorted(tmp_path.glob("page*.png"))
    assert pages
    image = Image.open(pages[0]).convert("L")
    dark = sum(image.histogram()[:128])
    assert dark > 0.005 * image.width * image.height


@needs_poppler
def test_the_same_input_gives_the_same_bytes_and_other_languages_and_routes(city, tmp_path):
    folder, log, decisions, authority, _, _ = city
    closure = decisions["close_by_law"]
    a, b = tmp_path / "a.pdf", tmp_path / "b.pdf"
    for out in (a, b):
        assert notice(closure["id"], "--events", str(log), "--out", str(out), "--lang", "zh",
                      "--authority", str(authority)).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    flat = "".join(pdf_text(a).split())
    assert "关于提请依法关停企业的建议" in flat and "宁波市人民政府" in flat and "经批准后生效" in flat
    en = tmp_path / "en.pdf"
    assert notice(decisions["rectify"]["id"], "--events", str(log), "--out", str(en), "--lang", "en").exit_code == 0
    text = " ".join(pdf_text(en).split())
    assert "Rectification notice" in text and "SPECIMEN" in text  # no --authority: the example, marked


@needs_poppler
def test_every_decision_from_a_store(city, tmp_path):
    folder, log, decisions, authority, registry, records = city
    db = tmp_path / "run.db"
    assert CliRunner().invoke(cli, ["run", str(log), "--store", str(db)]).exit_code == 0
    small = tmp_path / "few.jsonl"
    wanted = {d["enterprise"] for d in decisions.values() if d["action"] in ("eliminate", "relocate_to_park")}
    lines = [line for line in log.read_text().splitlines() if json.loads(line)["subject"] in wanted]
    small.write_text("\n".join(lines) + "\n")
    out = tmp_path / "all"
    result = notice("--all", "--events", str(small), "--out-dir", str(out), "--lang", "zh")
    assert result.exit_code == 0, result.output
    made = sorted(p.stem for p in out.glob("*.pdf"))
    assert len(made) >= 2
    titles = " ".join("".join(pdf_text(p).split()) for p in out.glob("*.pdf"))
    assert "淘汰落后产能通知书" in titles and "整合入园告知书" in titles
    from_store = tmp_path / "store.pdf"
    result = notice(decisions["eliminate"]["id"], "--store", str(db), "--out", str(from_store), "--lang", "zh")
    assert result.exit_code == 0, result.output
    assert registry[decisions["eliminate"]["enterprise"]]["name"] in "".join(pdf_text(from_store).split())


def test_usage_and_configuration_errors(city, tmp_path):
    folder, log, decisions, authority, _, _ = city
    assert notice("D-nope", "--events", str(log), "--out", str(tmp_path / "x.pdf")).exit_code == 1
    assert notice("--events", str(log), "--out", str(tmp_path / "x.pdf")).exit_code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: {zh: 某局}\ndocument_number: {default: {zh: 甬, en: N}}\n", encoding="utf-8")
    result = notice(decisions["rectify"]["id"], "--events", str(log), "--out", str(tmp_path / "x.pdf"),
                    "--authority", str(bad))
    assert result.exit_code == 3 and "name: 'en' is a required property" in result.output
    with pytest.raises(AuthorityError, match="document_number"):
        bad.write_text("name: {zh: 某局, en: X}\n", encoding="utf-8")
        load_authority(bad)


def test_a_decision_of_an_unknown_kind_still_gets_a_notice():
    decision = {"record": "decision", "id": "D-x", "rule": "future.rule", "rule_version": 1,
                "enterprise": "91330200MA2AB1234Y", "time": "2025-05-01T09:00:00+08:00", "list": "land",
                "action": "future_route", "deadline": None, "basis": {"standard": "Decree 53", "clause": "Art. 14"},
                "evidence": {"findings": [], "events": []}, "supersedes": None, "ruleset": "sha256:0",
                "status": "proposed", "parcel": "P-7"}
    data = ReportData(ruleset="sha256:0", registry={"91330200MA2AB1234Y": {"name": "宁波市某某有限公司"}}, targets={},
                      findings=[], decisions=[decision])
    html = notice_html(data, "D-x", load_authority(), "zh")
    assert "处置决定告知书" in html and "future_route" in html and "parcel: P-7" in html and "宁波市某某有限公司" in html
    assert "建议（待批准）" in html


# ---- land decisions: one notice per land route ------------------------------------------------
IDLE, STANDARD = "91330212MA2H4K7L34", "91330212MA2H5R8T1W"


def _event(n: int, kind: str, subject: str, time: str, data: dict) -> dict:
    return {"specversion": "1.0", "id": f"land-{n}", "source": "test/land", "type": kind, "subject": subject,
            "time": time, "data": data}


@pytest.fixture(scope="module")
def land(tmp_path_factory):
    """A parcel never started (an idle-land fee, then recovery proposed) and a standard-land parcel
    missing its tax commitment (an order, the contract's remedies, then no renewal proposed)."""
    registered = {"industry": "other", "district": "Yinzhou", "in_park": True, "scale": "above"}
    events = [
        _event(1, "enterprise.registered", IDLE, "2021-11-01T09:00:00+08:00",
               {"name": "宁波市鄞州闲置示例有限公司", "land_area_mu": 25.5, **registered}),
        _event(2, "enterprise.registered", STANDARD, "2021-11-01T09:00:00+08:00",
               {"name": "宁波市鄞州标准地示例有限公司", "land_area_mu": 40.0, **registered}),
        _event(3, "land.parcel.registered", IDLE, "2021-12-01T09:00:00+08:00",
               {"parcel": "330212-2021-000101", "area_mu": 25.5, "use": "industrial",
                "contract": {"signed_on": "2021-01-10", "start_by": "2021-03-10", "complete_by": "2022-09-10",
                             "expires_on": "2071-01-09", "price_yuan": 7500000}}),
        _event(4, "land.parcel.registered", STANDARD, "2023-01-05T09:00:00+08:00",
               {"parcel": "330212-2004-000202", "area_mu": 40, "use": "industrial", "started_on": "2004-12-01",
                "contract": {"signed_on": "2004-07-01", "start_by": "2004-12-31", "complete_by": "2006-06-30",
                             "expires_on": "2024-06-30", "remedies": ["penalty", "no_renewal"]},
                "commitments": {"tax_yuan_per_mu": 300000}}),
        _event(5, "land.parcel.inspected", STANDARD, "2023-01-10T10:00:00+08:00",
               {"parcel": "330212-2004-000202", "stage": "periodic", "on": "2022-12-31",
                "figures": {"tax_yuan_per_mu": 180000}}),
    ]
    log = tmp_path_factory.mktemp("land") / "land.jsonl"
    log.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
    from engine.cli.common import build_engine
    from engine.report import collect

    data = collect(build_engine((), (), None, False, "compiled"), [str(log)], "2023-07-01T00:00:00+08:00")
    by_action = {d["action"]: d for d in data.decisions}
    assert sorted(by_action) == ["contract_remedy", "idle_land_fee", "recover_land", "rectify", "refuse_renewal"]
    return data, by_action


def collect_demo(log: Path):
    from engine.cli.common import build_engine
    from engine.report import collect

    return collect(build_engine((), (), None, False, "compiled"), [str(log)], None)


def _pdf_text(pdf: bytes, folder: Path, name: str) -> str:
    path = folder / f"{name}.pdf"
    path.write_bytes(pdf)
    return " ".join(pdf_text(path).split())


@needs_poppler
@pytest.mark.parametrize("action, zh, en", [
    ("idle_land_fee", ["关于提请征缴土地闲置费的建议", "国土资源部令第53号", "第十四条第（一）项", "约定的动工日期为2021年3月10日",
                       "满1年", ("土地闲置费金额：该宗地出让合同载明的土地出让（划拨）价款7,500,000.00元×20%（《闲置土地处置办法》"
                                "第十四条第（一）项）=1,500,000.00元")],
     ["Proposal to levy an idle-land fee", "MLR Decree No. 53", "Art. 14 (1)", "was March 10, 2021",
      ("Amount of the fee: the land price in the parcel's contract, 7,500,000.00 yuan, × 20 % (Art. 14 (1) of the "
       "Measures for the Disposal of Idle Land) = 1,500,000.00 yuan.")]),
    ("recover_land", ["关于提请无偿收回闲置土地的建议", "第十四条第（二）项", "满2年"],
     ["Proposal to recover idle land without compensation", "Art. 14 (2)", "full years since that date: 2"]),
    ("contract_remedy", ["关于提请追究标准地出让合同违约责任的建议", "国有建设用地使用权出让合同及投资建设协议", "不低于", "300,000",
                         "180,000", "违约金、不予续期", "不载明金额或比例"],
     ["Proposal to enforce the remedies of a standard-land contract", "at least", "300,000", "180,000",
      "penalty, no renewal", "no amount or percentage"]),
    ("refuse_renewal", ["关于提请不予续期的建议", "《中华人民共和国城市房地产管理法》", "第二十二条", "2024年6月30日届满"],
     ["Proposal not to renew a land-use right", "Urban Real Estate Administration Law", "Art. 22", "June 30, 2024"]),
])
def test_land_proposals_name_the_parcel_the_basis_and_say_they_are_proposals(land, tmp_path, action, zh, en):
    data, by_action = land
    decision = by_action[action]
    parcel = decision["parcel"]
    texts = {}
    for lang in ("zh", "en"):
        pdf = notice_pdf(data, decision["id"], load_authority(), lang)
        texts[lang] = _pdf_text(pdf, tmp_path, lang)
    flat = texts["zh"].replace(" ", "")
    for wanted in [parcel, decision["enterprise"], "宁波市人民政府", "不是处理决定", "经批准后方可生效", *zh]:
        assert wanted.replace(" ", "") in flat, wanted
    area = "25.5亩" if action in ("idle_land_fee", "recover_land") else "40亩"
    assert area in flat and "鄞州区" in flat
    for wanted in [parcel, decision["enterprise"], "not an order", "takes effect only when approved", *en]:
        assert wanted in texts["en"], wanted
    assert "20 %" not in texts["en"].replace("20 % of the land price", "").replace("× 20 % (Art. 14 (1)", "")
    assert ("不载明金额" in flat) == (action == "contract_remedy")  # the idle-land fee's amount is stated: its price is known
    assert "land.jsonl" not in texts["en"] and "rules.yaml" not in texts["en"]


def test_an_idle_land_fee_without_a_land_price_states_no_amount(tmp_path):
    """A contract registered without `price_yuan`: the decision has no amount and the notice says
    the fee is assessed under the article, stating none (zh and en)."""
    import html

    from engine.cli.common import build_engine
    from engine.report import collect

    events = [_event(1, "land.parcel.registered", IDLE, "2021-12-01T09:00:00+08:00",
                     {"parcel": "330212-2021-000101", "area_mu": 25.5, "use": "industrial",
                      "contract": {"signed_on": "2021-01-10", "start_by": "2021-03-10", "complete_by": "2022-09-10",
                                   "expires_on": "2071-01-09"}})]
    log = tmp_path / "land.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    data = collect(build_engine((), (), None, False, "compiled"), [str(log)], "2022-07-01T00:00:00+08:00")
    (fee,) = [d for d in data.decisions if d["action"] == "idle_land_fee"]
    assert "amount" not in fee
    zh, en = (html.unescape(notice_html(data, fee["id"], load_authority(), lang)) for lang in ("zh", "en"))
    assert "土地闲置费按该条款以土地出让价款为基数核定，本文书不载明金额。" in zh and "土地闲置费金额" not in zh
    assert "this document states no amount." in en and "Amount of the fee" not in en


@needs_poppler
def test_a_land_order_and_a_redevelopment_notice_the_same_bytes_twice(land, city, tmp_path):
    data, by_action = land
    order = by_action["rectify"]
    first, second = (notice_pdf(data, order["id"], load_authority(), "zh") for _ in range(2))
    assert first == second
    flat = _pdf_text(first, tmp_path, "order").replace(" ", "")
    assert "限期整改通知书" in flat and "2023年4月10日前完成承诺指标整改" in flat and "追究违约责任" in flat
    assert "关停" not in flat and "行政复议" in flat  # an order to the holder, not a closure
    folder, log, _, _, _, records = city
    redevelop = next(r for r in records if r["record"] == "decision" and r["action"] == "redevelop_land")
    demo = collect_demo(log)
    text = _pdf_text(notice_pdf(demo, redevelop["id"], load_authority(), "en"), tmp_path, "redevelop")
    assert "Notice on the redevelopment of low-efficiency industrial land" in text and redevelop["parcel"] in text
    assert "City manufacturing upgrade programme" in text and "not an order" not in text
