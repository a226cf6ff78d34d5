"""The OpenAPI 3 document of the JSON API, merged from every blueprint's OPENAPI_PATHS."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from manyi import __version__

bp = Blueprint("openapi", __name__)


def _get(summary: str, params: list | None = None, schema: dict | None = None, roles: str = "all roles") -> dict:
    return {"get": {
        "summary": summary,
        "description": f"Allowed for: {roles}. County users see only their own county.",
        "parameters": params or [],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": schema or {"type": "object"}}}},
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "403": {"$ref": "#/components/responses/Forbidden"},
        },
    }}


def _q(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


FEED_ITEM = {"type": "object", "properties": {
    "cursor": {"type": "string"}, "device": {"type": "string"}, "seq": {"type": "integer"},
    "rating": {"type": "string", "enum": ["satisfied", "basic", "unsatisfied"]}, "rating_label": {"type": "string"},
    "time": {"type": "string", "format": "date-time"}, "received_at": {"type": "string", "format": "date-time"},
    "county_code": {"type": "string", "nullable": True}, "county_name": {"type": "string", "nullable": True},
    "hall_name": {"type": "string", "nullable": True}, "window_name": {"type": "string", "nullable": True},
    "flags": {"type": "array", "items": {"type": "string"}}}}

CORE_PATHS = {
    "/api/v1/map": _get(
        "County and hall satisfaction for a period, with a ready-to-draw plotly figure",
        [_q("period", "today | week | quarter (China time)", {"type": "string", "enum": ["today", "week", "quarter"]}),
         _q("figure", "0 to leave out the plotly figure")],
        {"type": "object", "properties": {
            "period": {"type": "string"}, "start": {"type": "string"}, "end": {"type": "string"},
            "counties": {"type": "array", "items": {"type": "object", "properties": {
                "code": {"type": "string"}, "name": {"type": "string"}, "n": {"type": "integer"},
                "satisfied": {"type": "integer"}, "basic": {"type": "integer"}, "unsatisfied": {"type": "integer"},
                "score": {"type": "number", "nullable": True}, "rate": {"type": "number", "nullable": True}}}},
            "halls": {"type": "array", "items": {"type": "object"}},
            "figure": {"type": "object", "description": "plotly figure (data, layout)"}}}),
    "/api/v1/feed": _get(
        "Recent votes, oldest first; pass the returned cursor as `after` to get only newer ones",
        [_q("after", "cursor of the last vote already seen"), _q("limit", "1..500, default 50", {"type": "integer"})],
        {"type": "object", "properties": {"items": {"type": "array", "items": FEED_ITEM}, "cursor": {"type": "string"}}}),
    "/api/v1/stream": {"get": {
        "summary": "Server-Sent Events: a `vote` event (JSON like a feed item, id = cursor) for every new vote",
        "description": "Resumes after `Last-Event-ID` (or `after`); ends after a few minutes, clients reconnect.",
        "parameters": [_q("after", "cursor to resume after")],
        "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      "401": {"$ref": "#/components/responses/Unauthorized"}}}},
    "/api/v1/terminals": _get(
        "Terminal health: online, silent, last vote, seq gaps, outbox, clock, firmware, suspicious patterns",
        [_q("county", "only this county code (403 if not visible)")]),
    "/api/v1/me": _get("The authenticated user, role and visible counties"),
    "/api/v1/audit": _get("The newest audit log entries",
                          [_q("limit", "max entries", {"type": "integer"}), _q("action", "action prefix"),
                           _q("user", "user name")], roles="admin"),
}


def _obj(required: dict, **extra) -> dict:
    """An object schema whose listed properties are all present in every answer."""
    return {"type": "object", "required": sorted(required), "properties": required, **extra}


_S, _I, _N, _B = {"type": "string"}, {"type": "integer"}, {"type": "number", "nullable": True}, {"type": "boolean"}
_LIST = {"type": "array", "items": {"type": "object"}}
_TOTALS = _obj({"n": _I, "satisfied": _I, "basic": _I, "unsatisfied": _I, "rate": _N})
# The 200 answer of each route whose blueprint describes it in words only; tests/test_web_core.py
# checks every documented GET answer against these.
RESPONSE_SCHEMAS = {
    ("/api/v1/cases", "get"): _obj({"cases": _LIST, "count": _I}),
    ("/api/v1/cases/{case_id}", "get"): {"type": "object", "description": "one case with its votes and notes"},
    ("/api/v1/cases/{case_id}/{action}", "post"): {"type": "object", "description": "the updated case"},
    ("/api/v1/appeals", "get"): _obj({"appeals": _LIST, "count": _I}),
    ("/api/v1/appeals", "post"): {"type": "object", "description": "the new appeal with its votes"},
    ("/api/v1/appeals/{appeal_id}", "get"): {"type": "object", "description": "one appeal with its votes"},
    ("/api/v1/appeals/{appeal_id}/{action}", "post"): {"type": "object", "description": "the updated appeal"},
    ("/api/v1/drill", "get"): _obj({
        "level": _S, "level_label": _S, "code": _S, "name": _S, "county_code": {"type": "string", "nullable": True},
        "start": _S, "end": _S, "totals": _TOTALS, "breadcrumbs": _LIST, "child_level": {"type": "string",
        "nullable": True}, "children": _LIST, "daily": _LIST, "heat": _LIST, "peers": _LIST, "staff": _LIST}),
}
RESPONSE_SCHEMAS[("/api/v1/drill/{level}/{code}", "get")] = RESPONSE_SCHEMAS[("/api/v1/drill", "get")]
RESPONSE_SCHEMAS |= {
    ("/api/v1/imports", "get"): _obj({"imports": _LIST}),
    ("/api/v1/imports/{kind}", "post"): _obj({"kind": _S, "filename": _S, "quarter": _S, "rows_read": _I,
                                              "imported": _I, "rejected": _LIST, "warnings": _LIST, "aborted": _B,
                                              "rejected_by_reason": {"type": "object"}}),
    ("/api/v1/rankings", "get"): _obj({"quarter": _S, "level": _S, "result_id": {"type": "integer", "nullable": True},
                                       "computed_at": _S, "notes": {"type": "array", "items": _S}, "rows": _LIST}),
    ("/api/v1/alerts", "get"): _obj({"alerts": _LIST, "last_id": _I}),
    ("/api/v1/alerts/{alert_id}/ack", "post"): {"type": "object", "description": "the acknowledged alert"},
    ("/api/v1/alert-rules", "get"): _obj({"rules": _LIST}),
    ("/api/v1/terminals", "get"): _obj({"generated_at": _S, "summary": {"type": "object"}, "terminals": _LIST,
                                        "params": {"type": "object"}}),
    ("/api/v1/me", "get"): _obj({"username": _S, "role": _S, "county_code": {"type": "string", "nullable": True},
                                 "visible_counties": {"type": "array", "nullable": True, "items": _S}}),
    ("/api/v1/audit", "get"): _obj({"entries": _LIST}),
    ("/api/v1/indicators", "get"): _obj({"month": _S, "level": _S, "labels": {"type": "object"}, "rows": _LIST}),
    ("/api/v1/upward", "get"): _obj({"format": _S, "version": _I, "period": _S, "period_start": _S, "period_end": _S,
                                     "level_mapping": _S, "mapping": {"type": "object"}, "provisional": _B,
                                     "channels": {"type": "object"}, "rows": _LIST}),
}
ERROR = _obj({"error": _S, "message": _S})
# Every operation can answer these (login, role and county scope, parameters, rate limit).
COMMON_RESPONSES = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
                    "429": "TooManyRequests"}


def _complete(path: str, method: str, operation: dict) -> dict:
    """``operation`` with a JSON schema for its 200 answer and the common error answers."""
    operation = dict(operation)
    responses = dict(operation.get("responses", {}))
    ok = dict(responses.get("200", {"description": "OK"}))
    schema = RESPONSE_SCHEMAS.get((path, method))
    if "content" not in ok and schema is not None:
        ok["content"] = {"application/json": {"schema": schema}}
    responses["200"] = ok
    for code, name in COMMON_RESPONSES.items():
        if code in responses and "$ref" not in responses[code]:
            responses[code] = {**responses[code], "content": {"application/json": {"schema": ERROR}}}
        responses.setdefault(code, {"$ref": f"#/components/responses/{name}"})
    operation["responses"] = responses
    return operation


def document() -> dict:
    """The merged OpenAPI document of the current app."""
    merged = dict(CORE_PATHS)
    for extra in current_app.extensions.get("manyi_openapi", []):
        merged.update(extra)
    paths = {path: {method: _complete(path, method, operation) for method, operation in item.items()}
             for path, item in merged.items()}
    return {
        "openapi": "3.0.3",
        "info": {"title": "manyi control center API", "version": __version__,
                 "description": "JSON API of the 满意 control center. Authenticate with `Authorization: Bearer <token>` "
                                "(`manyi token add USER`); tokens carry their user's role and county scope."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "API token from `manyi token add`"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": current_app.config["SESSION_COOKIE_NAME"]},
            },
            "schemas": {"Error": ERROR},
            "responses": {
                name: {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                for name, text in (
                    ("BadRequest", "a parameter is invalid (or, for a session, the CSRF token is missing)"),
                    ("Unauthorized", "no session and no valid token"),
                    ("Forbidden", "the role or county scope does not allow this"),
                    ("NotFound", "no such unit, case, alert or result"),
                    ("TooManyRequests", "more than 20 requests a second, or 4 live streams, for this account or "
                                        "token; see Retry-After"))
            },
        },
        "paths": dict(sorted(paths.items())),
    }


@bp.route("/api/v1/openapi.json")
def openapi_json():
    """The OpenAPI 3 document (public: it describes the API, it holds no data)."""
    return jsonify(document())
