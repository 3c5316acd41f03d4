"""The CloudEvents HTTP protocol binding (1.0.2), request side: an HTTP body and its headers in,
event lines out (one JSON line per event, as the engine reads it).

    structured  Content-Type: application/cloudevents+json        the body is one event
    batched     Content-Type: application/cloudevents-batch+json  the body is a JSON array of events
    binary      ce-* headers, Content-Type: application/json      the headers are the attributes
                                                                  (percent-decoded), the body is `data`
    plain JSON  Content-Type: application/json, no ce-* headers   an object is one event, an
                                                                  array a batch (for curl)

Only a body that is not JSON is refused (`NotJson`, HTTP 400), and a content type that is none
of these (`Unsupported`, HTTP 415). Anything that is JSON becomes lines, each checked by the
engine like any other input: an element that is not a valid event is quarantined there, with
its reason. Nothing here validates: the schemas in schemas/ are the one definition of a valid
event.

Each event is written back as compact JSON in the order its keys came (binary mode: the
context attributes in the order of the CloudEvents spec, extensions sorted, then `data`); the
attribute values are kept exactly as sent (no re-formatted `time`), so an event posted in any
mode, or read from a file, has the same content and the same idempotency digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from urllib.parse import unquote

import orjson

STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"
JSON_TYPES = ("application/json", "text/json")
CE_PREFIX = "ce-"
# the binary-mode attributes in the order the spec lists them; extensions follow, sorted
CONTEXT_ORDER = ("specversion", "id", "source", "type", "subject", "time", "dataschema")


class BodyError(ValueError):
    """A request the binding cannot turn into events; `status` is the HTTP status to answer."""

    status = 400


class NotJson(BodyError):
    """The body (or a binary-mode body with a JSON content type) is not JSON."""

    status = 400


class Unsupported(BodyError):
    """A content type that is none of the binding's modes."""

    status = 415


@dataclass(frozen=True, slots=True)
class Posted:
    """One event as posted: its line for the engine and its id, when it has a string one."""

    line: bytes
    id: str | None


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotJson(f"the body is not JSON: {exc}") from None


def _posted(value: Any) -> Posted:
    event_id = value.get("id") if isinstance(value, dict) else None
    return Posted(orjson.dumps(value), event_id if isinstance(event_id, str) else None)


_ID = itemgetter("id")


def _lines(values: list[Any]) -> tuple[list[bytes], list[str | None]]:
    """Events as lines and their ids (None where an event has no string id), one C-level pass each."""
    lines = list(map(orjson.dumps, values))
    try:
        ids = list(map(_ID, values))
    except (KeyError, TypeError, IndexError):  # an element that is not an object with an id
        ids = [value.get("id") if isinstance(value, dict) else None for value in values]
    if not all(type(event_id) is str for event_id in ids):
        ids = [event_id if type(event_id) is str else None for event_id in ids]
    return lines, ids


def _binary(headers: Mapping[str, str], body: bytes, media: str) -> Posted:
    if media and not is_json(media):
        raise Unsupported(f"binary mode takes JSON data (Content-Type application/json), got {media!r}")
    attributes = {name[len(CE_PREFIX):]: unquote(value, encoding="utf-8", errors="strict")
                  for name, value in ((k.lower(), v) for k, v in headers.items()) if name.startswith(CE_PREFIX)}
    event: dict[str, Any] = {name: attributes[name] for name in CONTEXT_ORDER if name in attributes}
    event.update((name, attributes[name]) for name in sorted(attributes) if name not in event)
    if body.strip():
        event["data"] = _loads(body)
    return _posted(event)


def lines_from_http(headers: Mapping[str, str], body: bytes) -> tuple[list[bytes], list[str | None]]:
    """The events of one request as (lines, ids), in the order they were sent: each event's
    line for the engine and its id where it has a string one. Raises NotJson or Unsupported.

    `headers`: names in any case (HTTP header names are case-insensitive)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    media = media_type(lowered.get("content-type", ""))
    if media == BATCHED:
        value = _loads(body)
        return _lines(value if isinstance(value, list) else [value])
    if media == STRUCTURED:
        return _lines([_loads(body)])
    if any(name.startswith(CE_PREFIX) for name in lowered):
        try:
            posted = _binary(lowered, body, media)
        except UnicodeDecodeError as exc:
            raise NotJson(f"a ce- header is not percent-encoded UTF-8: {exc}") from None
        return [posted.line], [posted.id]
    if is_json(media):
        value = _loads(body)
        return _lines(value if isinstance(value, list) else [value])
    raise Unsupported(f"Content-Type {media or '(none)'!r}: send {STRUCTURED}, {BATCHED}, "
                      "or application/json (binary mode with ce- headers, or plain JSON)")


def events_from_http(headers: Mapping[str, str], body: bytes) -> list[Posted]:
    """The events of one request as `Posted`, in the order they were sent (`lines_from_http`)."""
    lines, ids = lines_from_http(headers, body)
    return [Posted(line, event_id) for line, event_id in zip(lines, ids)]
