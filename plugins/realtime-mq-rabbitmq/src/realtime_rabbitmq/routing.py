"""Channel names <-> AMQP routing keys, safe on topic and direct exchanges alike.

A channel name is any string of up to 200 characters. On a topic exchange ``.`` separates
words and the words ``*`` and ``#`` are wildcards in binding keys, and every routing key is
limited to 255 bytes. So only names made of a small, inert alphabet travel as they are
(``broadcast.room-1``, readable in the management UI and bindable by other AMQP clients);
every other name travels as ``<kind>.~<sha256 hex>``. ``~`` is outside that alphabet, so a
hashed key never equals a plain one, and a hashed key is one word with no wildcard in it.

The exact (kind, channel) always rides in the message headers too; the receiver keeps only
messages whose headers name a channel it subscribed, so even a hash collision could never
deliver one channel's message as another's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from realtime.wire.messages import KINDS, Kind

#: Header carrying the kind (``broadcast`` or ``presence``).
KIND_HEADER = "realtime-kind"
#: Header carrying the exact channel name.
CHANNEL_HEADER = "realtime-channel"

# Letters, digits and - _ : @ / : no '.', '*', '#' or '~', all one byte in UTF-8.
_PLAIN = re.compile(r"[A-Za-z0-9_:@/-]{1,200}")
HASH_MARK = "~"
# 160 bits of SHA-256: collisions are not a practical concern, and the header check below
# would catch one anyway.
HASH_HEX_CHARS = 40


def is_plain(channel: str) -> bool:
    """True when ``channel`` can be a routing-key word as it is."""
    return _PLAIN.fullmatch(channel) is not None


def routing_key(kind: Kind, channel: str) -> str:
    """The routing key (and binding key) of one channel of one kind."""
    if is_plain(channel):
        return f"{kind}.{channel}"
    # surrogatepass: any Python string hashes, even one that is not valid Unicode.
    digest = hashlib.sha256(channel.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}.{HASH_MARK}{digest[:HASH_HEX_CHARS]}"


def headers(kind: Kind, channel: str) -> dict[str, str]:
    return {KIND_HEADER: kind, CHANNEL_HEADER: channel}


def _kind(value: object) -> Kind | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    for known in KINDS:
        if value == known:
            return known
    return None


def target(key: str, message_headers: Mapping[str, object] | None) -> tuple[Kind, str] | None:
    """The (kind, channel) a received message is for, or None when it is not ours.

    Our own messages say it in their headers. A message from another AMQP client without our
    headers is accepted on a plain key only (``broadcast.room1``), where the key says it all.
    """
    found = message_headers or {}
    kind, channel = _kind(found.get(KIND_HEADER)), found.get(CHANNEL_HEADER)
    if isinstance(channel, bytes):
        channel = channel.decode("utf-8", "surrogatepass")
    if kind is not None and isinstance(channel, str):
        # The key must agree with the headers, so a message routed to one channel's binding
        # can never be delivered as another channel's.
        return (kind, channel) if routing_key(kind, channel) == key else None
    prefix, _, rest = key.partition(".")
    plain_kind = _kind(prefix)
    if plain_kind is not None and is_plain(rest):
        return plain_kind, rest
    return None
