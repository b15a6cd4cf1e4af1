"""The gateway's Prometheus metrics: defined once here, bumped where things happen, served by
``GET /metrics`` (``realtime.server.metrics_api``). docs/operations.md lists every one.

Rules that keep them cheap and bounded:

- No label takes a channel or user name: labels are bus kinds, frame types, close codes and
  broker names, each a short fixed set (close codes outside :data:`KNOWN_CODES` count as
  ``other``), so the output stays a few kilobytes however many channels there are.
- The hot path bumps pre-bound children (``.labels()`` is resolved here, once) and counts a
  fan-out as one ``inc(n)``, not one call per recipient.
- Gauges are kept by increments where things change, never computed at scrape time: under
  ``--workers`` the scrape is answered by one worker, and only what every worker wrote to the
  shared directory (prometheus-client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``) is
  summed into the answer.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
KINDS = ("broadcast", "presence")
# The close codes the gateway and its clients use; anything else is "other" (bounded labels).
KNOWN_CODES = frozenset({1000, 1001, 1006, 1008, 1009, 1011, 1012, 4001, 4008, 4029})
# Frame types a client may send (realtime/wire/messages.py's tags), and "refused": frames
# dropped before acting (they did not decode, or came over the rate).
FRAME_TYPES = (
    "broadcast",
    "subscribe",
    "unsubscribe",
    "presence_join",
    "presence_update",
    "presence_leave",
    "refresh",
    "refused",
)

# Latency buckets in seconds: a LAN publish is sub-millisecond, a loaded one tens of ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

CONNECTIONS = Gauge(
    "realtime_connections", "WebSocket connections open now", multiprocess_mode="livesum"
)
CONNECTIONS_OPENED = Counter("realtime_connections_opened", "WebSocket connections accepted")
CONNECTIONS_CLOSED = Counter(
    "realtime_connections_closed",
    "WebSocket connections ended, by close code (none: the socket ended without one)",
    ["code"],
)
SLOW_CONSUMER_CLOSES = Counter(
    "realtime_slow_consumer_closes", "connections closed 4008 for not reading their frames"
)
RATE_LIMIT_CLOSES = Counter(
    "realtime_rate_limit_closes", "connections closed 4029 for flooding after being told"
)
SUBSCRIPTIONS = Gauge(
    "realtime_subscriptions",
    "local subscriptions now (a connection listening to a channel's kind)",
    ["kind"],
    multiprocess_mode="livesum",
)
CHANNELS = Gauge(
    "realtime_channels",
    "channels this instance is subscribed to on the MQ now, by kind",
    ["kind"],
    multiprocess_mode="livesum",
)
MESSAGES_IN = Counter(
    "realtime_messages_in",
    "messages that came in from the MQ for a local subscriber, by kind",
    ["kind"],
)
MESSAGES_OUT = Counter(
    "realtime_messages_out",
    "frames queued to clients from the MQ's messages (one per recipient), by kind",
    ["kind"],
)
CLIENT_FRAMES = Counter(
    "realtime_client_frames", "frames read from WebSocket clients, by type", ["type"]
)
HTTP_PUBLISHES = Counter(
    "realtime_http_publishes",
    "broadcasts accepted over HTTP: POST /api/event, and each event of POST /api/batch",
)
PUBLISH_LATENCY = Histogram(
    "realtime_publish_latency_seconds",
    "from a broadcast's publish call to the MQ accepting it",
    buckets=LATENCY_BUCKETS,
)
DELIVERY_LATENCY = Histogram(
    "realtime_delivery_latency_seconds",
    "from a broadcast's ts (set by the publishing gateway) to its fan-out here; across hosts it"
    " includes their clock difference",
    buckets=LATENCY_BUCKETS,
)
BROKER_PUBLISH_ERRORS = Counter(
    "realtime_broker_publish_errors", "publishes the MQ refused or failed, by kind", ["kind"]
)
BROKER_RECONNECTS = Counter(
    "realtime_broker_reconnects", "times a broker's subscriber connection came back", ["broker"]
)
PROBE_ROUND_TRIP = Gauge(
    "realtime_broker_probe_round_trip_seconds",
    "the last liveness probe's round trip through the MQ, by kind",
    ["kind"],
    multiprocess_mode="livemax",
)
PROBE_LAST_OK = Gauge(
    "realtime_broker_probe_last_ok_timestamp_seconds",
    "Unix time of the last liveness probe that came back, by kind (oldest worker's)",
    ["kind"],
    multiprocess_mode="livemin",
)
PROBE_FAILURES = Counter(
    "realtime_broker_probe_failures", "liveness probe rounds that failed, by kind", ["kind"]
)
PRESENCE_MEMBERS = Gauge(
    "realtime_presence_members",
    "presence entries held by this instance's connections now (one per connection and channel)",
    multiprocess_mode="livesum",
)
PRESENCE_SYNCS = Counter(
    "realtime_presence_syncs", "presence_sync frames sent (a chunked sync counts once)"
)
PRESENCE_RESYNCS = Counter(
    "realtime_presence_resyncs", "presence syncs sent unasked: a gap, a new epoch, a lagging view"
)
HISTORY_RECOVERIES = Counter(
    "realtime_history_recoveries",
    "subscribes with since on a history channel: recovered (hit) or not (miss)",
    ["result"],
)
WEBHOOK_EVENTS = Counter(
    "realtime_webhook_events",
    "webhook events this instance handled, by outcome: delivered (a 2xx), rejected (a final"
    " 4xx), dropped (pushed out of the full embedded queue, or lost to a surprise)",
    ["outcome"],
)
WEBHOOK_FAILURES = Counter(
    "realtime_webhook_failures", "webhook POST attempts that failed and are retried"
)
WEBHOOK_STREAM_DROPPED = Gauge(
    "realtime_webhook_stream_dropped",
    "cluster-wide webhook events the full Redis stream pushed out before any instance took"
    " them (a count kept in Redis, read by each instance's delivery loop)",
    multiprocess_mode="max",
)

# Pre-bound children of the hot path.
IN = {kind: MESSAGES_IN.labels(kind) for kind in KINDS}
OUT = {kind: MESSAGES_OUT.labels(kind) for kind in KINDS}
FRAMES = {name: CLIENT_FRAMES.labels(name) for name in FRAME_TYPES}
PUBLISH_ERRORS = {kind: BROKER_PUBLISH_ERRORS.labels(kind) for kind in KINDS}
SUBS = {kind: SUBSCRIPTIONS.labels(kind) for kind in KINDS}
SERVED = {kind: CHANNELS.labels(kind) for kind in KINDS}
HISTORY_HIT = HISTORY_RECOVERIES.labels("hit")
HISTORY_MISS = HISTORY_RECOVERIES.labels("miss")
WEBHOOKS_DELIVERED = WEBHOOK_EVENTS.labels("delivered")
WEBHOOKS_REJECTED = WEBHOOK_EVENTS.labels("rejected")
WEBHOOKS_DROPPED = WEBHOOK_EVENTS.labels("dropped")


def closed(code: int | None) -> None:
    """A connection ended with ``code`` (None: no close frame either way)."""
    CONNECTIONS.dec()
    if code is None:
        label = "none"
    elif code in KNOWN_CODES:
        label = str(code)
    else:
        label = "other"
    CONNECTIONS_CLOSED.labels(label).inc()


def delivered(ts_ms: int) -> None:
    """A broadcast stamped ``ts_ms`` (Unix ms, by the publishing gateway) is fanned out now."""
    if ts_ms > 0:
        # A negative difference is the hosts' clocks disagreeing: counted as 0, not dropped.
        DELIVERY_LATENCY.observe(max(0.0, time.time() - ts_ms / 1000))


def broker_reconnected(broker: str) -> None:
    """For brokers, ours and plugins': call when a subscriber connection is back after a loss.
    ``broker`` is the broker's name (``redis``, ``kafka``), never an address."""
    BROKER_RECONNECTS.labels(broker).inc()


def probe_ok(kind: str, round_trip: float) -> None:
    PROBE_ROUND_TRIP.labels(kind).set(round_trip)
    PROBE_LAST_OK.labels(kind).set(time.time())


def exposition() -> bytes:
    """The text format of every metric: this process's, or every worker's when
    ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def worker_exited(pid: int) -> None:
    """Drop a stopped worker's live gauges from the shared directory."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
