"""One root for every error the gateway raises on purpose; each carries its data."""

from __future__ import annotations


class RealtimeError(Exception):
    """Root of the gateway's own errors."""


class ConfigError(RealtimeError):
    """A setting is missing or does not parse; ``variable`` names it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class BrokerError(RealtimeError):
    """The message queue refused or failed an operation."""


class StartError(RealtimeError):
    """A broker or the presence store failed to start, or did not within
    ``START_TIMEOUT_SECONDS``; the gateway logs this one line and exits."""


class BrokerNotFound(ConfigError):
    """No broker plugin is installed under the requested name."""

    def __init__(self, name: str, installed: list[str]) -> None:
        hint = f"; pip install realtime-mq-{name}" if name not in ("", "memory", "redis") else ""
        super().__init__(
            "BROADCAST_MQ_TYPE",
            f"no broker {name!r} installed (installed: {', '.join(installed) or 'none'}){hint}",
        )
        self.name = name
        self.installed = installed


class PresenceError(RealtimeError):
    """The presence store refused or failed an operation."""


class HistoryError(RealtimeError):
    """The history store refused or failed an operation."""


class PresenceFull(PresenceError):
    """The channel holds ``PRESENCE_MAX_MEMBERS`` members already; nothing was stored."""


class FrameError(RealtimeError):
    """A client frame the gateway cannot act on; ``code`` goes into the error frame sent back
    (``realtime.wire.messages.refusal`` builds it)."""

    def __init__(self, code: str, message: str, channel: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.channel = channel


class AuthError(RealtimeError):
    """An upgrade request carries no acceptable identity."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status
