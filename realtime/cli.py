"""``realtime serve`` / ``python -m realtime``: read the settings, then run uvicorn.

The benchmarks are not a command of the installed package: they run from a source checkout
with ``python -m bench`` or ``make bench``."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from realtime import __version__
from realtime.brokers.registry import available, check_broker_settings
from realtime.config import OPTIONS, Settings, describe, load_settings
from realtime.errors import ConfigError

if TYPE_CHECKING:
    from realtime.server.app import RealtimeApp

log = logging.getLogger("realtime")


def _settings_help() -> str:
    rows = [
        f"  {o.name:<26} {o.help}" + (f" (default {o.default})" if o.default else "")
        for o in OPTIONS
    ]
    return "\n".join(
        [
            "Settings are read from the environment and from .env in the working directory",
            "(the environment wins). Broker plugins read their own prefixed settings: see",
            f"their READMEs. Installed brokers: {', '.join(available())}.",
            "",
            *rows,
        ]
    )


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="realtime", description="realtime-mq gateway")
    main.add_argument("--version", action="version", version=f"realtime-mq {__version__}")
    commands = main.add_subparsers(dest="command")
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the realtime-mq gateway.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port, each one instance on the MQ (default 1)",
    )
    commands.add_parser(
        "check",
        help="print the effective settings (secrets masked) and test the backends",
        description="Print the effective settings, secrets masked, then start the broker(s)"
        " and the presence store as the gateway does and say what works. Exit 0: all work;"
        " 1: something does not; 2: a bad setting.",
    )
    url = os.environ.get("REALTIME_URL", "http://127.0.0.1:8080")
    publish = commands.add_parser(
        "publish",
        help="publish a broadcast through the HTTP API",
        description="POST /api/event to a gateway (API key: REALTIME_API_KEY).",
    )
    publish.add_argument("channel")
    publish.add_argument("payload", metavar="JSON", help="the payload, a JSON value")
    publish.add_argument("--event", default="message", help="event name (default message)")
    publish.add_argument("--url", default=url, help=f"the gateway (REALTIME_URL; {url})")
    listen = commands.add_parser(
        "listen",
        help="subscribe to a channel and print every frame as a JSON line",
        description="A terminal subscriber over WebSocket (token: REALTIME_TOKEN).",
    )
    listen.add_argument("channel")
    listen.add_argument("--user", help="user_id, for a gateway without JWT_SECRET")
    listen.add_argument("--presence", action="store_true", help="presence events too")
    listen.add_argument("--url", default=url, help=f"the gateway (REALTIME_URL; {url})")
    return main


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
        # The plugin's own settings too, before anything is logged or bound.
        check_broker_settings(settings)
    except ConfigError as exc:
        print(f"realtime: bad setting {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def app_factory() -> RealtimeApp:
    """Import target for uvicorn's worker processes: each reads the settings itself."""
    from realtime.server import logs
    from realtime.server.app import create_app

    settings = settings_or_exit()
    # A --workers process is a fresh interpreter: without this its lines (INFO and below, and
    # all of them in JSON) would go nowhere.
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings, freeze_gc=True)


def serve(settings: Settings, workers: int = 1) -> None:
    from realtime.server import logs
    from realtime.server.playground import playground_notice

    logs.configure(settings.log_level, settings.log_format)
    log.info(
        "realtime-mq %s on %s:%d, %s",
        __version__,
        settings.host,
        settings.port,
        describe(settings),
    )
    # What is left open comes first and loudly; then where we are safer than the seed.
    for warning in security_warnings(settings):
        log.warning("%s", warning)
    log.info("%s", playground_notice(settings))
    log.info(
        "/api/event bodies over %d bytes get 413 (HTTP_MAX_BODY_BYTES; the seed had no cap:"
        " BROADCAST_MAX_MESSAGE_BYTES raises the broker's limit and this cap with it)",
        settings.http_max_body_bytes,
    )
    # The byte bound is ours, not the seed's: a deployment broadcasting frames near it raises it.
    log.info(
        "slow consumers are closed (4008) past %d frames (WS_SEND_QUEUE_SIZE) or %d bytes"
        " (WS_SEND_QUEUE_BYTES) waiting",
        settings.ws_send_queue_size,
        settings.ws_send_queue_bytes,
    )
    log.info(
        "X-Forwarded-For is believed from %s (TRUSTED_PROXIES); on SIGTERM WebSockets are"
        " closed (1012) over %gs (SHUTDOWN_DRAIN_SECONDS), a second signal exits at once",
        ", ".join(settings.trusted_proxies) or "no one",
        settings.shutdown_drain_seconds,
    )
    if settings.get("FORWARDED_ALLOW_IPS") and not settings.get("TRUSTED_PROXIES"):
        log.warning(
            "FORWARDED_ALLOW_IPS is uvicorn's variable: it is honoured, rename it TRUSTED_PROXIES"
        )
    if workers > 1 and settings.broker == "memory":
        log.warning("--workers %d with the memory broker: each worker is its own island", workers)
    metrics_start(settings, workers)
    uvicorn.run(
        "realtime.cli:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        **supervisor_options(workers),
        **server_options(settings),
    )


