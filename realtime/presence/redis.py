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
or lose a leave, and events reach every subscriber in version order. Times are Redis's own
(``TIME``), so instances' clocks do not matter. Members a seed gateway wrote (no entries beside
the hash) are listed as the seed lists them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from realtime.errors import PresenceError
from realtime.messages import Member, bus_presence_body, decode_member, encode
from realtime.presence.base import ChannelState, Entry, PresenceFull, Publish, Snapshot

REFRESH_BATCH = 250  # connection entries per refresh script call
PIPELINE_BATCH = 200  # script calls per pipeline round trip
VERSION_TTL = 86_400  # an idle channel's version survives a day; after that it starts again

# KEYS: hash, expiry, conns, count, version, epoch.
# ARGV: topic, key ttl, version ttl, channel as JSON, then the script's own.
_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local topic = ARGV[1]
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
  redis.call('PUBLISH', topic, '{"type":"presence_' .. kind .. '",' .. body ..
    ',"seq":' .. v .. ',"epoch":"' .. epoch .. '"}')
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

# ARGV[5..]: entry, user, member JSON, ttl, max members (0: no cap), event body.
_JOIN = """
local entry, user = ARGV[5], ARGV[6]
local expires = now + tonumber(ARGV[8])
local known = redis.call('ZSCORE', KEYS[3], entry)
local n = tonumber(redis.call('HGET', KEYS[4], user) or '0')
local max = tonumber(ARGV[9])
if not known and n == 0 and max > 0 and redis.call('HEXISTS', KEYS[1], user) == 0
    and redis.call('HLEN', KEYS[1]) >= max then
  return {-1, 'full'}
end
redis.call('ZADD', KEYS[3], expires, entry)
if not known then n = redis.call('HINCRBY', KEYS[4], user, 1) end
redis.call('HSET', KEYS[1], user, ARGV[7])
redis.call('ZADD', KEYS[2], 'GT', expires, user)
keep()
local kind = 'update'
if not known and n == 1 then kind = 'join' end
return {emit(kind, ARGV[10]), kind}
"""

# ARGV[5]: entry.
_LEAVE = """
local before = redis.call('GET', KEYS[5])
drop_conn(ARGV[5])
if redis.call('GET', KEYS[5]) ~= before then return 1 end
return 0
"""

# ARGV[5]: ttl; then per entry: entry, user, member JSON, event body.
_REFRESH = """
local expires = now + tonumber(ARGV[5])
local added = 0
for i = 6, #ARGV, 4 do
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
return added
"""

_REAP = """
reap()
return state()
"""

_SYNC = """
reap()
local s = state()
s[3] = redis.call('HGETALL', KEYS[1])
return s
"""


def hash_key(channel: str) -> str:
    return f"presence:{channel}"


def expiry_key(channel: str) -> str:
    # The hash tag puts it in the hash's cluster slot: {presence:c} hashes like presence:c.
    return f"{{presence:{channel}}}:expiry"


def channel_keys(channel: str) -> list[str]:
    tag = f"{{presence:{channel}}}"
    suffixes = ("expiry", "conns", "count", "version", "epoch")
    return [hash_key(channel), *(f"{tag}:{suffix}" for suffix in suffixes)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisPresence:
    """The presence events go out from the scripts on Redis Pub/Sub ``presence.<channel>``: the
    gateway's presence bus on the same Redis."""

    def __init__(self, client: aioredis.Redis, ttl: int, max_members: int = 0) -> None:
        self._client = client
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
        """Nothing to wire: the scripts publish by themselves."""

    def _head(self, channel: str) -> list[Any]:
        return [f"presence.{channel}", self._key_ttl, VERSION_TTL, encode(channel)]

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
        try:
            seq, kind = await self._join(keys=channel_keys(channel), args=args)
        except RedisError as exc:
            raise PresenceError(f"redis presence write failed: {exc}") from exc
        if seq == -1:
            raise PresenceFull(f"channel {channel!r} has {self._max_members} members already")
        return f"presence_{_text(kind)}"

    async def leave(self, channel: str, conn: str, user_id: str) -> bool:
        args = [*self._head(channel), f"{conn} {user_id}"]
        try:
            return bool(await self._leave(keys=channel_keys(channel), args=args))
        except RedisError as exc:
            raise PresenceError(f"redis presence write failed: {exc}") from exc

    async def refresh(self, entries: Sequence[Entry]) -> int:
        by_channel: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_channel[entry.channel].append(entry)
        calls: list[tuple[list[str], list[Any]]] = []
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
                calls.append((channel_keys(channel), args))
        results = await self._run(self._refresh, calls, "write")
        return sum(int(r) for r in results)

    async def reap(self, channels: Collection[str]) -> dict[str, ChannelState]:
        names = list(channels)
        calls = [(channel_keys(c), self._head(c)) for c in names]
        results = await self._run(self._reap, calls, "reap")
        return {c: ChannelState(int(v), _text(e)) for c, (v, e) in zip(names, results, strict=True)}

    async def sync(self, channel: str) -> Snapshot:
        try:
            version, epoch, flat = await self._sync(
                keys=channel_keys(channel), args=self._head(channel)
            )
        except RedisError as exc:
            raise PresenceError(f"redis presence read failed: {exc}") from exc
        members = []
        for i in range(0, len(flat), 2):
            try:
                members.append(decode_member(flat[i + 1]))
            except msgspec.MsgspecError:
                members.append(Member(_text(flat[i])))  # a foreign writer's value: list the user
        return Snapshot(int(version), _text(epoch), members)

    async def _run(
        self, script: Any, calls: list[tuple[list[str], list[Any]]], what: str
    ) -> list[Any]:
        results: list[Any] = []
        try:
            for start in range(0, len(calls), PIPELINE_BATCH):
                async with self._client.pipeline(transaction=False) as pipe:
                    for keys, args in calls[start : start + PIPELINE_BATCH]:
                        await script(keys=keys, args=args, client=pipe)
                    results += await pipe.execute()
        except RedisError as exc:
            raise PresenceError(f"redis presence {what} failed: {exc}") from exc
        return results

    async def close(self) -> None:
        await self._client.aclose()
