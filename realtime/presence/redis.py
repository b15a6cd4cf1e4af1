"""Presence in Redis: exact across connections and instances, readable by seed gateways.

Per channel ``c``, all in one cluster slot (``presence:c`` hashes like the tag ``{presence:c}``):

- ``presence:c``: hash user id -> ``{"user_id","meta","updated_at"}`` JSON, as the seed writes it;
- ``{presence:c}:expiry``: sorted set user id -> the latest expiry among the user's connections;
- ``{presence:c}:conns``: sorted set ``"<connection id> <user id>"`` -> that entry's expiry;
- ``{presence:c}:count``: hash user id -> how many connection entries the user has;
- ``{presence:c}:version``: the channel's version, incremented with every event;
- ``{presence:c}:epoch``: set when the version starts from 1, so a reset is visible.

Every change runs as one Lua script that decides join/update/leave, increments the version and
PUBLISHes the event on ``presence.c`` with that ``seq``: two instances racing cannot double-join
or lose a leave, and events reach every subscriber in version order (on sharded Pub/Sub the
caller publishes them, see :class:`RedisPresence`). Times are Redis's own
(``TIME``), so instances' clocks do not matter. Members a seed gateway wrote (no entries beside
the hash) are listed as the seed lists them.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import RedisError

from realtime.brokers.redis.common import topic
from realtime.errors import PresenceError, PresenceFull
from realtime.presence.base import ChannelState, Entry, Publish, Snapshot
from realtime.wire.messages import PRESENCE, Member, bus_presence_body, decode_member, encode

REFRESH_BATCH = 250  # connection entries per refresh script call
PIPELINE_BATCH = 200  # script calls per pipeline round trip
# An emptied channel's version and epoch last this long after the last instance that serves it
# (a member or a presence subscriber there) stopped reaping it: each reap tick renews them for
# the channels an instance serves, so a watched channel keeps counting up, and one nobody uses
# is gone within minutes (it starts again at 1 under a new epoch, as after a Redis restart).
VERSION_TTL = 600

# KEYS: hash, expiry, conns, count, version, epoch.
# ARGV: topic, key ttl, version ttl, channel as JSON, "1" to PUBLISH here (else the events are
# returned, in order, for the caller to publish), then the script's own.
# Every script returns {its result, the events it did not publish}.
_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local topic = ARGV[1]
local publish = ARGV[5] == '1'
local out = {}
local key_ttl = tonumber(ARGV[2])
local version_ttl = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local now_ms = string.format('%.0f',
  tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000))

local function emit(kind, body)
  local v = redis.call('INCR', KEYS[5])
  local epoch
  if v == 1 then
    epoch = clock[1] .. '.' .. clock[2]
    redis.call('SET', KEYS[6], epoch)
  else
    epoch = redis.call('GET', KEYS[6]) or ''
  end
  redis.call('EXPIRE', KEYS[5], version_ttl)
  redis.call('EXPIRE', KEYS[6], version_ttl)
  local message = '{"type":"presence_' .. kind .. '",' .. body ..
    ',"seq":' .. v .. ',"epoch":"' .. epoch .. '"}'
  if publish then redis.call('PUBLISH', topic, message) else out[#out + 1] = message end
  return v
end

local function keep()
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], key_ttl) end
end

local function drop_user(user)
  redis.call('HDEL', KEYS[4], user)
  redis.call('ZREM', KEYS[2], user)
  if redis.call('HDEL', KEYS[1], user) == 1 then
    local u = cjson.encode(user)
    emit('leave', '"channel_id":' .. ARGV[4] .. ',"user_id":' .. u ..
      ',"meta":{"user_id":' .. u .. '},"ts":' .. now_ms)
  end
end

local function drop_conn(entry)
  if redis.call('ZREM', KEYS[3], entry) == 0 then return end
  local user = string.sub(entry, string.find(entry, ' ', 1, true) + 1)
  if redis.call('HINCRBY', KEYS[4], user, -1) <= 0 then drop_user(user) end
end

local function reap()
  for _ = 1, 100 do
    local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 500)
    for _, entry in ipairs(gone) do drop_conn(entry) end
    if #gone < 500 then break end
  end
  -- An expired member without connection entries: written by an older gateway of ours.
  for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 500)) do
    if redis.call('HEXISTS', KEYS[4], user) == 0 then drop_user(user) end
  end
end

local function state()
  return {tonumber(redis.call('GET', KEYS[5]) or '0'), redis.call('GET', KEYS[6]) or ''}
end
"""

