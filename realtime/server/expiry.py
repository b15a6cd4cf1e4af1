"""A connection's token lifetime: ``token_expired`` when it runs out, a close after the grace
period, and ``refresh`` frames that extend it.

Close code 4001 (``token expired``) is documented in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from realtime.auth.tokens import Authenticator
from realtime.engine.node import Node
from realtime.errors import AuthError, FrameError
from realtime.wire.frames import Outgoing
from realtime.wire.messages import error_frame

CLOSE_TOKEN_EXPIRED = 4001


class Closable(Protocol):
    user_id: str

    def send(self, frame: Outgoing) -> None: ...

    def close(self, code: int, reason: str) -> None:
        """Send a close frame and end the connection's loops."""


class Lease:
    """One timer per connection whose token has ``exp``; none otherwise."""

    __slots__ = ("_auth", "_grace", "_node", "_peer", "_timer", "expired")

    def __init__(self, peer: Closable, auth: Authenticator, node: Node, grace: float) -> None:
        self._peer = peer
        self._auth = auth
        self._node = node
        self._grace = grace
        self._timer: asyncio.TimerHandle | None = None
        self.expired = False

    def start(self, expires: float | None) -> None:
        self.cancel()
        self.expired = False
        if expires is not None:
            delay = max(0.0, expires - time.time())
            self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._peer.send(
            error_frame(
                "token_expired",
                f"your token expired: send a refresh frame within {self._grace:g} s or the "
                f"connection closes with {CLOSE_TOKEN_EXPIRED}",
            )
        )
        self._timer = asyncio.get_running_loop().call_later(self._grace, self._close)

    def _close(self) -> None:
        self._timer = None
        self._peer.close(CLOSE_TOKEN_EXPIRED, "token expired")

    async def refresh(self, token: str) -> None:
        """Take a fresh token for the same user, or raise ``FrameError("invalid_token")``
        leaving the connection's lease as it was."""
        try:
            identity = await self._auth.verify(token)
        except AuthError as exc:
            raise FrameError("invalid_token", str(exc)) from None
        if identity.user_id != self._peer.user_id:
            raise FrameError("invalid_token", "the token is for another user")
        self._node.regrant(self._peer, identity.grants)
        self.start(identity.expires)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
