"""The CJK font embedded in the report and the notices, so Chinese renders on a machine that has
no CJK font of its own.

In: the text a page uses. Out: a WOFF2 subset of Noto Sans CJK SC (SIL Open Font License 1.1)
with only the glyphs of that text, the same bytes for the same text (fontTools, loaded without
recalculating the timestamp), and the CSS @font-face rule that embeds it as a data: URL under
the family name `RectifySC`.

The full font is not shipped with rectify: it is taken from the system at run time —
`RECTIFY_CJK_FONT=/path/font.ttc#2` (file, and face index in a collection), else Debian's
fonts-noto-cjk (face 2 of NotoSansCJK-Regular.ttc is Simplified Chinese), else what
fontconfig's `fc-match` names for "Noto Sans CJK SC". Without one, `FontMissing` says how to
install it.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import shutil
import subprocess
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

FAMILY = "RectifySC"
ENV = "RECTIFY_CJK_FONT"
KNOWN = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # Debian, Ubuntu: fonts-noto-cjk
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 2),  # Arch, Alpine
    ("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc", 2),  # Fedora
)
LICENSE = ("Noto Sans CJK SC, a subset. Copyright 2014-2021 Adobe (http://www.adobe.com/). "
           "Licensed under the SIL Open Font License 1.1 (https://openfontlicense.org).")


class FontMissing(RuntimeError):
    """No Noto Sans CJK SC (or the font RECTIFY_CJK_FONT names) on this machine."""


def _parse(setting: str) -> tuple[str, int]:
    path, _, index = setting.partition("#")
    return path, int(index) if index else 0


def locate() -> tuple[str, int]:
    """(path, face index) of the CJK font to embed; FontMissing says how to get one."""
    setting = os.environ.get(ENV)
    if setting:
        path, index = _parse(setting)
        if not Path(path).is_file():
            raise FontMissing(f"{ENV}={setting}: no such file")
        return path, index
    for path, index in KNOWN:
        if Path(path).is_file():
            return path, index
    if shutil.which("fc-match"):
        found = subprocess.run(["fc-match", "-f", "%{file}#%{index}", "Noto Sans CJK SC:lang=zh-cn"],
                               capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        path, index = _parse(found) if found else ("", 0)
        if path and "CJK" in Path(path).name and Path(path).is_file():
            return path, index
    raise FontMissing("the report and notices embed Noto Sans CJK SC, which is not installed: "
                      "apt-get install fonts-noto-cjk (Debian/Ubuntu), or set "
                      f"{ENV}=/path/to/NotoSansCJK-Regular.ttc#2")


@functools.lru_cache(maxsize=1)
def _coverage(path: str, index: int) -> frozenset[int]:
    font = TTFont(path, fontNumber=index, lazy=True)
    try:
        return frozenset(font.getBestCmap())
    finally:
        font.close()


def coverage() -> frozenset[int]:
    """Code points the full font has a glyph for."""
    return _coverage(*locate())


@functools.lru_cache(maxsize=8)
def _subset(path: str, index: int, text: str) -> bytes:
    options = subset.Options()
    options.flavor = "woff2"
    options.font_number = index
    options.hinting = False
    options.layout_features = []  # horizontal text in the font's own (SC) forms: no substitutions needed
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 13, 14]  # keep the copyright and licence names (OFL)
    font = subset.load_font(path, options)  # recalc_timestamp=False: the same bytes every time
    try:
        subsetter = subset.Subsetter(options)
        subsetter.populate(text=text)
        subsetter.subset(font)
        buffer = io.BytesIO()
        subset.save_font(font, buffer, options)
        return buffer.getvalue()
    finally:
        font.close()


def woff2_subset(text: str) -> bytes:
    """A WOFF2 subset with the glyphs of `text` (the characters the font has), deterministic."""
    path, index = locate()
    have = coverage()
    chars = "".join(sorted({c for c in text if ord(c) in have and not c.isspace()} | {" "}))
    return _subset(path, index, chars)


def font_face(text: str) -> str:
    """The @font-face rule embedding the subset for `text` as family RectifySC."""
    data = base64.b64encode(woff2_subset(text)).decode("ascii")
    return (f"/* {LICENSE} */\n@font-face{{font-family:{FAMILY};font-style:normal;font-weight:400;"
            f"src:url(data:font/woff2;base64,{data}) format('woff2')}}")


def subset_coverage(data: bytes) -> frozenset[int]:
    """Code points a (subset) font file maps: for tests and checks of a page's text."""
    font = TTFont(io.BytesIO(data))
    try:
        return frozenset(font.getBestCmap())
    finally:
        font.close()
