"""The HTTP API's OpenAPI document, served at ``/openapi.json``.

Written by hand from docs/protocol.md's HTTP section (a dozen routes do not need a generator);
tests/security/test_openapi.py runs schemathesis against a real gateway with it, so a
response the document does not describe fails there.
"""

from __future__ import annotations

from typing import Any

from realtime import __version__
from realtime.server.history_api import MAX_SINCE
from realtime.server.server_api import MAX_BATCH, MAX_PAGE
from realtime.wire.messages import MAX_CHANNEL_LENGTH


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_SERVER_API_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
_CHANNEL_PARAM = {
    "name": "channel",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_CHANNEL_LENGTH},
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_REFUSALS = {
    "401": _error("the request has no valid API key"),
    "403": _error("API_KEYS is not set (the server API is off), or the key may not do this"),
}
_CLUSTER_ACTION = _json(
    "done on every instance that answered",
    {
        "type": "object",
        "required": ["status", "connections", "instances", "complete"],
        "properties": {
            "status": {"type": "string", "enum": ["ok"]},
            "connections": {"type": "integer", "minimum": 0},
            "instances": {"type": "integer", "minimum": 0},
            "complete": {"type": "boolean"},
        },
    },
)
_USER = {"type": "string", "minLength": 1, "maxLength": 256}
_CHANNEL = {"type": "string", "minLength": 1, "maxLength": MAX_CHANNEL_LENGTH}
_MEMBER = {
    "type": "object",
    "required": ["user_id", "meta", "updated_at"],
    "properties": {
        "user_id": {"type": "string"},
        "meta": {"type": "object"},
        "updated_at": {"type": "integer"},
    },
}

