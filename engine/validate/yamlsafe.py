"""YAML configuration and rule data, read so that it cannot exhaust memory or time.

Every YAML file rectify reads goes through `load_yaml`: rule packs (engine/judge/rulepacks.py),
`--params` (engine/cli/common.py), evaluation methods (engine/decide/evaluation.py), the
HJ 212 station registry (engine/ingest/hj212/stations.py) and what-if specs
(engine/audit/whatif.py).

PyYAML's safe loader never runs code, but it builds whatever a file asks for. Nine nested
anchors of ten aliases each ("billion laughs") are a few hundred bytes that expand into a
billion nodes: whatever walks the result (schema validation, a fingerprint, a JSON dump)
runs out of memory or crashes. A 5,000-digit integer makes Python's `int()` raise
ValueError; `1e999` and `.nan` are floats no rule can use. So before anything is built, the
file's event stream (libyaml, iterative) is checked against `YamlLimits`:

- the text is at most `max_bytes` long;
- collections nest at most `max_depth` deep;
- at most `max_aliases` aliases, and the document *as expanded* (every alias counted as a
  copy of what it names) has at most `max_nodes` nodes;
- every integer has at most `max_int_digits` digits, every float is finite.

Refusals are `YamlError`s naming the file, line, column and field path
(`rules[3].parameters.limit.value`), in milliseconds. In: YAML text and its origin (a file
name for messages). Out: plain data (dicts, lists, str, int, float, bool, None, dates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


@dataclass(frozen=True, slots=True)
class YamlLimits:
    """Bounds on one YAML document (the defaults allow about 40x the largest shipped rule pack: 101 KB, 223 aliases)."""

    max_bytes: int = 4 << 20
    max_depth: int = 64
    max_aliases: int = 10_000
    max_nodes: int = 1_000_000
    max_int_digits: int = 30


DEFAULT_LIMITS = YamlLimits()


class YamlError(ValueError):
    """A YAML document that is not valid or is beyond the limits: where and what.

    `str()` is "ORIGIN:LINE:COLUMN: FIELD: REASON" (line and column 1-based, field omitted
    when the problem is not inside one)."""

    def __init__(self, origin: str, line: int | None, column: int | None, field: str, reason: str) -> None:
        where = origin + (f":{line}" if line is not None else "") + (f":{column}" if column is not None else "")
        super().__init__(f"{where}: {field + ': ' if field else ''}{reason}")
        self.origin, self.line, self.column, self.field, self.reason = origin, line, column, field, reason


def read_yaml(path: str | Path, limits: YamlLimits = DEFAULT_LIMITS, lines: dict[str, int] | None = None) -> Any:
    """A YAML file's data (`load_yaml` of its text); an unreadable file is a YamlError too."""
    origin = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise YamlError(origin, None, None, "", f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > limits.max_bytes:
        raise YamlError(origin, None, None, "", f"larger than {limits.max_bytes} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlError(origin, None, None, "", f"not UTF-8 (byte {exc.start})") from None
    return load_yaml(text, origin, limits, lines)


def load_yaml(text: str, origin: str = "<yaml>", limits: YamlLimits = DEFAULT_LIMITS,
              lines: dict[str, int] | None = None) -> Any:
    """One YAML document's data, safely (see the module docstring); None for an empty document.

    `lines`, when given, receives the 1-based line of every field path (`pack.name`), for
    messages about values that are valid YAML but wrong for their field."""
    if len(text) > limits.max_bytes:
        raise YamlError(origin, None, None, "", f"larger than {limits.max_bytes} bytes")
    try:
        check_events(text, origin, limits, lines)
    except yaml.MarkedYAMLError as exc:
        raise _marked(origin, exc) from None
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - the safe loader: no Python tags
    except yaml.MarkedYAMLError as exc:
        raise _marked(origin, exc) from None
    except yaml.YAMLError as exc:
        raise YamlError(origin, None, None, "", f"not valid YAML: {exc}") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # a constructor refusing a value the checks let by
        raise YamlError(origin, None, None, "", f"not valid YAML: {type(exc).__name__}: {exc}") from None


def _marked(origin: str, exc: yaml.MarkedYAMLError) -> YamlError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    reason = " ".join(part for part in (exc.context, exc.problem) if part) or "not valid YAML"
    return YamlError(origin, line, column, "", f"not valid YAML: {reason}")


class _Frame:
    """A collection being read: its path, whether a mapping expects a key next, the expanded size so far."""

    __slots__ = ("path", "mapping", "expect_key", "key", "index", "size", "anchor")

    def __init__(self, path: str, mapping: bool, anchor: str | None) -> None:
        self.path, self.mapping, self.anchor = path, mapping, anchor
        self.expect_key, self.key, self.index, self.size = True, "", 0, 1


def check_events(text: str, origin: str, limits: YamlLimits = DEFAULT_LIMITS, lines: dict[str, int] | None = None) -> None:
    """Walk the document's events once (no objects built) and raise YamlError at the first bound crossed."""
    resolver = yaml.resolver.Resolver()
    stack: list[_Frame] = []
    sizes: dict[str, int] = {}  # anchor -> expanded node count of what it names
    aliases = 0
    total = 0

    def fail(event: Any, field: str, reason: str) -> YamlError:
        mark = event.start_mark
        return YamlError(origin, mark.line + 1, mark.column + 1, field, reason)

    def place() -> str:
        """The field path of the node about to be read (a mapping key reads as its mapping)."""
        if not stack:
            return ""
        top = stack[-1]
        if top.mapping:
            if top.expect_key or top.key == "<<":  # a merge key's mapping holds fields of this one
                return top.path
            return f"{top.path}.{top.key}" if top.path else top.key
        return f"{top.path}[{top.index}]"

    def settle(size: int, anchor: str | None) -> None:
        """A node of `size` expanded nodes is complete: count it in its parent."""
        nonlocal total
        if anchor is not None:
            sizes[anchor] = size
        if stack:
            top = stack[-1]
            top.size += size
            if top.mapping:
                top.expect_key = not top.expect_key
            else:
                top.index += 1
        else:
            total += size

    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(stack) >= limits.max_depth:
                raise fail(event, place(), f"nested deeper than {limits.max_depth} levels")
            stack.append(_Frame(place(), isinstance(event, yaml.MappingStartEvent), event.anchor))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            frame = stack.pop()
            settle(frame.size, frame.anchor)
            expanded = total + sum(f.size for f in stack)
            if expanded > limits.max_nodes:
                raise fail(event, frame.path, f"more than {limits.max_nodes} nodes once aliases are expanded")
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise fail(event, place(), f"more than {limits.max_aliases} aliases")
            size = sizes.get(event.anchor, 1)
            if total + sum(f.size for f in stack) + size > limits.max_nodes:
                raise fail(event, place(), f"alias *{event.anchor} expands the document beyond {limits.max_nodes} nodes")
            settle(size, None)
        elif isinstance(event, yaml.ScalarEvent):
            field = place()
            top = stack[-1] if stack else None
            if top is not None and top.mapping and top.expect_key:
                top.key = event.value
                field = f"{top.path}.{event.value}" if top.path else event.value
                if event.value == "<<":
                    field = top.path
                if lines is not None:
                    lines.setdefault(field, event.start_mark.line + 1)
            tag = event.tag if event.tag not in (None, "!") else resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
            if tag == _INT:
                digits = sum(c.isalnum() for c in event.value)
                if digits > limits.max_int_digits:
                    raise fail(event, field, f"an integer of {digits} digits (at most {limits.max_int_digits})")
            elif tag == _FLOAT:
                if not _finite_float(event.value):
                    raise fail(event, field, f"{event.value[:20]!r} is not a finite number")
            settle(1, event.anchor)


def _finite_float(value: str) -> bool:
    """Whether a YAML float (as the safe constructor reads it) is finite."""
    text = value.replace("_", "").lower()
    if text.lstrip("+-") in (".inf", ".nan"):
        return False
    if ":" in text:  # base 60 (YAML 1.1): bounded by the digit count of its parts
        return len(text) <= 64
    try:
        return math.isfinite(float(text))
    except ValueError:
        return True  # the constructor reports it
