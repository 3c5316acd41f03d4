"""The Chinese report in headless Chromium (the system's, driven by Playwright): it fits a
1280 px screen and a phone without horizontal overflow, every glyph comes from the embedded font
(none from a fallback font, checked by Chromium's own account of the fonts it used and by the
font's coverage of the page's text), it looks the same on a machine with no CJK font (screenshots
compared in this run), the enterprise table sorts and searches, and an
enterprise's file opens on its own."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.devtools.demo import generate_city, write_jsonl
from engine.report import fonts

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed here (.ci/run installs it)")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--font-render-hinting=none"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    log = folder / "events.jsonl"
    write_jsonl(generate_city(enterprises=300, days=1, seed=5).events, log)
    out = {}
    for lang in ("zh", "en"):
        out[lang] = folder / f"report-{lang}.html"
        result = CliRunner().invoke(cli, ["report", str(log), "--html", str(out[lang]), "--lang", lang])
        assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def playwright():
    api = pytest.importorskip("playwright.sync_api")
    with api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def fontless(playwright, tmp_path_factory):
    """Chromium on a machine with no CJK font: fontconfig pointed at a folder holding one Latin
    font (DejaVu or Liberation Sans, which Chromium's package brings), nothing else."""
    folder = tmp_path_factory.mktemp("nofonts")
    (folder / "fonts").mkdir()
    latin = next((p for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                              "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf") if os.path.exists(p)), None)
    if latin is None:
        pytest.skip("no DejaVu or Liberation Sans to stand for a machine's only font")
    (folder / "fonts" / Path(latin).name).symlink_to(latin)
    # the system's rendering rules (conf.d), but only this folder of fonts
    (folder / "fonts.conf").write_text(f'<?xml version="1.0"?><fontconfig><dir>{folder / "fonts"}</dir>'
                                       f'<cachedir>{folder / "cache"}</cachedir>'
                                       '<include ignore_missing="yes">/etc/fonts/conf.d</include></fontconfig>')
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS,
                                          env={**os.environ, "FONTCONFIG_FILE": str(folder / "fonts.conf")})
    yield chromium
    chromium.close()


def open_page(browser, path: Path, viewport, anchor: str = ""):
    page = browser.new_page(viewport=viewport)
    page.goto(path.resolve().as_uri() + anchor)
    page.evaluate("document.fonts.ready.then(() => true)")
    return page


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "phone"])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_horizontal_overflow(pages, browser, viewport, lang):
    page = open_page(browser, pages[lang], viewport)
    try:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{lang} page is {width} px wide at {viewport['width']} px"
        # nothing sticks out of the page except inside a scrolling box
        sticking = page.evaluate("""(limit) => Array.from(document.querySelectorAll('body *')).filter(e => {
            const r = e.getBoundingClientRect(); if (!r.width) return false;
            return r.right > limit + 1 && !e.closest('.wide'); }).map(e => e.tagName + '.' + e.className).slice(0, 5)""",
                                 viewport["width"])
        assert sticking == []
        if viewport is DESKTOP:  # the name column is wide enough for a firm's name on one line
            names = page.evaluate("Array.from(document.querySelectorAll('#enterprises td.name')).map(e => e.getBoundingClientRect().width)")
            assert names and min(names) >= 180
    finally:
        page.close()


def test_every_glyph_comes_from_the_embedded_font(pages, browser):
    page = open_page(browser, pages["zh"], DESKTOP)
    try:
        assert page.evaluate(f"document.fonts.check('16px {fonts.FAMILY}', '淘汰落后产能')")
        text = page.evaluate("document.body.innerText") + "".join(
            page.evaluate("Array.from(document.querySelectorAll('svg text, input')).map(e => e.textContent + (e.placeholder || ''))"))
        assert "淘汰落后产能" in text and "低散乱污" in text and "限期整改" in text
        html = pages["zh"].read_text(encoding="utf-8")
        data = re.search(r"base64,([A-Za-z0-9+/=]+)\) format\('woff2'\)", html)
        assert data is not None
        import base64
        covered = fonts.subset_coverage(base64.b64decode(data.group(1)))
        missing = sorted({c for c in text if not c.isspace() and ord(c) not in covered})
        assert missing == [], f"characters the embedded font lacks: {missing}"
        # Chromium's own account: the fonts it drew each element's text with
        cdp = page.context.new_cdp_session(page)
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": -1})["root"]
        elements = []
        stack = [root]
        while stack:
            node = stack.pop()
            children = node.get("children", [])
            if node.get("nodeType") == 1 and node.get("nodeName") not in ("SCRIPT", "STYLE", "TITLE", "HEAD") and any(
                    c.get("nodeType") == 3 and c.get("nodeValue", "").strip() for c in children):
                elements.append(node["nodeId"])
            stack.extend(reversed(children))  # document order: the visible page first
        used: dict[str, int] = {}
        for node_id in elements[:4000]:
            for font in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node_id})["fonts"]:
                key = f"{font['familyName']} custom={font['isCustomFont']}"
                used[key] = used.get(key, 0) + font["glyphCount"]
        assert used and all("custom=True" in key for key in used), used
    finally:
        page.close()