SERVER_API_PATHS: dict[str, Any] = {
    "/api/channels": {
        "get": {
            "summary": "Active channels across the cluster with their subscriber counts",
            "security": _SERVER_API_SECURITY,
            "parameters": [
                {
                    "name": "pattern",
                    "in": "query",
                    "description": "only names matching this (* matches any characters)",
                    "schema": {"type": "string", "maxLength": MAX_CHANNEL_LENGTH},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "description": "the previous page's next: names after it",
                    "schema": {"type": "string", "maxLength": MAX_CHANNEL_LENGTH},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                },
            ],
            "responses": {
                "200": _json(
                    "a page, sorted by name",
                    {
                        "type": "object",
                        "required": ["channels", "next", "instances", "complete"],
                        "properties": {
                            "channels": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["channel", "subscribers"],
                                    "properties": {
                                        "channel": {"type": "string"},
                                        "subscribers": {"type": "integer", "minimum": 0},
                                    },
                                },
                            },
                            "next": {"type": "string", "nullable": True},
                            "instances": {"type": "integer", "minimum": 0},
                            "complete": {"type": "boolean"},
                        },
                    },
                ),
                "400": _error("pattern, cursor or limit out of range"),
                **_REFUSALS,
                "503": _error("the message queue did not take the request"),
            },
        }
    },
    "/api/presence": {
        "get": {
            "summary": "The members of a channel's presence",
            "security": _SERVER_API_SECURITY,
            "parameters": [_CHANNEL_PARAM],
            "responses": {
                "200": _json(
                    "the members",
                    {
                        "type": "object",
                        "required": ["channel", "version", "epoch", "members"],
                        "properties": {
                            "channel": {"type": "string"},
                            "version": {"type": "integer"},
                            "epoch": {"type": "string"},
                            "members": {"type": "array", "items": _MEMBER},
                        },
                    },
                ),
                "400": _error("channel missing, too long or reserved"),
                **_REFUSALS,
                "503": _error("the presence store is unavailable"),
            },
        }
    },
    "/api/presence/stats": {
        "get": {
            "summary": "How many users are present in a channel",
            "security": _SERVER_API_SECURITY,
            "parameters": [_CHANNEL_PARAM],
            "responses": {
                "200": _json(
                    "the counts",
                    {
                        "type": "object",
                        "required": ["channel", "users", "version"],
                        "properties": {
                            "channel": {"type": "string"},
                            "users": {"type": "integer", "minimum": 0},
                            "version": {"type": "integer"},
                        },
                    },
                ),
                "400": _error("channel missing, too long or reserved"),
                **_REFUSALS,
                "503": _error("the presence store is unavailable"),
            },
        }
    },
    "/api/disconnect": {
        "post": {
            "summary": "Close every connection of a user, on every instance, with a code",
            "security": _SERVER_API_SECURITY,
            "requestBody": _body(
                {
                    "type": "object",
                    "required": ["user"],
                    "additionalProperties": False,
                    "properties": {
                        "user": _USER,
                        "code": {"type": "integer", "minimum": 4000, "maximum": 4999},
                        "reason": {"type": "string", "maxLength": 60},
                    },
                }
            ),
            "responses": {
                "200": _CLUSTER_ACTION,
                "400": _error("the body is not JSON or not a disconnect"),
                **_REFUSALS,
                "413": _error("the body is larger than HTTP_MAX_BODY_BYTES"),
                "415": _error("the body is not sent as application/json"),
                "503": _error("the message queue did not take the request"),
            },
        }
    },
    "/api/unsubscribe": {
        "post": {
            "summary": "Unsubscribe a user from a channel on every instance",
            "security": _SERVER_API_SECURITY,
            "requestBody": _body(
                {
                    "type": "object",
                    "required": ["user", "channel"],
                    "additionalProperties": False,
                    "properties": {"user": _USER, "channel": _CHANNEL},
                }
            ),
            "responses": {
                "200": _CLUSTER_ACTION,
                "400": _error("the body is not JSON or not an unsubscribe"),
                **_REFUSALS,
                "413": _error("the body is larger than HTTP_MAX_BODY_BYTES"),
                "415": _error("the body is not sent as application/json"),
                "503": _error("the message queue did not take the request"),
            },
        }
    },
    "/api/batch": {
        "post": {
            "summary": "Publish to several channels, in order",
            "security": _SERVER_API_SECURITY,
            "requestBody": _body(
                {
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": False,
                    "properties": {
                        "events": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                            "items": {"$ref": "#/components/schemas/Event"},
                        }
                    },
                }
            ),
            "responses": {
                "200": _json(
                    "one result per event, in order",
                    {
                        "type": "object",
                        "required": ["results"],
                        "properties": {
                            "results": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["channel", "status"],
                                    "properties": {
                                        "channel": {"type": "string"},
                                        "status": {"type": "string", "enum": ["ok", "error"]},
                                        "error": {"type": "string"},
                                        "offset": {"type": "integer", "minimum": 1},
                                        "epoch": {"type": "string"},
                                    },
                                },
                            }
                        },
                    },
                ),
                "400": _error("the body is not JSON, or an event is not valid"),
                **_REFUSALS,
                "413": _error("the body is larger than HTTP_MAX_BODY_BYTES"),
                "415": _error("the body is not sent as application/json"),
            },
        }
    },
}


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "realtime-mq HTTP API", "version": __version__},
    "paths": {
        "/api/event": {
            "post": {
                "summary": "Publish a broadcast to every subscriber of a channel",
                "security": [{"bearer": []}, {"apiKey": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Event"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "published",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["status", "message_id"],
                                    "properties": {
                                        "status": {"type": "string", "enum": ["ok"]},
                                        "message_id": {
                                            "type": "string",
                                            "pattern": "^[0-9a-f]{32}$",
                                        },
                                        # History channels only: where it was stored.
                                        "offset": {"type": "integer", "minimum": 1},
                                        "epoch": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "400": _error("the body is not JSON, not an event, or too deeply nested"),
                    "401": _error("API_KEYS is set and the request has no valid key"),
                    "403": _error("the key may not publish to this channel"),
                    "413": _error("the body is larger than the gateway accepts"),
                    "415": _error("the content type is not application/json"),
                    "503": _error("the message queue did not accept the publish"),
                },
            }
        },
        "/api/history": {
            "get": {
                "summary": "A page of a history channel's broadcasts, oldest first",
                "security": [{"bearer": []}, {"apiKey": []}, {}],
                "parameters": [
                    {
                        "name": "channel",
                        "in": "query",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_CHANNEL_LENGTH,
                        },
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "description": "the broadcasts after this offset (default 0)",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SINCE},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "at most this many (0, default, or more: HISTORY_SIZE)",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the page",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/HistoryPage"}
                            }
                        },
                    },
                    "400": _error("channel, since or limit is missing or out of range"),
                    "401": _error("API_KEYS is set and the request has no valid key"),
                    "403": _error("the key may not read this channel"),
                    "404": _error("the channel keeps no history (HISTORY_CHANNELS)"),
                    "503": _error("the history store is unavailable"),
                },
            }
        },
        **SERVER_API_PATHS,
        "/healthz": {
            "get": {
                "summary": "The process is up",
                "responses": {
                    "200": {
                        "description": "up",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["status", "connections"],
                                    "properties": {
                                        "status": {"type": "string", "enum": ["ok"]},
                                        "connections": {"type": "integer", "minimum": 0},
                                    },
                                }
                            }
                        },
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "The brokers' subscribers are connected and their liveness"
                " probes come back; the presence store answers",
                "responses": {
                    "200": {"$ref": "#/components/responses/Readiness"},
                    "503": {"$ref": "#/components/responses/Readiness"},
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        },
        "responses": {
            "Readiness": {
                "description": "each subscriber's state",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["status", "subscribers"],
                            "properties": {
                                "status": {"type": "string", "enum": ["ready", "not ready"]},
                                "subscribers": {
                                    "type": "object",
                                    "additionalProperties": {"type": "boolean"},
                                },
                                "probes": {
                                    "type": "object",
                                    "description": "per kind; empty when probes are off",
                                    "additionalProperties": {"$ref": "#/components/schemas/Check"},
                                },
                                "presence_store": {
                                    "allOf": [{"$ref": "#/components/schemas/Check"}],
                                    "properties": {"checked": {"type": "boolean"}},
                                },
                            },
                        }
                    }
                },
            }
        },
        "schemas": {
            "Event": {
                "type": "object",
                "required": ["channel"],
                "properties": {
                    "channel": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_CHANNEL_LENGTH,
                    },
                    "event": {"type": "string", "default": "message"},
                    "payload": {"description": "any JSON value, passed through untouched"},
                },
            },
            "Check": {
                "type": "object",
                "required": ["ok"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "last_ok_seconds_ago": {"type": ["number", "null"]},
                    "error": {"type": ["string", "null"]},
                },
            },
            "HistoryPage": {
                "type": "object",
                "required": ["channel", "offset", "epoch", "first", "publications", "next"],
                "properties": {
                    "channel": {"type": "string"},
                    "offset": {"type": "integer", "minimum": 0},
                    "epoch": {"type": "string"},
                    "first": {"type": "integer", "minimum": 1},
                    "publications": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["offset", "event", "payload"],
                            "properties": {
                                "offset": {"type": "integer", "minimum": 1},
                                "event": {"type": "string"},
                                "payload": {},
                                "user_id": {"type": "string"},
                                "ts": {"type": "integer"},
                            },
                        },
                    },
                    "next": {"type": "integer", "nullable": True},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
        },
    },
}
