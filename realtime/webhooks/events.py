"""What a webhook carries and how it is signed.

A POST's body is ``{"time_ms": ..., "events": [...]}``; its headers ``X-Realtime-Timestamp``
(Unix seconds) and ``X-Realtime-Signature`` (``v1=`` and the hex HMAC-SHA256, keyed with
``WEBHOOK_SECRET``, of ``"<timestamp>." + body``), as Stripe signs: the timestamp inside the
signature lets a receiver refuse a replayed request.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import msgspec

TIMESTAMP_HEADER = "X-Realtime-Timestamp"
SIGNATURE_HEADER = "X-Realtime-Signature"


class WebhookEvent(msgspec.Struct, omit_defaults=True):
    """One cluster event. ``id`` is unique per event (the stream entry's id on Redis): a
    receiver that got a batch twice (an instance died after the POST, before it noted the
    delivery) drops what it has seen."""

    name: str
    channel: str
    time_ms: int
    id: str = ""
    user_id: str | None = None


class Batch(msgspec.Struct):
    time_ms: int
    events: list[WebhookEvent]


# How a store hands an event to the embedded deliverer (it must not block).
HookSink = Callable[[WebhookEvent], None]

_encoder = msgspec.json.Encoder()


def body(events: list[WebhookEvent]) -> bytes:
    return _encoder.encode(Batch(int(time.time() * 1000), events))


def signature(secret: str, timestamp: int, data: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + data, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def signed_headers(secret: str, data: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "content-type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, data),
    }


def verify(secret: str, data: bytes, timestamp: str, sig: str, tolerance: float = 300) -> bool:
    """What a receiver does (docs/webhooks.md shows it standalone): the signature must match
    and the timestamp be recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - sent) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, sent, data), sig)
