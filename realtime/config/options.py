"""Every setting the core reads, with its default and what it accepts: the one place defaults
are written. ``realtime serve --help`` prints this table; plugins document their own settings."""

from __future__ import annotations

from dataclasses import dataclass

from realtime.brokers.base import EDGE_MAX_BYTES, MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class Option:
    """A documented setting: its variable, default and what it accepts."""

    name: str
    default: str | None
    help: str


# The one place every default is written: `realtime serve --help` prints this table and
# load_settings() falls back to it. Plugins document their own settings in their READMEs.
OPTIONS: tuple[Option, ...] = (
    Option("SERVER_ADDR", ":8080", "listen address host:port (an empty host listens on all)"),
    Option("REDIS_ADDR", "127.0.0.1:6379", "Redis host:port for presence (and the redis broker)"),
    Option("REDIS_PASSWORD", None, "Redis password"),
    Option("REDIS_DB", "0", "Redis database index, an integer >= 0"),
    Option("REDIS_URL", None, "redis:// or rediss:// URL; overrides REDIS_ADDR/PASSWORD/DB"),
    Option("REDIS_SENTINELS", None, "comma-separated sentinel host:port list (Sentinel mode)"),
    Option("REDIS_SENTINEL_MASTER", None, "master name the sentinels monitor; needs SENTINELS"),
    Option("REDIS_SENTINEL_PASSWORD", None, "password of the sentinels themselves, if any"),
    Option("REDIS_CLUSTER", "0", "1: Redis Cluster; REDIS_ADDR or REDIS_URL names a startup node"),
    Option("REDIS_CLUSTER_PUBSUB", "sharded", "sharded | classic (seed gateway interop)"),
    Option("PRESENCE_STORE", "redis", "where presence lives: redis | memory"),
    Option("PRESENCE_TTL_SECONDS", "60", "seconds a member whose gateway stopped stays listed"),
    Option("PRESENCE_MAX_META_BYTES", "2048", "largest presence meta (JSON bytes) per member"),
    Option("PRESENCE_MAX_MEMBERS", "100000", "members per channel; 0 means no cap"),
    Option("PRESENCE_DIFF_WINDOW_MS", "100", "window batching events into one presence_diff"),
    Option(
        "PRESENCE_ORDER_WAIT_MS",
        "100",
        "how long an event ahead of a missing one waits for it before a resync (0..1000)",
    ),
    Option(
        "PRESENCE_LEAVE_GRACE_SECONDS",
        "0",
        "seconds a closed connection's user stays present, so a quick reconnect is no leave",
    ),
    Option("BROADCAST_MQ_TYPE", "redis", "broker plugin name (entry point realtime.brokers)"),
    Option("BROADCAST_MQ_ADDR", None, "broker address; the redis broker defaults to REDIS_*"),
    Option("BROADCAST_MQ_PASSWORD", None, "broker password (redis broker)"),
    Option("BROADCAST_MQ_DB", None, "broker database index (redis broker)"),
    Option("CORS_ALLOWED_ORIGINS", "*", "comma-separated origins allowed to call /api/event"),
    Option(
        "API_KEYS",
        None,
        "keys for /api/event and the server API: key[:pattern|pattern],...;"
        " unset: /api/event open, server API off",
    ),
    Option("WS_ALLOWED_ORIGINS", None, "origins allowed to open /ws (default: the CORS list)"),
    Option(
        "HTTP_REQUIRE_JSON",
        "1",
        "1: /api/event takes application/json only (415 otherwise); 0: any type, as the seed",
    ),
    Option("JWT_SECRET", None, "HMAC secret (>= 32 bytes); when set, /ws requires a JWT"),
    Option("JWT_PUBLIC_KEY", None, "PEM public key (RSA, EC, Ed25519) or its path, instead"),
    Option("JWT_JWKS_URL", None, "URL of a JWKS whose keys (by kid) verify tokens, instead"),
    Option("JWT_JWKS_CACHE_SECONDS", "300", "seconds the JWKS is cached"),
    Option("JWT_JWKS_MIN_REFRESH_SECONDS", "30", "least seconds between JWKS refetches"),
    Option("JWT_AUDIENCE", None, "required aud: a token must name one of these (comma list)"),
    Option("JWT_ISSUER", None, "required iss"),
    Option("JWT_REQUIRE_EXP", "1", "1: tokens must have exp; 0: the seed's behaviour"),
    Option("JWT_EXPIRY_GRACE_SECONDS", "10", "after token_expired, seconds to refresh or 4001"),
    Option("JWT_USER_CLAIM", "sub", "JWT claim that holds the user id"),
    Option("CHANNEL_POLICY", None, "open | token (default: token with a JWT key, else open)"),
    Option("AUTH_HOOK_URL", None, "app backend asked on subscribe/publish/presence join"),
    Option("AUTH_HOOK_TIMEOUT_SECONDS", "2", "seconds to wait for the hook's answer"),
    Option("AUTH_HOOK_CACHE_SECONDS", "30", "seconds a hook answer is reused; 0: never"),
    Option("AUTH_HOOK_FAILURE", "closed", "closed (refuse) | open (allow) when the hook fails"),
    Option("LOG_LEVEL", "info", "debug | info | warning | error"),
    Option("LOG_FORMAT", "text", "text | json (one JSON object per line, fields as keys)"),
    # /metrics shows traffic shape (connections, rates, channels served): not for anyone who
    # can reach the port. Loopback scrapers (a sidecar, a node agent) and API key holders pass.
    Option(
        "METRICS",
        "local",
        "GET /metrics: local (loopback clients, or any API key) | open | off",
    ),
    # A page anyone who reaches the port can open: harmless on a development gateway, noise
    # (and a hint of what runs here) on a production one, which is the one with keys set.
    Option(
        "PLAYGROUND",
        None,
        "1: serve the playground page at /; 0: off (default: on, off when a JWT key or"
        " API_KEYS is set)",
    ),
    Option("WS_PING_INTERVAL_SECONDS", "20", "seconds between WebSocket pings; 0 disables"),
    Option("WS_PING_TIMEOUT_SECONDS", "20", "seconds to wait for a pong before closing"),
    Option(
        "WS_MAX_FRAME_BYTES",
        "65536",
        "largest client frame, at most BROADCAST_MAX_MESSAGE_BYTES less 1 KiB; larger ones close"
        " with 1009",
    ),
    Option(
        "BROADCAST_MAX_MESSAGE_BYTES",
        str(MAX_MESSAGE_BYTES),
        "largest message handed to the broker; raise it only for an MQ that carries more "
        "(Redis: 512 MB); the edges' caps may then go up to it less 1 KiB",
    ),
    # Unset, it follows BROADCAST_MAX_MESSAGE_BYTES less the bus envelope's room, so raising
    # that one setting is enough to take the seed's large bodies again.
    Option(
        "HTTP_MAX_BODY_BYTES",
        None,
        f"largest /api/event body (default {EDGE_MAX_BYTES}: BROADCAST_MAX_MESSAGE_BYTES less"
        " 1 KiB, also its ceiling); larger ones get 413",
    ),
    Option(
        "START_TIMEOUT_SECONDS",
        "30",
        "bound on each broker's and the presence store's start; past it the gateway exits",
    ),
    # 1 s and 2 s: a frozen, partitioned or deaf subscriber turns /readyz red within 3 s
    # (interval + timeout), at one tiny message a second per broker; a localhost or LAN round
    # trip is milliseconds, so 2 s leaves room for a loaded machine without false alarms.
    Option(
        "BROKER_PROBE_INTERVAL_SECONDS",
        "1",
        "seconds between liveness probes through each broker and presence store pings; 0: off",
    ),
    Option(
        "BROKER_PROBE_TIMEOUT_SECONDS",
        "2",
        "seconds a probe (publish and its return) or a store ping may take before /readyz is red",
    ),
    Option(
        "SERVER_API_TIMEOUT_SECONDS",
        "1",
        "how long the server API waits for every instance's answer (channels, disconnect)",
    ),
    Option("WS_SEND_QUEUE_SIZE", "1024", "frames queued per connection before it closes 4008"),
    # 16 MiB: more than the presence_sync of a full 100,000-member channel (about 13 MB with
    # ~90-byte metas) and 16 times what the frame bound lets through at 1 KB a frame, so a
    # client that reads never meets it; one that stops reading is closed holding at most this.
    Option("WS_SEND_QUEUE_BYTES", "16777216", "bytes waiting per connection before it closes 4008"),
    Option("WS_MAX_FRAMES_PER_SECOND", "100", "client frames a second per connection; 0: no cap"),
    Option("WS_FRAME_BURST", "200", "client frames a connection may send at once above the rate"),
    Option("WS_MAX_SUBSCRIPTIONS", "1000", "channels one connection may subscribe; 0: no cap"),
    Option("WS_MAX_PRESENCE_JOINS", "100", "channels one connection may be present in; 0: none"),
    Option("WS_MAX_CONNECTIONS_PER_USER", "100", "connections of one user per instance; 0: none"),
    Option("WS_MAX_CONNECTIONS", "10000", "WebSocket connections per instance; 0: no cap"),
    Option("PRESENCE_RESYNC_INTERVAL_MS", "1000", "least ms between two syncs of a channel"),
    Option("EVENT_NAME_MAX_LENGTH", "200", "longest event name (characters), WebSocket and HTTP"),
    Option("JSON_MAX_DEPTH", "64", "deepest JSON nesting accepted in a frame or HTTP body"),
    Option("HANDSHAKE_TIMEOUT_SECONDS", "10", "seconds a client has to send its request headers"),
    Option("HTTP_MAX_REQUEST_LINE_BYTES", "8190", "longest request line; longer: 414"),
    Option("HTTP_MAX_HEADER_BYTES", "16384", "largest request header block; larger: 431"),
    Option(
        "SHUTDOWN_DRAIN_SECONDS",
        "5",
        "on SIGTERM, seconds over which open WebSockets are closed (1012); 0: all at once",
    ),
    Option(
        "TRUSTED_PROXIES",
        "127.0.0.1,::1",
        "addresses/networks whose X-Forwarded-For/-Proto are believed; * any; none: no one",
    ),
    Option("HTTP_ACCESS_LOG", "0", "1: one log line per HTTP request (uvicorn's access log)"),
    Option(
        "WS_MAX_CONNECTION_AGE_SECONDS",
        "0",
        "close a WebSocket (1012) after about this long, +-10% jitter, to rebalance; 0: never",
    ),
    Option(
        "HISTORY_CHANNELS",
        None,
        "channel patterns keeping history (orders.*|news); unset: none, the seed's behaviour",
    ),
    Option("HISTORY_SIZE", "100", "broadcasts kept per history channel (1..100000)"),
    Option(
        "HISTORY_TTL_SECONDS", "300", "seconds a history channel is kept after its last publish"
    ),
    Option("WEBHOOK_URL", None, "http(s) URL POSTed channel and member events (signed)"),
    Option("WEBHOOK_SECRET", None, "HMAC-SHA256 key signing each webhook (>= 32 bytes)"),
    Option(
        "WEBHOOK_EVENTS",
        "occupied,vacated,member_added,member_removed",
        "which events to send: occupied, vacated, member_added, member_removed",
    ),
    Option("WEBHOOK_TIMEOUT_SECONDS", "5", "how long one webhook POST may take"),
    Option("WEBHOOK_QUEUE_SIZE", "10000", "events held while the receiver is down; older drop"),
    Option(
        "WEBHOOK_CLAIM_SECONDS",
        "30",
        "a stopped instance's undelivered webhook batch is taken over after this long",
    ),
    Option(
        "IDEMPOTENCY_WINDOW_SECONDS",
        "300",
        "seconds /api/event remembers an Idempotency-Key's answer (1..86400)",
    ),
)

DEFAULTS = {option.name: option.default for option in OPTIONS}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
METRICS_MODES = ("local", "open", "off")
PUBSUB_MODES = ("sharded", "classic")
