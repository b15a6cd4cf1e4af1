"""``realtime.client``: an asyncio client for realtime-mq gateways.

:class:`Client` speaks WebSocket (subscribe, broadcast, presence, reconnect with recovery);
:class:`Publisher` speaks the HTTP API with an API key. Guide: docs/clients.md#python.

>>> from realtime.client import Client, Broadcast
>>> async def main() -> None:
...     async with Client("http://127.0.0.1:8080", user_id="alice") as client:
...         room = await client.subscribe("room1", listen=("broadcast",))
...         await room.publish("chat", {"text": "hi"})
...         async for message in room:
...             if isinstance(message, Broadcast):
...                 print(message.event, message.payload)
...                 break
"""

from __future__ import annotations

from realtime.client.backoff import Backoff
from realtime.client.client import Client, ConnectionState, TokenProvider, ws_url
from realtime.client.errors import (
    ClientClosed,
    ClientError,
    ConnectError,
    ConnectionLost,
    GatewayError,
    PublishError,
    SubscriptionOverflow,
)
from realtime.client.messages import (
    Ack,
    Broadcast,
    HistoryPage,
    Member,
    Message,
    Position,
    PresenceEvent,
    PresenceJoin,
    PresenceLeave,
    PresenceSync,
    PresenceUpdate,
    Publication,
    Published,
    Subscribed,
)
from realtime.client.publisher import Publisher
from realtime.client.subscription import Subscription

__all__ = [
    "Ack",
    "Backoff",
    "Broadcast",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectError",
    "ConnectionLost",
    "ConnectionState",
    "GatewayError",
    "HistoryPage",
    "Member",
    "Message",
    "Position",
    "PresenceEvent",
    "PresenceJoin",
    "PresenceLeave",
    "PresenceSync",
    "PresenceUpdate",
    "Publication",
    "PublishError",
    "Published",
    "Publisher",
    "Subscribed",
    "Subscription",
    "SubscriptionOverflow",
    "TokenProvider",
    "ws_url",
]
