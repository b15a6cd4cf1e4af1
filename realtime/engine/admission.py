"""What is checked before the node acts on a client message: may the connection do it, and
does what it sends fit."""

from __future__ import annotations

from realtime.auth.grants import Action, Grants
from realtime.engine.hub import Peer
from realtime.engine.permissions import Permissions
from realtime.errors import FrameError
from realtime.wire.messages import (
    RESERVED_MESSAGE,
    RESERVED_PREFIX,
    AnyClientMessage,
    Broadcast,
    HistoryRequest,
    Meta,
    PresenceJoin,
    PresenceUpdate,
    Subscribe,
    encode,
)


class Admission:
    """The permission and size checks a client's action passes first; each raises the
    :class:`FrameError` the client sees."""

    def __init__(
        self, permissions: Permissions, max_message_bytes: int, max_meta_bytes: int
    ) -> None:
        self.permissions = permissions
        self._max_message = max_message_bytes
        self._max_meta = max_meta_bytes

    async def permit(self, peer: Peer, grants: Grants | None, message: AnyClientMessage) -> None:
        """Refuse an action the connection's token, the hook or the policy does not allow,
        and any on the gateway's reserved channels (its liveness probes travel there)."""
        channel = getattr(message, "channel", None)
        if channel is not None and channel.startswith(RESERVED_PREFIX):
            raise FrameError("invalid_message", RESERVED_MESSAGE, channel)
        if not self.permissions.enforcing:
            return
        action: Action
        match message:
            case Broadcast():
                action = "publish"
            case Subscribe() | HistoryRequest():
                # Reading a channel's past is seeing what a subscriber sees.
                action = "subscribe"
            case PresenceJoin() | PresenceUpdate():
                action = "presence"
            case _:  # leaving and unsubscribing are always allowed
                return
        await self.permissions.check(action, message.channel, peer.user_id, grants)

    def sized(self, data: bytes, channel: str) -> bytes:
        """``data``, a bus message, unless it is more than brokers promise to carry."""
        # The edges cap bodies and frames below the limit; only a very long user id could still
        # push the envelope over, and no broker is ever handed more than it was promised.
        if len(data) > self._max_message:
            raise FrameError(
                "message_too_large",
                f"the message is {len(data)} bytes on the bus, more than the {self._max_message}"
                " a broker carries (BROADCAST_MAX_MESSAGE_BYTES)",
                channel,
            )
        return data

    def meta(self, peer: Peer, channel: str, meta: Meta) -> None:
        """Refuse presence meta that names another user or is larger than allowed."""
        claimed = meta.get("user_id")
        if claimed is not None and str(claimed) != peer.user_id:
            # Meta is shown to every member: it must not name someone else as its author.
            raise FrameError(
                "forbidden", "presence meta user_id must be your own user id or absent", channel
            )
        size = len(encode(meta))
        if size > self._max_meta:
            raise FrameError(
                "meta_too_large",
                f"presence meta is {size} bytes, more than the {self._max_meta} allowed",
                channel,
            )
