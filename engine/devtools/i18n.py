"""Keep the message catalogues in step with the code: `python -m engine.devtools.i18n [check|update]`.

`update` extracts every message of engine/ (Python `_()`, `gettext()`, `ngettext()` and
`Message()` calls and the Jinja templates, with Babel's extractors) into the Chinese catalogue
engine/i18n/locale/zh_CN/LC_MESSAGES/messages.po, keeping the translations there, dropping
messages no longer used and listing the new ones to translate. `check` (also run by the tests)
lists what is wrong: a message without a translation, a translation whose {placeholders}
differ from its message, a vocabulary key one language has and the other has not.
English needs no message catalogue: the messages are English. The output is sorted and
carries no dates or line numbers, so it changes only when the messages do.
"""

from __future__ import annotations

import io
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ENGINE = Path(__file__).resolve().parents[1]
LOCALE = ENGINE / "i18n" / "locale"
METHODS = [("**/templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "Message": None}
FIXED = datetime(2025, 1, 1, tzinfo=timezone.utc)
FIELD = re.compile(r"\{(\w*)[^{}]*\}")


def extract() -> Catalog:
    """Every message the code and templates use, as a template catalogue."""
    template = Catalog(project="rectify", version="0.1", creation_date=FIXED, revision_date=FIXED, fuzzy=False)
    options = {"**/templates/**.html": {"trim_blocks": "true", "lstrip_blocks": "true"}}
    for filename, lineno, message, comments, context in extract_from_dir(
            str(ENGINE), METHODS, options_map=options, keywords=KEYWORDS, strip_comment_tags=True):
        if message and all(message if isinstance(message, tuple) else [message]):
            template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def _read(path: Path, locale: str, domain: str) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale, domain=domain)


def _write(catalog: Catalog, path: Path) -> None:
    buffer = io.BytesIO()
    write_po(buffer, catalog, sort_output=True, no_location=True, omit_header=False, ignore_obsolete=True, width=0)
    path.write_bytes(buffer.getvalue())


def update() -> list[str]:
    """Merge the extracted messages into the Chinese catalogue; the messages still untranslated."""
    path = LOCALE / "zh_CN" / "LC_MESSAGES" / "messages.po"
    catalog = _read(path, "zh_CN", "messages") if path.exists() else Catalog(
        locale="zh_CN", domain="messages", project="rectify", version="0.1", creation_date=FIXED,
        revision_date=FIXED, fuzzy=False)
    catalog.update(extract(), no_fuzzy_matching=True, update_header_comment=False, update_creation_date=False)
    catalog.revision_date = FIXED
    catalog.creation_date = FIXED
    _write(catalog, path)
    return [str(m.id) for m in catalog if m.id and not m.string]


def _fields(text: str) -> list[str]:
    return sorted(FIELD.findall(text))


def check() -> list[str]:
    """What is wrong with the catalogues (nothing: an empty list)."""
    problems: list[str] = []
    path = LOCALE / "zh_CN" / "LC_MESSAGES" / "messages.po"
    catalog = _read(path, "zh_CN", "messages")
    for message in extract():
        if not message.id:
            continue
        found = catalog.get(message.id, context=message.context)
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        if found is None or not found.string or (isinstance(found.string, tuple) and not all(found.string)):
            problems.append(f"zh_CN/messages.po: no translation of {ids[0]!r}")
            continue
        strings = found.string if isinstance(found.string, tuple) else (found.string,)
        if any(_fields(ids[0]) != _fields(s) and _fields(ids[-1]) != _fields(s) for s in strings):
            problems.append(f"zh_CN/messages.po: the placeholders of {ids[0]!r} differ in its translation")
    vocab = {lang: _read(LOCALE / locale / "LC_MESSAGES" / "vocabulary.po", locale, "vocabulary")
             for lang, locale in (("en", "en"), ("zh", "zh_CN"))}
    keys = {lang: {(m.context, m.id) for m in catalog if m.id} for lang, catalog in vocab.items()}
    for lang, other in (("en", "zh"), ("zh", "en")):
        for context, key in sorted(keys[lang] - keys[other], key=str):
            problems.append(f"vocabulary: {context}/{key} is in {lang} but not in {other}")
    for lang, catalog in vocab.items():
        for message in catalog:
            if message.id and not message.string:
                problems.append(f"vocabulary ({lang}): {message.context}/{message.id} has no name")
    for po in sorted(LOCALE.glob("*/LC_MESSAGES/*.po")):
        for context, key in _repeated(po.read_text(encoding="utf-8")):
            problems.append(f"{po.relative_to(LOCALE)}: {context}/{key} is defined twice (the reader keeps one silently)")
    return problems


ENTRY = re.compile(r'^(?:msgctxt "((?:[^"\\]|\\.)*)"\n)?msgid "((?:[^"\\]|\\.)+)"', re.M)


def _repeated(text: str) -> list[tuple[str, str]]:
    """(context, message) pairs that appear more than once in a .po file's text."""
    seen: set[tuple[str, str]] = set()
    repeated = []
    for context, key in ENTRY.findall(text):
        if (context, key) in seen:
            repeated.append((context, key))
        seen.add((context, key))
    return repeated


def main(argv: list[str] | None = None) -> int:
    command = (argv if argv is not None else sys.argv[1:] or ["check"])[0]
    if command == "update":
        missing = update()
        for message in missing:
            print(f"to translate: {message}")
        return 1 if missing else 0
    problems = check()
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
