"""The HTTP API's OpenAPI document, served at ``/openapi.json``.

Written by hand from docs/protocol.md's HTTP section (four routes do not need a generator);
tests/security/test_openapi.py runs schemathesis against a real gateway with it, so a
response the document does not describe fails there.
"""

from __future__ import annotations

from typing import Any

from realtime import __version__
from realtime.history.idempotency import MAX_KEY_LENGTH
from realtime.wire.messages import MAX_CHANNEL_LENGTH, MAX_SINCE


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "realtime-mq HTTP API", "version": __version__},
    "paths": {
        "/api/event": {
            "post": {
                "summary": "Publish a broadcast to every subscriber of a channel",
                "security": [{"bearer": []}, {"apiKey": []}, {}],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "description": "a retry with the same key and body within"
                        " IDEMPOTENCY_WINDOW_SECONDS is published once and gets the first answer",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_KEY_LENGTH,
                            "pattern": "^[!-~]+$",
                        },
                    }
                ],
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
                    "409": _error("a request with this Idempotency-Key is still running"),
                    "415": _error("the content type is not application/json"),
                    "422": _error("this Idempotency-Key was sent with another body"),
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
