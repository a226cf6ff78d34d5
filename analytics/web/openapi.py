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


def document() -> dict:
    """The merged OpenAPI document of the current app."""
    paths = dict(CORE_PATHS)
    for extra in current_app.extensions.get("manyi_openapi", []):
        paths.update(extra)
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
            "responses": {
                "Unauthorized": {"description": "no session and no valid token"},
                "Forbidden": {"description": "the role or county scope does not allow this"},
            },
        },
        "paths": dict(sorted(paths.items())),
    }


@bp.route("/api/v1/openapi.json")
def openapi_json():
    """The OpenAPI 3 document (public: it describes the API, it holds no data)."""
    return jsonify(document())
