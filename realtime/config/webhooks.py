"""The webhook settings: where channel and member events are POSTed, signed with what."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from realtime.config.reading import Env, hide_password, parse, split_list
from realtime.errors import ConfigError

# WEBHOOK_EVENTS' words -> the event names a receiver gets (Pusher's names).
EVENT_NAMES = {
    "occupied": "channel_occupied",
    "vacated": "channel_vacated",
    "member_added": "member_added",
    "member_removed": "member_removed",
}
MIN_SECRET_BYTES = 32


def webhook_settings(env: Env, *, cluster: bool) -> dict[str, Any]:
    url = env.given("WEBHOOK_URL")
    secret = env.given("WEBHOOK_SECRET")
    words = split_list(env.value("WEBHOOK_EVENTS").lower())
    unknown = [w for w in words if w not in EVENT_NAMES]
    if unknown or not words:
        raise ConfigError(
            "WEBHOOK_EVENTS",
            f"{', '.join(unknown) or 'nothing'} is not an event: a comma-separated list of"
            f" {', '.join(EVENT_NAMES)}",
        )
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("WEBHOOK_URL", f"{hide_password(url)!r} is not an http(s) URL")
        if secret is None:
            # Safe by default: an unsigned webhook is one anybody who finds the URL can forge.
            raise ConfigError("WEBHOOK_SECRET", "is required with WEBHOOK_URL (signs every POST)")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            # The value itself never reaches the message: only its length.
            raise ConfigError(
                "WEBHOOK_SECRET",
                f"is {len(secret.encode())} bytes; at least {MIN_SECRET_BYTES} are required",
            )
        if cluster:
            # The exactly-once design writes each event into one stream in the same script
            # that changes presence; on a Cluster that stream is in another slot.
            raise ConfigError("WEBHOOK_URL", "webhooks are not supported on a Redis Cluster yet")
    elif secret is not None:
        raise ConfigError("WEBHOOK_SECRET", "is set but WEBHOOK_URL is not")
    timeout = parse(
        env, "WEBHOOK_TIMEOUT_SECONDS", float, "a number of seconds from 0.1 to 60", 0.1, 60
    )
    claim = parse(
        env, "WEBHOOK_CLAIM_SECONDS", float, "a number of seconds from 1 to 3600", 1, 3600
    )
    if timeout * 2 >= claim:
        # An instance renews its claim on a batch before each attempt; a POST that may take
        # longer than half the claim would let another instance take the batch and send it too.
        raise ConfigError(
            "WEBHOOK_CLAIM_SECONDS",
            f"{claim:g} must be more than twice WEBHOOK_TIMEOUT_SECONDS ({timeout:g})",
        )
    return {
        "webhook_url": url,
        "webhook_secret": secret,
        "webhook_events": tuple(EVENT_NAMES[w] for w in words),
        "webhook_timeout": timeout,
        "webhook_queue_size": parse(
            env, "WEBHOOK_QUEUE_SIZE", int, "an event count from 1 to 10000000", 1, 10_000_000
        ),
        "webhook_claim_seconds": claim,
    }
