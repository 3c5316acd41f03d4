"""Regenerate docs/report-zh.png, the README's screenshot: the Chinese report of `rectify demo`.

    .venv/bin/python scripts/screenshot.py [--out docs/report-zh.png]

Runs `rectify demo` (its defaults: 3,000 enterprises, 2 days, seed 2024) into a temporary
folder, writes the report with `rectify report --html --lang zh`, and takes a screenshot of the
top of the page at 1280 px in the system's headless Chromium (Playwright, no browser download).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--font-render-hinting=none"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "report-zh.png"))
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    rectify = str(Path(sys.executable).parent / "rectify")
    with tempfile.TemporaryDirectory() as folder:
        demo = Path(folder) / "rectify-demo"
        subprocess.run([rectify, "--log-level", "error", "demo", "--out-dir", str(demo), "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
        page = Path(folder) / "report-zh.html"
        subprocess.run([rectify, "--log-level", "error", "report", str(demo / "events.jsonl"), "--html", str(page),
                        "--lang", "zh"], check=True, stdout=subprocess.DEVNULL)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
            tab = browser.new_page(viewport={"width": 1280, "height": args.height})
            tab.goto(page.resolve().as_uri())
            tab.evaluate("document.fonts.ready.then(() => true)")
            tab.screenshot(path=args.out)
            browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
