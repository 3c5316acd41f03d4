"""The schema files shipped in `schemas/`: loading, composing into one resource, and error
messages that name the field path ('data.value: ...')."""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Mapping
from importlib import resources
from typing import Any

import jsonschema

SCHEMA_PACKAGE = "schemas"
VOCABULARY_ID = "urn:rectify:schema:vocabulary"


def load_core_schema(name: str) -> dict[str, Any]:
    """Read a schema file shipped in the `schemas` package (e.g. 'envelope.schema.json')."""
    text = resources.files(SCHEMA_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=None)
def core_validator(name: str) -> jsonschema.Draft202012Validator:
    """A cached reference validator for a schema file shipped in `schemas` (rule packs, methods)."""
    return jsonschema.Draft202012Validator(ecma_anchors(load_core_schema(name)))


_DATA_KEYWORDS = ("const", "enum", "default", "examples")  # values there are data, not schemas


def ecma_anchors(node: Any) -> Any:
    """`node` with each `$` that ends a pattern (`pattern`, the keys of `patternProperties`) as
    `\\Z`. JSON Schema's patterns are ECMA-262 regular expressions, where `$` matches only at the
    end (as in jsonschema-rs); Python's `$` also matches before a final newline, so jsonschema
    would take "a34013\\n" for a pollutant code the compiled validator refuses."""
    if isinstance(node, list):
        return [ecma_anchors(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str):
            out[key] = _python_pattern(value)
        elif key == "patternProperties" and isinstance(value, dict):
            out[key] = {_python_pattern(k): ecma_anchors(v) for k, v in value.items()}
        elif key in _DATA_KEYWORDS:
            out[key] = value
        else:
            out[key] = ecma_anchors(value)
    return out


def _python_pattern(pattern: str) -> str:
    """An ECMA-262 pattern for Python's `re`: each `$` outside a character class and not escaped
    becomes `\\Z` (the end of the string only)."""
    out, escaped, in_class = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            out.append("\\Z")
            continue
        out.append(char)
    return "".join(out)


def inline_vocabulary(node: Any, vocabulary: Mapping[str, Any]) -> Any:
    """Replace $refs into the vocabulary by the definitions, so one schema is self-contained."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(VOCABULARY_ID + "#/$defs/"):
            name = ref.rsplit("/", 1)[1]
            merged = copy.deepcopy(vocabulary[name])
            for key, value in node.items():
                if key != "$ref":
                    merged[key] = inline_vocabulary(value, vocabulary)
            return merged
        return {key: inline_vocabulary(value, vocabulary) for key, value in node.items()}
    if isinstance(node, list):
        return [inline_vocabulary(item, vocabulary) for item in node]
    return node


def strip_ids(node: Any) -> Any:
    """Drop nested $id/$schema so a composed schema is one resource."""
    if isinstance(node, dict):
        return {k: strip_ids(v) for k, v in node.items() if k not in ("$id", "$schema")}
    if isinstance(node, list):
        return [strip_ids(item) for item in node]
    return node


INT_RANGE = (-(2**63), 2**64 - 1)  # the integers JSON tools keep exactly (orjson's range)


def first_unrepresentable(value: Any, path: str = "") -> str | None:
    """'path: why' for the first number in `value` that is not data: NaN or infinite, or an
    integer outside INT_RANGE (Python's json module makes any length; orjson and the compiled
    validator cannot hold them), or a value of no JSON type (a Decimal, a complex: JSON Schema's
    `number` takes them, the arithmetic after it does not). None when there is none.

    Data without such numbers (nearly always) is proven so by one quick walk that builds no paths."""
    if not _unrepresentable_inside(value):
        return None
    return _locate(value, path)


def wide_integer(value: Any) -> bool:
    """An integer outside INT_RANGE (bool is not one)."""
    return type(value) is int and not INT_RANGE[0] <= value <= INT_RANGE[1]


def _bad_number(value: Any) -> bool:
    return not math.isfinite(value) if isinstance(value, float) else wide_integer(value)


def _unrepresentable_inside(value: Any) -> bool:
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return _bad_number(value)
    isfinite, (low, high) = math.isfinite, INT_RANGE
    for item in items:  # scalars are checked here, without a call each; text (the most) first
        if type(item) is str:
            continue
        if isinstance(item, float):
            if not isfinite(item):
                return True
        elif type(item) is int:
            if not low <= item <= high:
                return True
        elif isinstance(item, (dict, list, tuple)):
            if _unrepresentable_inside(item):
                return True
        elif not (item is None or item is True or item is False or isinstance(item, (str, int))):
            return True  # a number of no JSON type (a Decimal, a complex) or another object
    return False


def _locate(value: Any, path: str) -> str | None:
    if not isinstance(value, (dict, list, tuple, str, int, float, type(None))):  # bool is an int
        return f"{path or '(event)'}: a {type(value).__name__} is not a JSON value"
    if _bad_number(value):
        if isinstance(value, float):
            return f"{path or '(event)'}: numbers must be finite (NaN and infinity are not data)"
        return f"{path or '(event)'}: integers must lie between -2**63 and 2**64 - 1 (JSON tools hold no wider ones)"
    if isinstance(value, dict):
        for key, item in value.items():
            found = _locate(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _locate(item, f"{path}[{index}]")
            if found:
                return found
    return None


JSON_SCALARS = (str, int, float, bool, type(None))


def first_unwritable(value: Any, path: str = "") -> str | None:
    """'path: why' for the first part of `value` no JSON text can hold, which a JSON writer
    (orjson) refuses: text with a lone surrogate (Python's json module reads '"\\ud800"' as
    one), as a value or a key, or a value of no JSON type (a Decimal, a set). None when there is
    none. Called only once orjson has refused `value`: the happy path never walks."""
    if isinstance(value, str):
        if _lone_surrogate(value):
            return f"{path or '(event)'}: text with a lone surrogate ({_surrogate_shown(value)}) is not Unicode text (no UTF-8)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path or '(event)'}: a key must be text, got the {type(key).__name__} {shown(key)}"
            if _lone_surrogate(key):
                return f"{path or '(event)'}: the key {_surrogate_shown(key)} has a lone surrogate: not Unicode text (no UTF-8)"
            found = first_unwritable(item, f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = first_unwritable(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if not isinstance(value, JSON_SCALARS):
        return f"{path or '(event)'}: a {type(value).__name__} is not a JSON value"
    return None


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def without_surrogates(text: str) -> str:
    """`text` with each lone surrogate written as its escape ('\\ud800'): text a JSON writer takes."""
    if not _lone_surrogate(text):
        return text
    return "".join(f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def _surrogate_shown(text: str) -> str:
    return shown(without_surrogates(text))


def _path(error: jsonschema.ValidationError) -> str:
    parts: list[str] = []
    for part in error.absolute_path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(event)"


MAX_SHOWN = 80  # characters of a value an error message repeats (a 1 MB value is not repeated whole)
MAX_MESSAGE = 600


def shown(value: Any) -> str:
    """repr(value), cut to MAX_SHOWN characters with its full length said."""
    text = repr(value)
    if len(text) <= MAX_SHOWN:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters as text"
    return f"{text[:MAX_SHOWN]}… ({size})"


def describe(error: jsonschema.ValidationError) -> str:
    """'field.path: what is wrong' for one jsonschema error; a long value is shown cut (`shown`)."""
    if error.validator == "format":
        cause = f": {error.cause}" if error.cause else ""
        text = f"{_path(error)}: {shown(error.instance)} is not a valid {error.validator_value}{cause}"
    elif error.validator in ("required", "additionalProperties"):
        text = f"{_path(error)}: {error.message}"
    elif error.validator == "pattern":  # as written in the schema (`ecma_anchors` made its `$` `\\Z`)
        text = f"{_path(error)}: {shown(error.instance)} does not match {error.validator_value.replace(chr(92) + 'Z', '$')!r}"
    elif error.validator == "enum":
        text = f"{_path(error)}: {shown(error.instance)} is not one of {', '.join(map(repr, error.validator_value))}"
    else:
        message, full = error.message, repr(error.instance)
        if len(full) > MAX_SHOWN:
            message = message.replace(full, shown(error.instance))
        text = f"{_path(error)}: {message}"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + f"… (message cut at {MAX_MESSAGE} characters)"
