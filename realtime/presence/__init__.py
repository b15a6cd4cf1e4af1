"""Where the members of each channel are kept: Redis (shared) or memory (one instance)."""

from __future__ import annotations

from realtime.presence.base import PresenceStore

__all__ = ["PresenceStore"]
