"""Languages for people: the CLI's text, the HTML report and the notices, in Chinese or English.

In: a language, `zh` or `en`, or None for the locale's (zh where LC_ALL, LC_MESSAGES or LANG,
the first one set, starts with `zh`; en otherwise). Out: a `Translator` with

- `gettext` / `ngettext` for messages: domain `messages`, English source text extracted from the
  code and the templates (`python -m engine.devtools.i18n` updates the catalogues);
- `name(context, key)` for the programme's vocabulary: domain `vocabulary`, keyed by identifier
  (the lists, the routes, pollutants by HJ 212 code, standards, districts, industries...) in
  both languages; an identifier no catalogue knows is shown as it is;
- dates and numbers formatted by Babel's CLDR data for the locale;
- `text(message)` for a `Message`: an English template and its values, made where the words are
  (a verdict, an error) and put into words only where a person reads them (str(): English).

The gettext catalogues (.po, in locale/) are the only source; they are compiled in memory on
first use (Babel's read_po and write_mo), never committed as .mo. Only human-facing text is
translated: JSON and JSONL records keep their identifiers (the machine contract).
"""

from __future__ import annotations

import functools
import io
import os
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal, localcontext
from importlib import resources
from typing import Any

from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

LANGS = ("zh", "en")
LOCALES = {"zh": "zh_CN", "en": "en"}
DOMAINS = ("messages", "vocabulary")
_OFFSET = re.compile(r"([+-]\d\d:\d\d|Z)$")

__all__ = ["DOMAINS", "LANGS", "LOCALES", "Message", "Translator", "catalogue_path", "resolve_lang", "translator"]


def resolve_lang(value: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """`zh` or `en`: the value given, else the locale's (zh where the first of LC_ALL,
    LC_MESSAGES, LANG that is set starts with zh). Raises ValueError for another value."""
    if value is not None:
        if value not in LANGS:
            raise ValueError(f"language must be one of {', '.join(LANGS)}, got {value!r}")
        return value
    env = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        setting = env.get(name)
        if setting:
            return "zh" if setting.lower().startswith("zh") else "en"
    return "en"


def catalogue_path(lang: str, domain: str) -> Any:
    """The .po file of a language and domain (a Traversable; works from a wheel)."""
    return resources.files("engine.i18n").joinpath("locale", LOCALES[lang], "LC_MESSAGES", f"{domain}.po")


def _compiled(lang: str, domain: str) -> Translations | NullTranslations:
    path = catalogue_path(lang, domain)
    if not path.is_file():  # English messages are the source text: no catalogue
        return NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=LOCALES[lang], domain=domain)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer, domain=domain)


class Message:
    """A sentence to put into words later: an English template (a msgid of the `messages`
    catalogue, found by `python -m engine.devtools.i18n` in every `Message("...")` call) and its
    values. Values that are Messages are put into words in the same language; a list is its
    items so put, joined by ", ".

    In: the template and its values (keywords named as the template's {fields}). Out: str() is
    the English text (what JSON records and exceptions carry); `Translator.text` gives it in a
    language. Equal when template and values are.
    """

    __slots__ = ("template", "values")

    def __init__(self, template: str, /, **values: Any) -> None:
        self.template = template
        self.values = values

    def __str__(self) -> str:
        return self.template.format(**{k: _words(v, str) for k, v in self.values.items()})

    def __repr__(self) -> str:
        return f"Message({self.template!r}, {self.values!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and (self.template, self.values) == (other.template, other.values)

    __hash__ = None  # type: ignore[assignment]  # values may be unhashable


def _words(value: Any, say: Callable[[Message], str]) -> Any:
    """A value of a Message ready for format(): Messages said, lists joined by ", "."""
    if isinstance(value, Message):
        return say(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(_words(item, say)) for item in value)
    return value


def _when(value: str | date | datetime) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value[:10])  # event time as written: its local date


