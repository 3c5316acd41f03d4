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
    return jsonschema.Draft202012Validator(load_core_schema(name))


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


def first_non_finite(value: Any, path: str = "data") -> str | None:
    """The path of the first NaN or infinite number in `value`, or None.

    Finite data (nearly always) is proven so by one quick walk that builds no paths."""
    if not _non_finite_inside(value):
        return None
    return _locate(value, path)


def _non_finite_inside(value: Any) -> bool:
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return isinstance(value, float) and not math.isfinite(value)
    isfinite = math.isfinite
    for item in items:  # scalars are checked here, without a call each
        if isinstance(item, float):
            if not isfinite(item):
                return True
        elif isinstance(item, (dict, list)) and _non_finite_inside(item):
            return True
    return False


def _locate(value: Any, path: str) -> str | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _locate(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _locate(item, f"{path}[{index}]")
            if found:
                return found
    return None


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
    elif error.validator == "enum":
        text = f"{_path(error)}: {shown(error.instance)} is not one of {', '.join(map(repr, error.validator_value))}"
    else:
        message, full = error.message, repr(error.instance)
        if len(full) > MAX_SHOWN:
            message = message.replace(full, shown(error.instance))
        text = f"{_path(error)}: {message}"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + f"… (message cut at {MAX_MESSAGE} characters)"
