"""realtime-mq: a realtime messaging gateway over a pluggable message queue."""

from __future__ import annotations

__version__ = "0.1.0"