def _png(page) -> "object":
    from PIL import Image

    return Image.open(io.BytesIO(page.screenshot())).convert("RGB")


def _differing(a, b) -> float:
    from PIL import ImageChops

    diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > 40 else 0)
    return (diff.histogram()[255]) / (a.width * a.height)


def test_the_page_looks_the_same_on_a_machine_without_fonts(pages, browser, fontless, tmp_path):
    for viewport in (DESKTOP, PHONE):
        with_fonts = open_page(browser, pages["zh"], viewport)
        without = open_page(fontless, pages["zh"], viewport)
        try:
            a, b = _png(with_fonts), _png(without)
            a.save(tmp_path / f"with-{viewport['width']}.png")
            b.save(tmp_path / f"without-{viewport['width']}.png")
            assert _differing(a, b) < 0.002, viewport
        finally:
            with_fonts.close()
            without.close()
    # the comparison can fail: the same page without its embedded font is not the same picture
    stripped = tmp_path / "no-embedded-font.html"
    stripped.write_text(re.sub(r"@font-face\{[^}]*\}", "", pages["zh"].read_text(encoding="utf-8")), encoding="utf-8")
    with_fonts, without = open_page(browser, pages["zh"], DESKTOP), open_page(fontless, stripped, DESKTOP)
    try:
        assert _differing(_png(with_fonts), _png(without)) > 0.01
    finally:
        with_fonts.close()
        without.close()


def test_the_enterprise_table_sorts_and_searches(pages, browser):
    page = open_page(browser, pages["zh"], DESKTOP)
    try:
        total = page.evaluate("document.querySelectorAll('#enterprises tbody tr').length")
        assert total == 300
        findings = "Array.from(document.querySelectorAll('#enterprises tbody tr')).map(r => +r.cells[4].dataset.v)"
        page.click("#enterprises th:nth-child(5) button")
        ascending = page.evaluate(findings)
        assert ascending == sorted(ascending)
        page.click("#enterprises th:nth-child(5) button")
        descending = page.evaluate(findings)
        assert descending == sorted(descending, reverse=True) and descending[0] > 0
        name = page.evaluate("document.querySelector('#enterprises tbody tr td.name').dataset.v")
        page.fill("#q", name)
        visible = page.evaluate("Array.from(document.querySelectorAll('#enterprises tbody tr')).filter(r => !r.hidden).map(r => r.cells[1].dataset.v)")
        assert visible and all(v == name for v in visible)
        assert page.inner_text("#shown") == str(len(visible))
        page.fill("#q", "限期整改")
        routed = page.evaluate("Array.from(document.querySelectorAll('#enterprises tbody tr')).filter(r => !r.hidden).length")
        assert 0 < routed < total
    finally:
        page.close()


def test_an_enterprise_file_opens_on_its_own(pages, browser):
    html = pages["zh"].read_text(encoding="utf-8")
    code = re.search(r'<tr data-enterprise="([0-9A-Z]{18})"[^>]*>\s*<td[^>]*><a class="code"', html).group(1)
    with_findings = re.findall(r'data-k="enterprise/([0-9A-Z]{18})/findings" data-v="([1-9][0-9]*)"', html)
    code = with_findings[0][0] if with_findings else code
    page = open_page(browser, pages["zh"], PHONE, f"#e-{code}")
    try:
        text = page.evaluate("document.body.innerText")
        assert code in text and "违法事实（按时间）" in text and "登记信息" in text
        assert "目标任务完成进度" not in text  # the rest of the page is hidden while a file is open
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        page.close()
