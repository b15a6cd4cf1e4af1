"""The client's errors, under one root so an application can catch them all."""

from __future__ import annotations


class ClientError(Exception):
    """Root of every error :mod:`realtime.client` raises on purpose."""


class GatewayError(ClientError):
    """An ``error`` frame from the gateway: ``code`` is one of docs/protocol.md's error codes
    (``forbidden``, ``invalid_message``, ``token_expired``, ...), ``channel`` the channel it
    names, if any. Raised by the call it answers, or handed to ``on_error`` when it answers
    none (``broadcasts_lost``, ``unsubscribed``, a presence resync refused)."""

    def __init__(self, code: str, message: str, channel: str | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.channel = channel


class ConnectError(ClientError):
    """The gateway refused the WebSocket upgrade: ``status`` is the HTTP status (401 a bad
    token, 403 an origin, 429 too many connections of this user, 503 a full instance) and
    ``error`` the JSON body's ``error``."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"upgrade refused with {status}: {error}" if error else str(status))
        self.status = status
        self.error = error


class ConnectionLost(ClientError):
    """The connection closed before a request was answered. The request may or may not have
    been acted on: a broadcast is not sent again (that could publish it twice)."""


class ClientClosed(ClientError):
    """The client was closed (by :meth:`Client.close`, or for good after a refused
    reconnect); nothing more can be sent."""


class SubscriptionOverflow(ClientError):
    """A subscription's queue was full (the application did not iterate it fast enough):
    messages were dropped, ``dropped`` counts them so far. Handed to ``on_error``."""

    def __init__(self, channel: str, dropped: int) -> None:
        super().__init__(f"{channel}: {dropped} messages dropped, the queue is full")
        self.channel = channel
        self.dropped = dropped


class PublishError(ClientError):
    """``POST /api/event`` (or ``GET /api/history``) answered other than 200: ``status``,
    the JSON ``error``, and ``body``, the answer's text as it came."""

    def __init__(self, status: int, error: str, body: str) -> None:
        super().__init__(f"{status}: {error}")
        self.status = status
        self.error = error
        self.body = body