# ARGV[6..]: entry, user, member JSON, ttl, max members (0: no cap), event body.
_JOIN = """
local entry, user = ARGV[6], ARGV[7]
local expires = now + tonumber(ARGV[9])
local known = redis.call('ZSCORE', KEYS[3], entry)
local n = tonumber(redis.call('HGET', KEYS[4], user) or '0')
local max = tonumber(ARGV[10])
if not known and n == 0 and max > 0 and redis.call('HEXISTS', KEYS[1], user) == 0
    and redis.call('HLEN', KEYS[1]) >= max then
  return {{-1, 'full'}, out}
end
redis.call('ZADD', KEYS[3], expires, entry)
if not known then n = redis.call('HINCRBY', KEYS[4], user, 1) end
redis.call('HSET', KEYS[1], user, ARGV[8])
redis.call('ZADD', KEYS[2], 'GT', expires, user)
keep()
local kind = 'update'
if not known and n == 1 then kind = 'join' end
return {{emit(kind, ARGV[11]), kind}, out}
"""

# ARGV[6]: entry.
_LEAVE = """
local before = redis.call('GET', KEYS[5])
drop_conn(ARGV[6])
if redis.call('GET', KEYS[5]) ~= before then return {1, out} end
return {0, out}
"""

# ARGV[6]: ttl; then per entry: entry, user, member JSON, event body.
_REFRESH = """
local expires = now + tonumber(ARGV[6])
local added = 0
for i = 7, #ARGV, 4 do
  local entry, user = ARGV[i], ARGV[i + 1]
  local known = redis.call('ZSCORE', KEYS[3], entry)
  redis.call('ZADD', KEYS[3], expires, entry)
  redis.call('ZADD', KEYS[2], 'GT', expires, user)
  if known then
    if redis.call('HEXISTS', KEYS[1], user) == 0 then
      redis.call('HSET', KEYS[1], user, ARGV[i + 2])
    end
  else
    added = added + 1
    local n = redis.call('HINCRBY', KEYS[4], user, 1)
    if n == 1 or redis.call('HEXISTS', KEYS[1], user) == 0 then
      redis.call('HSET', KEYS[1], user, ARGV[i + 2])
    end
    if n == 1 then emit('join', ARGV[i + 3]) end
  end
end
keep()
return {added, out}
"""

_REAP = """
reap()
-- This instance serves the channel: its version must outlive any idle spell (EXPIRE on a
-- missing key does nothing, so an absent channel stays absent).
redis.call('EXPIRE', KEYS[5], version_ttl)
redis.call('EXPIRE', KEYS[6], version_ttl)
return {state(), out}
"""

_SYNC = """
reap()
local s = state()
s[3] = redis.call('HGETALL', KEYS[1])
return {s, out}
"""


def hash_key(channel: str) -> str:
    return f"presence:{channel}"


def key_tag(channel: str) -> str:
    """The hash tag that puts a channel's other keys in the same cluster slot as its hash.

    Usually ``{presence:<channel>}``, which hashes like ``presence:<channel>``. A channel whose
    name carries braces changes how Redis hashes the hash key itself: then its own tag is
    reused, or (no usable tag, but a ``}`` that would cut ours short) a short tag found to land
    in the same slot.
    """
    key = hash_key(channel)
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start : end + 1]
    if "}" not in key:
        return f"{{{key}}}"
    return _slot_tag(key_slot(key.encode()))


@functools.lru_cache(maxsize=1024)
def _slot_tag(slot: int) -> str:
    # About 16,384 CRC16s at most, once per slot, only for channel names with stray braces.
    i = 0
    while key_slot(f"presence-slot-{i}".encode()) != slot:
        i += 1
    return f"{{presence-slot-{i}}}"


def expiry_key(channel: str) -> str:
    return f"{key_tag(channel)}:expiry"


