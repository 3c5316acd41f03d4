"""The HTTP API (an ASGI app on Starlette): events in, records and state out.

    POST /events                     CloudEvents (structured, batched, binary); per event: accepted,
                                     duplicate or quarantined with the reason, after the commit
    GET  /records                    records in chain order, paged (?after=SEQ&enterprise=&record=&limit=)
    GET  /enterprises/{code}         registration, open orders, lists, latest class, recent findings
    GET  /decisions/{id}/explain     why a decision (or finding) was made, or a data gap (a replay of the kept events)
    GET  /report                     the programme report of the store, as HTML, live
    GET  /health                     clock, counts, store (as of the last commit)
    GET  /openapi.json               this API, OpenAPI 3.1 (request and record schemas from schemas/)

Errors are JSON `{"error": "..."}`: 400 a body that is not JSON (or a bad query), 401 a POST
without the token (when one is set), 404 not found, 413 a body above the size bound, 415 a
content type the binding does not know, 503 busy or stopping (retry).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from engine.audit import NotFound
from engine.audit import explain as explain_record
from engine.output import unchained
from engine.pipeline import Engine
from engine.report import from_records, render_html, rule_infos
from engine.report.fonts import FontMissing
from engine.serve.auth import authorised
from engine.serve.binding import BodyError, lines_from_http
from engine.serve.service import Busy, Service, Stopped
from engine.version import __version__
from engine.validate import load_core_schema

RECORD_KINDS = ("finding", "decision", "quarantine")
MAX_LIMIT = 1000
RECENT_FINDINGS = 20


def _json(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


def _integer(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name}: expected an integer {bound}, got {raw!r}")
    return int(raw)


def enterprise_state(engine: Engine, code: str) -> dict[str, Any]:
    """What the engine holds of one enterprise: registration, open orders, closure."""
    registration = engine.registry.get(code)
    return {
        "registration": dict(registration) if registration is not None else None,
        "closed_by_law": engine.decisions.is_closed(code),
        "open_orders": [{"id": d.id, "rule": d.rule, "list": d.list, "time": d.time, "deadline": d.deadline}
                        for d in engine.decisions.orders_of(code)],
    }


def create_app(service: Service, *, token: str | None = None, max_body: int = 16 * 1024 * 1024) -> Starlette:
    """The ASGI app over a started `Service`. `token`: POST needs `Authorization: Bearer TOKEN`.
    `max_body`: the largest request body accepted (bytes; 413 above)."""

    async def post_events(request: Request) -> Response:
        """Events in: the CloudEvents HTTP binding, structured, batched or binary mode.
        ---
        summary: Submit events
        description: >
          Structured (application/cloudevents+json, one event), batched
          (application/cloudevents-batch+json, a JSON array) or binary mode (ce-* headers,
          the body is `data`); plain application/json takes an object or an array. The answer
          comes once the events and their records are committed to the store, and lists each
          event in the order sent. Quarantined events carry the reason (field path and what is wrong).
        requestBody:
          required: true
          content:
            application/cloudevents+json:
              schema: {$ref: "#/components/schemas/Event"}
            application/cloudevents-batch+json:
              schema: {type: array, items: {$ref: "#/components/schemas/Event"}}
            application/json:
              schema: {$ref: "#/components/schemas/EventData"}
        responses:
          "200":
            description: Every event's outcome, committed.
            content:
              application/json:
                schema: {$ref: "#/components/schemas/Outcomes"}
          "400": {description: The body is not JSON.}
          "401": {description: A token is required (Authorization Bearer).}
          "413": {description: The body is larger than the bound.}
          "415": {description: A content type the binding does not take.}
          "503": {description: Busy or stopping; retry.}
        """
        if not authorised(token, request.headers.get("authorization")):
            return _error(401, "POST needs Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            return _error(413, f"the body has {declared} bytes; at most {max_body} are accepted")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                return _error(413, f"the body has more than {max_body} bytes")
            chunks.append(chunk)
        try:
            lines, ids = lines_from_http(request.headers, b"".join(chunks))
        except BodyError as exc:
            return _error(exc.status, str(exc))
        try:
            future = service.submit_lines(lines, ids)
        except Busy as exc:
            return _error(503, str(exc), {"Retry-After": "1"})
        except Stopped as exc:
            return _error(503, str(exc))
        try:
            receipt = await future
        except Stopped as exc:
            return _error(503, str(exc))
        return _json(receipt.answer())

    async def get_records(request: Request) -> Response:
        """Records in chain order, paged.
        ---
        summary: Records (findings, decisions, quarantine) in chain order
        parameters:
          - {name: after, in: query, schema: {type: integer, minimum: 0, default: 0}, description: Records after this seq.}
          - {name: enterprise, in: query, schema: {type: string}, description: One enterprise's records.}
          - {name: record, in: query, schema: {type: string, enum: [finding, decision, quarantine]}}
          - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
        responses:
          "200":
            description: "Up to `limit` records; `next` is the `after` of the next page (null at the end)."
            content:
              application/json:
                schema: {$ref: "#/components/schemas/RecordPage"}
          "400": {description: A bad query parameter.}
        """
        try:
            after = _integer(request, "after", 0, 0)
            limit = _integer(request, "limit", 100, 1, MAX_LIMIT)
        except ValueError as exc:
            return _error(400, str(exc))
        record = request.query_params.get("record")
        if record is not None and record not in RECORD_KINDS:
            return _error(400, f"record: expected one of {', '.join(RECORD_KINDS)}, got {record!r}")
        enterprise = request.query_params.get("enterprise")

        def read() -> list[tuple[int, bytes]]:
            with service.reader() as store:
                return store.page(after=after, limit=limit + 1, enterprise=enterprise, record=record)

        rows = await run_in_threadpool(read)
        more = len(rows) > limit
        rows = rows[:limit]
        body = b",".join(b'{"seq":%d,"record":%s}' % (seq, line) for seq, line in rows)
        following = rows[-1][0] if rows and more else None
        return Response(b'{"records":[' + body + b'],"next":' + orjson.dumps(following) + b"}",
                        media_type="application/json")

    async def get_enterprise(request: Request) -> Response:
        """One enterprise's state.
        ---
        summary: An enterprise's registration, open orders, lists, latest class and recent findings
        parameters:
          - {name: code, in: path, required: true, schema: {type: string}, description: Unified social credit code.}
        responses:
          "200":
            description: The enterprise as the engine and the store know it.
            content:
              application/json:
                schema: {$ref: "#/components/schemas/Enterprise"}
          "404": {description: No registration and no record of this enterprise.}
        """
        code = request.path_params["code"]
        try:
            state = service.view(lambda engine: enterprise_state(engine, code))
        except Stopped as exc:
            return _error(503, str(exc))

        def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            with service.reader() as store:
                decisions = list(store.query(enterprise=code, record="decision"))
                findings = deque(store.query(enterprise=code, record="finding"), maxlen=RECENT_FINDINGS)
            return decisions, list(findings)

        decisions, findings = await run_in_threadpool(read)
        if state["registration"] is None and not decisions and not findings:
            return _error(404, f"no enterprise {code!r}: no registration and no record")
        lists: dict[str, list[dict[str, Any]]] = {}
        latest_class = None
        for decision in decisions:
            if decision.get("list"):
                lists.setdefault(decision["list"], []).append(
                    {k: decision.get(k) for k in ("id", "action", "time", "deadline", "supersedes")})
            evaluation = decision.get("evaluation")
            if evaluation is not None:
                latest_class = {"year": evaluation.get("year"), "class": evaluation.get("class"),
                                "score": evaluation.get("score"), "rank": evaluation.get("rank"), "decision": decision["id"]}
        return _json({"enterprise": code, **state, "lists": lists, "latest_class": latest_class,
                      "recent_findings": [unchained(f) for f in reversed(findings)]})

    async def get_explain(request: Request) -> Response:
        """Why a decision (or a finding) was made, or why a data gap could not be judged.
        ---
        summary: Explain a decision, finding or data gap
        description: >
          Replays the events the service kept, with its configuration, and explains the record:
          the rule and version, the condition and the values that satisfied it, corrections,
          evidence events and findings, the basis, an amount's computation; for a data gap, the
          reason, the inputs the event lacked and what the engine needs to judge it; `logged`
          compares the stored record with the replay.
          Costs a replay of the kept events.
        parameters:
          - {name: id, in: path, required: true, schema: {type: string}}
        responses:
          "200": {description: The explanation., content: {application/json: {schema: {type: object}}}}
          "404": {description: No record with this id in the store.}
        """
        record_id = request.path_params["id"]

        def work() -> dict[str, Any] | None:
            with service.reader() as store:
                logged = store.find(record_id)
                if logged is None or logged.get("record") not in ("finding", "decision", "data_gap"):
                    return None
                report = explain_record(service.make_engine(), lambda: store.inputs(), record_id)
            mine = report["replayed"]
            fields = [k for k in {**unchained(logged), **mine} if unchained(logged).get(k) != mine.get(k)]
            report["logged"] = {"found": True, "matches": not fields, "fields": fields, "hash": logged.get("hash")}
            return report

        try:
            report = await run_in_threadpool(work)
        except NotFound as exc:
            return _error(404, str(exc))
        if report is None:
            return _error(404, f"no finding, decision or data gap {record_id!r} in the store")
        return _json(report)

    rules: dict[str, Any] = {}

    async def get_report(request: Request) -> Response:
        """The programme report, live.
        ---
        summary: The HTML report of the store (engine/report/), as it stands
        parameters:
          - {name: lang, in: query, schema: {type: string, enum: [en, zh], default: en}}
        responses:
          "200": {description: One self-contained HTML page., content: {text/html: {schema: {type: string}}}}
          "400": {description: An unknown language.}
          "503": {description: "zh: no CJK font on the server (the message says how to install one)."}
        """
        lang = request.query_params.get("lang", "en")
        if lang not in ("en", "zh"):
            return _error(400, f"lang: expected en or zh, got {lang!r}")
        try:
            if not rules:
                rules.update(service.view(lambda engine: rule_infos(engine)[0]))
            registry, targets, ruleset = service.view(lambda engine: (dict(engine.registry), engine.targets(), engine.ruleset))
        except Stopped as exc:
            return _error(503, str(exc))

        def work() -> str:
            with service.reader() as store:
                records = list(store.query())
            return render_html(from_records(records, registry, ruleset=ruleset, targets=targets, rules=rules), lang)

        try:
            return HTMLResponse(await run_in_threadpool(work))
        except FontMissing as exc:
            return _error(503, str(exc))

    async def get_health(request: Request) -> Response:
        """Is it up, and where is it.
        ---
        summary: Health, event-time clock, counts, store
        responses:
          "200":
            description: "`state` running; counts and store as of the last commit."
            content:
              application/json:
                schema: {$ref: "#/components/schemas/Health"}
          "503": {description: The service is stopping or has failed.}
        """
        status = service.status()
        return _json(status, 200 if status["state"] == "running" else 503)

    routes = [
        Route("/events", post_events, methods=["POST"]),
        Route("/records", get_records, methods=["GET"]),
        Route("/enterprises/{code}", get_enterprise, methods=["GET"]),
        Route("/decisions/{id}/explain", get_explain, methods=["GET"]),
        Route("/report", get_report, methods=["GET"]),
        Route("/health", get_health, methods=["GET"]),
    ]
    generator = SchemaGenerator({"openapi": "3.1.0",
                                 "info": {"title": "rectify serve", "version": __version__,
                                          "description": "Live compliance decisions: events in, findings and decisions out."},
                                 "components": {"schemas": _components()}})

    async def get_openapi(request: Request) -> Response:
        return _json(generator.get_schema(routes=app.routes))

    routes.append(Route("/openapi.json", get_openapi, methods=["GET"], include_in_schema=False))
    app = Starlette(routes=routes)
    return app


def _components() -> dict[str, Any]:
    """The OpenAPI component schemas: the event and record schemas from schemas/ (JSON Schema
    2020-12, which OpenAPI 3.1 takes as it is), and the API's own answers."""
    record = {"type": "object", "description": "A record as stored: finding, decision or quarantine, with prev and hash."}
    parts: dict[str, Any] = {
        "Event": _schema("envelope.schema.json"),
        "Finding": _schema("finding.schema.json"),
        "Decision": _schema("decision.schema.json"),
        "Quarantine": _schema("quarantine.schema.json"),
        "EventData": {"oneOf": [{"$ref": "#/components/schemas/Event"},
                                {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}]},
        "Outcome": {"type": "object", "required": ["seq", "id", "status"], "properties": {
            "seq": {"type": "integer", "description": "Arrival number: the line number of its quarantine record and in "
                                                      "`rectify replay --verify STORE`."},
            "id": {"type": ["string", "null"]},
            "status": {"enum": ["accepted", "duplicate", "quarantined"]},
            "reason": {"type": "string", "description": "Why it was quarantined: the field path and what is wrong."}}},
        "Outcomes": {"type": "object", "required": ["accepted", "duplicate", "quarantined", "events", "records"],
                     "properties": {
            "accepted": {"type": "integer"}, "duplicate": {"type": "integer"}, "quarantined": {"type": "integer"},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Outcome"}},
            "records": {"type": "array", "description": "The findings and decisions these events gave, in chain order "
                                                        "(seq: GET /records?after=seq-1).",
                        "items": {"type": "object", "properties": {
                            "seq": {"type": "integer"}, "record": {"enum": ["finding", "decision"]},
                            "id": {"type": "string"}}}}}},
        "RecordPage": {"type": "object", "required": ["records", "next"], "properties": {
            "records": {"type": "array", "items": {"type": "object", "properties": {
                "seq": {"type": "integer"},
                "record": {"oneOf": [{"$ref": "#/components/schemas/Finding"}, {"$ref": "#/components/schemas/Decision"},
                                     {"$ref": "#/components/schemas/Quarantine"}, record]}}}},
            "next": {"type": ["integer", "null"]}}},
        "Enterprise": {"type": "object", "properties": {
            "enterprise": {"type": "string"}, "registration": {"type": ["object", "null"]},
            "closed_by_law": {"type": "boolean"},
            "open_orders": {"type": "array", "items": {"type": "object"}},
            "lists": {"type": "object", "additionalProperties": {"type": "array"}},
            "latest_class": {"type": ["object", "null"]},
            "recent_findings": {"type": "array", "items": {"$ref": "#/components/schemas/Finding"}}}},
        "Health": {"type": "object", "properties": {
            "state": {"enum": ["running", "stopping", "failed"]}, "clock": {"type": ["string", "null"]},
            "counts": {"type": "object"}, "store": {"type": "object"}, "ruleset": {"type": "string"},
            "pending_events": {"type": "integer"}}},
    }
    return parts


def _schema(name: str) -> dict[str, Any]:
    schema = load_core_schema(name)
    schema.pop("$schema", None)
    return schema
