"""The HTTP API's OpenAPI document, served at ``/openapi.json``.

Written by hand from docs/protocol.md's HTTP section (three routes do not need a generator);
tests/security/test_openapi.py runs schemathesis against a real gateway with it, so a
response the document does not describe fails there.
"""

from __future__ import annotations

from typing import Any

from realtime import __version__
from realtime.wire.messages import MAX_CHANNEL_LENGTH


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
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
        },
    },
}