def channel_keys(channel: str) -> list[str]:
    tag = key_tag(channel)
    suffixes = ("expiry", "conns", "count", "version", "epoch")
    return [hash_key(channel), *(f"{tag}:{suffix}" for suffix in suffixes)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisPresence:
    """By default the scripts PUBLISH the events themselves on ``presence.<channel>`` (classic
    Pub/Sub, the seed's channel), so their order is the version order. With
    ``publish_in_script=False`` (sharded Pub/Sub on a Cluster: ``presence.<c>`` is not in the
    keys' slot, so a script cannot SPUBLISH it) the scripts return the events and the store
    publishes them through ``start``'s ``publish`` right after; events of racing instances may
    then arrive crossed, and the gateway puts them back in order (``engine/presence.py``)."""

    def __init__(
        self,
        client: aioredis.Redis,
        ttl: int,
        max_members: int = 0,
        *,
        publish_in_script: bool = True,
    ) -> None:
        self._client = client
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._in_script = publish_in_script
        self._publish: Publish | None = None
        self._ttl = ttl
        # Longer than a member's expiry, so the reaper always finds what it has to announce.
        self._key_ttl = 2 * ttl + 5
        self._max_members = max_members
        self._join = client.register_script(_PRELUDE + _JOIN)
        self._leave = client.register_script(_PRELUDE + _LEAVE)
        self._refresh = client.register_script(_PRELUDE + _REFRESH)
        self._reap = client.register_script(_PRELUDE + _REAP)
        self._sync = client.register_script(_PRELUDE + _SYNC)

    async def start(self, publish: Publish) -> None:
        self._publish = publish

    def _head(self, channel: str) -> list[Any]:
        flag = "1" if self._in_script or self._publish is None else "0"
        # The Redis brokers' topic for this channel's presence: the scripts publish on it.
        return [topic(PRESENCE, channel), self._key_ttl, VERSION_TTL, encode(channel), flag]

    async def _call(self, script: Any, channel: str, args: list[Any], what: str) -> Any:
        try:
            result, events = await script(keys=channel_keys(channel), args=args)
        except RedisError as exc:
            raise PresenceError(f"redis presence {what} failed: {exc}") from exc
        await self._send(channel, events)
        return result

    async def _send(self, channel: str, events: list[bytes]) -> None:
        if events and self._publish is not None:
            for data in events:
                await self._publish(channel, data)

    async def join(self, channel: str, conn: str, member: Member) -> str:
        args = [
            *self._head(channel),
            f"{conn} {member.user_id}",
            member.user_id,
            encode(member),
            self._ttl,
            self._max_members,
            bus_presence_body(channel, member),
        ]
        seq, kind = await self._call(self._join, channel, args, "write")
        if seq == -1:
            raise PresenceFull(f"channel {channel!r} has {self._max_members} members already")
        return f"presence_{_text(kind)}"

    async def leave(self, channel: str, conn: str, user_id: str) -> bool:
        args = [*self._head(channel), f"{conn} {user_id}"]
        return bool(await self._call(self._leave, channel, args, "write"))

    async def refresh(self, entries: Sequence[Entry]) -> int:
        by_channel: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_channel[entry.channel].append(entry)
        calls: list[tuple[str, list[Any]]] = []
        for channel, group in by_channel.items():
            for start in range(0, len(group), REFRESH_BATCH):
                args = [*self._head(channel), self._ttl]
                for _, conn, member in group[start : start + REFRESH_BATCH]:
                    args += [
                        f"{conn} {member.user_id}",
                        member.user_id,
                        encode(member),
                        bus_presence_body(channel, member),
                    ]
                calls.append((channel, args))
        results = await self._run(self._refresh, calls, "write")
        return sum(int(r) for r in results)

    async def reap(self, channels: Collection[str]) -> dict[str, ChannelState]:
        names = list(channels)
        calls = [(c, self._head(c)) for c in names]
        results = await self._run(self._reap, calls, "reap")
        return {c: ChannelState(int(v), _text(e)) for c, (v, e) in zip(names, results, strict=True)}

    async def sync(self, channel: str) -> Snapshot:
        version, epoch, flat = await self._call(self._sync, channel, self._head(channel), "read")
        members = []
        for i in range(0, len(flat), 2):
            try:
                members.append(decode_member(flat[i + 1]))
            except msgspec.MsgspecError:
                members.append(Member(_text(flat[i])))  # a foreign writer's value: list the user
        return Snapshot(int(version), _text(epoch), members)

    async def _run(self, script: Any, calls: list[tuple[str, list[Any]]], what: str) -> list[Any]:
        """Many script calls: pipelined on one server; in turn on a Cluster, whose client
        refuses scripts in pipelines (each call goes to its channel's slot)."""
        replies: list[Any] = []
        try:
            for start in range(0, len(calls), PIPELINE_BATCH):
                batch = calls[start : start + PIPELINE_BATCH]
                if self._cluster:
                    # One by one: redis-py's cluster client races setting up new connections
                    # under concurrent first use ('NoneType' object has no attribute ...).
                    for channel, args in batch:
                        replies.append(await script(keys=channel_keys(channel), args=args))
                    continue
                async with self._client.pipeline(transaction=False) as pipe:
                    for channel, args in batch:
                        await script(keys=channel_keys(channel), args=args, client=pipe)
                    replies += await pipe.execute()
        except RedisError as exc:
            raise PresenceError(f"redis presence {what} failed: {exc}") from exc
        results = []
        for (channel, _), (result, events) in zip(calls, replies, strict=True):
            await self._send(channel, events)
            results.append(result)
        return results

    async def ping(self) -> None:
        """One PING (on a Cluster, to its default node); the liveness loop bounds its time."""
        try:
            await self._client.ping()
        except RedisError as exc:
            raise PresenceError(f"redis presence ping failed: {exc}") from exc

    async def close(self) -> None:
        await self._client.aclose()