class Translator:
    """Messages and vocabulary of one language (built once per language by `translator`)."""

    def __init__(self, lang: str) -> None:
        self.lang = resolve_lang(lang)
        self.locale = LOCALES[self.lang]
        self._messages = _compiled(self.lang, "messages")
        self._vocabulary = _compiled(self.lang, "vocabulary")

    # ---- messages -------------------------------------------------------------------------

    def gettext(self, message: str) -> str:
        """The translation of an English message (the message itself when there is none)."""
        return self._messages.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._messages.ngettext(singular, plural, n)

    def text(self, message: Message | str) -> str:
        """A Message in this language (its values too, when they are Messages); a plain string
        (an error of another library, a file name) as it is."""
        if not isinstance(message, Message):
            return message
        values = {k: _words(v, self.text) for k, v in message.values.items()}
        return self.gettext(message.template).format(**values)

    # ---- vocabulary -----------------------------------------------------------------------

    def has(self, context: str, key: str) -> bool:
        """Whether the vocabulary gives `key` in `context` a name other than itself."""
        return self._vocabulary.pgettext(context, key) != key

    def name(self, context: str, key: Any) -> str:
        """The name of an identifier (a list, a route, an HJ 212 code...): the identifier itself
        when the vocabulary does not know it, so that new kinds of records still show."""
        if key is None:
            return "—"
        text = str(key)
        return self._vocabulary.pgettext(context, text)

    def label(self, context: str, key: Any) -> str:
        """For command-line text: the name in Chinese, the identifier itself in English (so that
        English text keeps the spellings of the JSON records)."""
        if key is None:
            return "—" if self.lang == "zh" else "-"
        return self.name(context, key) if self.lang == "zh" else str(key)

    def list_name(self, key: str | None) -> str:
        return self.name("list", key if key is not None else "unlisted")

    def route(self, key: str) -> str:
        return self.name("route", key)

    def pollutant(self, code: str | None) -> str:
        return self.name("pollutant", code) if code else "—"

    def basis(self, basis: Mapping[str, Any] | None, *, note: bool = False) -> str:
        """A legal basis as one line: standard, table, clause (each named in the language when the
        vocabulary knows it), and the note when asked for."""
        if not basis:
            return "—"
        parts = [self.name(part, basis[part]) for part in ("standard", "table", "clause") if basis.get(part)]
        if note and basis.get("note"):
            parts.append(self.name("note", basis["note"]))
        return self.gettext("; ").join(parts) if parts else "—"

    # ---- dates and numbers ----------------------------------------------------------------

    def date(self, value: str | date | datetime | None) -> str:
        """A date as written in the language (2024年3月1日; March 1, 2024): the local date of
        an event time as written, never converted through the machine's time zone."""
        if not value:
            return "—"
        return format_date(_when(value), format="long", locale=self.locale)

    def time(self, value: str | None) -> str:
        """An event time as written, for people: date and clock time in the event's own offset."""
        if not value:
            return "—"
        clock = value[11:16] if len(value) >= 16 else ""
        offset = _OFFSET.search(value)
        zone = f" (UTC{offset.group(0)})" if offset and offset.group(0) != "Z" else " (UTC)" if offset else ""
        return f"{self.date(value)} {clock}".rstrip() + zone

    def number(self, value: float | int | None, digits: int = 2) -> str:
        """A number with grouping, at most `digits` decimals; — for none, and for a value that is
        not a finite number (a sum that overflowed); any finite float, however large, is written
        out in full."""
        if value is None:
            return "—"
        pattern = "#,##0" + ("." + "#" * digits if digits > 0 else "")
        return _formatted(value, pattern, max(digits, 0), self.locale)

    def money(self, value: float | None) -> str:
        """A sum of money with grouping and always two decimals (yuan and fen); — for none and for
        a value that is not a finite number."""
        if value is None:
            return "—"
        return _formatted(value, "#,##0.00", 2, self.locale)


def _formatted(value: float | Decimal, pattern: str, digits: int, locale: str) -> str:
    """`value` by a Babel number pattern of `digits` decimals, exactly as Babel writes it, but in
    a decimal context wide enough for the value: Babel quantizes in the thread's context (28
    digits by default), which cannot hold 1e25 with three decimals, let alone 1e308. A wider
    context changes nothing that fitted in 28 digits. Not finite (inf, nan): —."""
    if isinstance(value, Decimal):
        exact = value
    elif isinstance(value, float):
        exact = Decimal(str(value))  # as Babel converts a float: its shortest repr, not its binary value
    else:
        exact = Decimal(value)
    if not exact.is_finite():
        return "—"
    width = max(len(exact.as_tuple().digits), exact.adjusted() + 1 + digits) + 2
    with localcontext(prec=max(28, width)):
        return format_decimal(exact, format=pattern, locale=locale)


@functools.lru_cache(maxsize=4)
def translator(lang: str | None = None) -> Translator:
    """The Translator of a language (None: the locale's), built once per process."""
    return Translator(resolve_lang(lang))