# uvicorn's supervisor kills a worker that does not answer its ping within this many seconds
# (uvicorn's default is 5). The pong comes from a thread that needs the interpreter's lock, so a
# worker busy with thousands of connections on a starved core can miss 5 s while it is
# healthy (seen in the scale benchmark: eight workers killed at once, each taking every
# connection it held with it). A worker hung for this long is still replaced.
WORKER_HEALTHCHECK_SECONDS = 30


def supervisor_options(workers: int) -> dict[str, Any]:
    """uvicorn's options for ``--workers``: how many, and how long a worker may miss a ping."""
    return {"workers": workers, "timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS}


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for our protocol settings; tests start servers with the same. The
    WebSocket protocol is the direct path's when the installed uvicorn supports it (checked
    here, at start-up), else uvicorn's own, with one warning line."""
    # Imported here so that `realtime --help` and a bad setting's exit stay quick.
    from realtime.server.direct import choose_protocol
    from realtime.server.handshake import guarded_protocol

    return {
        "http": guarded_protocol(
            settings.handshake_timeout,
            settings.http_max_request_line,
            settings.http_max_header_bytes,
        ),
        # uvicorn answers 503 to HTTP requests beyond this many open connections (WebSockets
        # included; upgrades are capped by WS_MAX_CONNECTIONS in the endpoint). The headroom
        # keeps health checks and the API answering while the WebSockets are at their cap.
        "limit_concurrency": settings.ws_max_connections + HTTP_HEADROOM
        if settings.ws_max_connections
        else None,
        "ws": choose_protocol(),
        "ws_max_size": settings.ws_max_frame_bytes,
        "ws_ping_interval": settings.ws_ping_interval,
        "ws_ping_timeout": settings.ws_ping_timeout,
        "ws_per_message_deflate": False,
        "log_level": settings.log_level,
        "log_config": None,
        # Off by default: every balancer health check would be a line. On, its client address
        # is the one TRUSTED_PROXIES resolves, and tokens in query strings are redacted.
        "access_log": settings.http_access_log,
        "lifespan": "on",
        # X-Forwarded-For/-Proto are believed only from these peers (uvicorn's default is
        # loopback or its own FORWARDED_ALLOW_IPS variable; ours is the setting).
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies) or None,
        # Bounds the wait for in-flight HTTP requests once the drain (realtime.server.drain)
        # hands over to uvicorn's shutdown; it waits for ever otherwise.
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
    }


def metrics_start(settings: Settings, workers: int) -> None:
    """Say who may read /metrics; with --workers, give the workers one directory to write
    their metrics to (prometheus-client's multiprocess mode), so a scrape that any one of them
    answers adds up all of them. It is set before the workers start: they read it at import."""
    if settings.metrics == "off":
        log.info("GET /metrics is off (METRICS=off)")
    elif settings.metrics == "open":
        log.warning("METRICS=open: anyone who reaches this port can read /metrics")
    else:
        log.info(
            "GET /metrics answers loopback clients%s (METRICS=local; open: anyone)",
            " and API key holders" if settings.api_keys else "",
        )
    if workers <= 1:
        return
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        # Files a previous run left would be added to this one's counts.
        for stale in Path(given).glob("*.db"):
            stale.unlink()
    else:
        shared = tempfile.mkdtemp(prefix="realtime-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
        atexit.register(shutil.rmtree, shared, ignore_errors=True)


HTTP_HEADROOM = 256
# What uvicorn waits, after the drain, for requests still being answered.
SHUTDOWN_GRACE_SECONDS = 5


def security_warnings(settings: Settings) -> list[str]:
    """The start-up lines saying which seed-compatible openings are left on."""
    warnings = []
    if not settings.api_keys:
        warnings.append(
            "API_KEYS is not set: POST /api/event is open, anyone who reaches this port can"
            " publish to any channel (set API_KEYS in production); the server API"
            " (/api/channels, /api/disconnect, ...) stays off until it is set"
        )
    if not settings.http_require_json:
        warnings.append(
            "HTTP_REQUIRE_JSON=0: /api/event takes any content type, so a page on any site can"
            " publish through its visitors' browsers with a plain form POST (the seed's"
            " behaviour); send application/json and remove the setting"
        )
    if "*" in settings.ws_allowed_origins:
        warnings.append(
            "WS_ALLOWED_ORIGINS is * (it follows CORS_ALLOWED_ORIGINS by default): a page on any"
            " site can open /ws with its visitors' cookies; list your origins in production"
        )
    return warnings


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "publish":
        from realtime.tools import publish

        raise SystemExit(publish.run(args.url, args.channel, args.payload, args.event))
    if args.command == "listen":
        from realtime.tools import listen

        raise SystemExit(listen.run(args.url, args.channel, args.user, args.presence))
    settings = settings_or_exit()
    if args.command == "check":
        from realtime.tools import check

        raise SystemExit(check.run(settings))
    serve(settings, workers=getattr(args, "workers", 1))
