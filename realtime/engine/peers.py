"""What the node remembers of each connection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from realtime.auth.grants import Grants
from realtime.engine.hub import Peer
from realtime.presence.base import Entry
from realtime.wire.messages import Kind, Member


@dataclass(eq=False)
class PeerState:
    """What the node remembers of one connection, so closing it undoes everything."""

    conn: str = ""
    listening: dict[str, set[Kind]] = field(default_factory=dict)
    joined: dict[str, Member] = field(default_factory=dict)
    grants: Grants | None = None  # what the connection's token grants; None: no token


class Peers(dict[Peer, PeerState]):
    """Every connection's :class:`PeerState`, and the presence entries they hold."""

    def __init__(self) -> None:
        super().__init__()
        # A connection id unique across instances: the store keeps every instance's entries.
        self._instance = uuid.uuid4().hex[:12]
        self._conns = 0

    def add(self, peer: Peer, grants: Grants | None) -> None:
        self._conns += 1
        self[peer] = PeerState(conn=f"{self._instance}.{self._conns}", grants=grants)

    def entries(self, channel: str | None = None) -> list[Entry]:
        """This instance's presence entries, of ``channel`` or of every channel."""
        return [
            Entry(ch, state.conn, member)
            for state in self.values()
            for ch, member in state.joined.items()
            if channel is None or ch == channel
        ]

    def joined(self) -> set[str]:
        """The channels some connection is present in."""
        return {channel for state in self.values() for channel in state.joined}
