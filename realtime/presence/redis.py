"""Presence in Redis: exact across connections and instances, readable by seed gateways.

Per channel ``c``, all in one cluster slot (``presence:c`` hashes like the tag ``{presence:c}``):

- ``presence:c``: hash user id -> ``{"user_id","meta","updated_at"}`` JSON, as the seed writes it;
- ``{presence:c}:expiry``: sorted set user id -> the latest expiry among the user's connections;
- ``{presence:c}:conns``: sorted set ``"<connection id> <user id>"`` -> that entry's expiry;
- ``{presence:c}:count``: hash user id -> how many connection entries the user has;
- ``{presence:c}:version``: the channel's version, incremented with every event;
- ``{presence:c}:epoch``: set when the version starts from 1, so a reset is visible;
- ``{presence:c}:graced``: hash user id -> the user's connections in their leave grace
  (closed, not announced yet), space-separated connection ids;
- ``{presence:c}:left``: sorted set of entries that left (or closed) -> until when the refresh
  must not re-add them (a refresh's snapshot of this instance's entries may be older than the
  leave: without this, the refresh brought left entries back, refreshed, with no one to leave
  them again).

With webhooks on, ``realtime:webhooks`` (a stream) gets each user's first arrival and last
departure and each channel's first and last member, written by the same script as the change
(``realtime/webhooks/redis.py`` delivers them; docs/webhooks.md).

Every change runs as one Lua script that decides join/update/leave, increments the version and
PUBLISHes the event on ``presence.c`` with that ``seq``: two instances racing cannot double-join
or lose a leave, and events reach every subscriber in version order (on sharded Pub/Sub the
caller publishes them, see :class:`RedisPresence`). Times are Redis's own
(``TIME``), so instances' clocks do not matter. Members a seed gateway wrote (no entries beside
the hash) are listed as the seed lists them.
"""

from __future__ import annotations

import functools
import math
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
# The webhook stream and its drop counter (realtime/webhooks/redis.py reads them). One pair per
# Redis: not in the channels' slots, so webhooks are refused on a Cluster.
WEBHOOK_STREAM = "realtime:webhooks"
WEBHOOK_DROPPED = "realtime:webhooks:dropped"
WEBHOOK_GROUP = "realtime-webhooks"  # the one consumer group every instance reads with

# KEYS: hash, expiry, conns, count, version, epoch, graced, left; with webhooks on, the
# webhook stream and its drop counter.
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

-- Webhook events, when webhooks are on (KEYS[9]: the stream every instance's deliverer reads,
-- KEYS[10]: how many events a full stream dropped). Written in the same atomic step as the
-- change that causes them, so each cluster event is in the stream exactly once, whichever
-- instance joined, left or reaped. The stream holds at most HOOK_MAX undelivered events.
local function hook(name, user)
  if redis.call('XLEN', KEYS[9]) >= HOOK_MAX then
    -- The oldest entry goes. One an instance is already sending (pending in the group) is
    -- still delivered from its memory: only one nobody took is lost, and counted. pcall: a
    -- stream Redis lost (restart) has no group until a deliverer makes it again.
    local oldest = redis.call('XRANGE', KEYS[9], '-', '+', 'COUNT', 1)[1][1]
    local ok, pending = pcall(redis.call, 'XPENDING', KEYS[9], 'realtime-webhooks',
      oldest, oldest, 1)
    if not ok or #pending == 0 then redis.call('INCR', KEYS[10]) end
  end
  local fields = {'name', name, 'channel', ARGV[4], 'time_ms', now_ms}
  if user then
    fields[#fields + 1] = 'user_id'
    fields[#fields + 1] = user
  end
  redis.call('XADD', KEYS[9], 'MAXLEN', HOOK_MAX, '*', unpack(fields))
end

-- Occupied and vacated follow the members (the hash), which is what the cluster counts.
local function hooks(kind, user)
  if #KEYS < 9 then return end
  if kind == 'join' then
    if redis.call('HLEN', KEYS[1]) == 1 then hook('channel_occupied') end
    hook('member_added', user)
  elseif kind == 'leave' then
    hook('member_removed', user)
    if redis.call('HLEN', KEYS[1]) == 0 then hook('channel_vacated') end
  end
end

local function keep()
  for _, i in ipairs({1, 2, 3, 4, 7}) do redis.call('EXPIRE', KEYS[i], key_ttl) end
end

-- The entry left or closed: a refresh whose snapshot predates that must not re-add it. Marked
-- for key_ttl (longer than any refresh stays on its way); old marks go as new ones come.
local function mark_left(entry)
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
  redis.call('ZADD', KEYS[8], now + key_ttl, entry)
  redis.call('EXPIRE', KEYS[8], key_ttl)
end

-- The user's connections in their leave grace: entries still counted, no longer refreshed.
local function graced(user)
  local conns = {}
  local list = redis.call('HGET', KEYS[7], user)
  if list then
    for conn in string.gmatch(list, '%S+') do conns[#conns + 1] = conn end
  end
  return conns
end

local function is_graced(user, conn)
  for _, c in ipairs(graced(user)) do
    if c == conn then return true end
  end
  return false
end

local function set_graced(user, conns)
  if #conns == 0 then
    redis.call('HDEL', KEYS[7], user)
  else
    redis.call('HSET', KEYS[7], user, table.concat(conns, ' '))
  end
end

local function ungrace(user, conn)
  local conns = graced(user)
  for i, c in ipairs(conns) do
    if c == conn then
      table.remove(conns, i)
      set_graced(user, conns)
      return
    end
  end
end

-- Drop the user's graced entries (no event: the caller decides what the user's change is).
local function forget_graced(user)
  for _, conn in ipairs(graced(user)) do
    if redis.call('ZREM', KEYS[3], conn .. ' ' .. user) == 1 then
      redis.call('HINCRBY', KEYS[4], user, -1)
    end
  end
  redis.call('HDEL', KEYS[7], user)
end

local function drop_user(user)
  redis.call('HDEL', KEYS[4], user)
  redis.call('HDEL', KEYS[7], user)
  redis.call('ZREM', KEYS[2], user)
  if redis.call('HDEL', KEYS[1], user) == 1 then
    local u = cjson.encode(user)
    emit('leave', '"channel_id":' .. ARGV[4] .. ',"user_id":' .. u ..
      ',"meta":{"user_id":' .. u .. '},"ts":' .. now_ms)
    hooks('leave', user)
  end
end

local function split(entry)
  local space = string.find(entry, ' ', 1, true)
  return string.sub(entry, 1, space - 1), string.sub(entry, space + 1)
end

local function drop_conn(entry)
  if redis.call('ZREM', KEYS[3], entry) == 0 then return end
  local conn, user = split(entry)
  ungrace(user, conn)
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

# ARGV[6..]: entry, user, member JSON, ttl, max members (0: no cap), event body, the member
# JSON up to its updated_at (user and meta: what a return within the leave grace compares),
# "1" when a leave grace is set. Returns {seq, kind}: seq -1 when full; kind 'none' (seq 0)
# when the user came back within the grace with the same meta, which is no change at all;
# with a grace, so is a new connection of a present user with the same meta (the old one's
# close may not be known yet: a reconnect often races it).
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
-- Every entry of the user is in its leave grace: the user is back before the leave was
-- announced. Observers saw nothing go, so they see nothing come: only a new meta is news.
local back = not known and n > 0 and n == #graced(user)
if back then
  forget_graced(user)
  n = tonumber(redis.call('HGET', KEYS[4], user) or '0')
end
redis.call('ZADD', KEYS[3], expires, entry)
redis.call('ZREM', KEYS[8], entry)  -- joined again after a presence_leave: refreshed again
if not known then n = redis.call('HINCRBY', KEYS[4], user, 1) end
redis.call('ZADD', KEYS[2], 'GT', expires, user)
local again = back or (ARGV[13] == '1' and not known and n > 1)
local stored = again and redis.call('HGET', KEYS[1], user)
if again and stored and string.sub(stored, 1, #ARGV[12]) == ARGV[12] then
  keep()
  return {{0, 'none'}, out}
end
redis.call('HSET', KEYS[1], user, ARGV[8])
keep()
local kind = 'update'
if (not known and n == 1 and not back) or (back and not stored) then kind = 'join' end
local seq = emit(kind, ARGV[11])
if kind == 'join' then hooks('join', user) end
return {{seq, kind}, out}
"""

# ARGV[6]: entry.
_LEAVE = """
local before = redis.call('GET', KEYS[5])
-- Marked even when not found: a join cut short (its connection closed) may still be on its way.
mark_left(ARGV[6])
if redis.call('ZSCORE', KEYS[3], ARGV[6]) then
  local _, user = split(ARGV[6])
  drop_conn(ARGV[6])
  -- A deliberate leave is immediate: connections of the user still in their leave grace
  -- (closed earlier) do not hold the member.
  local n = tonumber(redis.call('HGET', KEYS[4], user) or '0')
  if n > 0 and n == #graced(user) then
    forget_graced(user)
    drop_user(user)
  end
end
if redis.call('GET', KEYS[5]) ~= before then return {1, out} end
return {0, out}
"""

# ARGV[6]: entry, ARGV[7]: grace (seconds). A closed connection's entry stays, unrefreshed,
# until the grace is over, so the user's leave is announced then (by the reaper of any
# instance serving the channel), unless the user joins again first. Returns 1 when the
# entry lingers, 0 when it was gone already or another live connection holds the user (then
# it is dropped at once, as without a grace: that is no event either).
_LINGER = """
local entry = ARGV[6]
mark_left(entry)
if not redis.call('ZSCORE', KEYS[3], entry) then return {0, out} end
local conn, user = split(entry)
local conns = graced(user)
for _, c in ipairs(conns) do
  if c == conn then return {0, out} end
end
if tonumber(redis.call('HGET', KEYS[4], user) or '0') > #conns + 1 then
  drop_conn(entry)
  return {0, out}
end
local expires = now + tonumber(ARGV[7])
redis.call('ZADD', KEYS[3], expires, entry)
redis.call('ZADD', KEYS[2], 'GT', expires, user)
conns[#conns + 1] = conn
set_graced(user, conns)
keep()
return {1, out}
"""

# ARGV[6]: ttl; then per entry: entry, user, member JSON, event body.
_REFRESH = """
local expires = now + tonumber(ARGV[6])
local added = 0
local any_graced = redis.call('EXISTS', KEYS[7]) == 1
for i = 7, #ARGV, 4 do
  local entry, user = ARGV[i], ARGV[i + 1]
  local known = redis.call('ZSCORE', KEYS[3], entry)
  -- An entry whose connection closed while this refresh was on its way keeps its grace.
  local lingers = known and any_graced and is_graced(user, (split(entry)))
  -- Not found and marked: it left (or closed) after this refresh's snapshot was taken, so
  -- nothing here holds it any more. Only an entry the store lost (data loss, or reaped while
  -- this instance was too slow to refresh) is re-added.
  local left = not known and redis.call('ZSCORE', KEYS[8], entry)
  if not (lingers or left) then
    redis.call('ZADD', KEYS[3], expires, entry)
    redis.call('ZADD', KEYS[2], 'GT', expires, user)
  end
  if lingers or left then
    -- nothing: the reaper ends a lingering entry at the end of its grace
  elseif known then
    if redis.call('HEXISTS', KEYS[1], user) == 0 then
      redis.call('HSET', KEYS[1], user, ARGV[i + 2])
    end
  else
    added = added + 1
    local n = redis.call('HINCRBY', KEYS[4], user, 1)
    if n == 1 or redis.call('HEXISTS', KEYS[1], user) == 0 then
      redis.call('HSET', KEYS[1], user, ARGV[i + 2])
    end
    if n == 1 then
      emit('join', ARGV[i + 3])
      hooks('join', user)
    end
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
    suffixes = ("expiry", "conns", "count", "version", "epoch", "graced", "left")
    return [hash_key(channel), *(f"{tag}:{suffix}" for suffix in suffixes)]


def member_prefix(data: bytes) -> bytes:
    """A member's stored JSON up to its ``updated_at``: the same bytes mean the same user and
    meta (msgspec writes the fields in order and a meta's keys as given)."""
    cut = data.rindex(b',"updated_at":')
    return data[: cut + len(b',"updated_at":')]


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
        leave_grace: float = 0.0,
        webhook_queue: int = 0,
    ) -> None:
        self._client = client
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._in_script = publish_in_script
        self._publish: Publish | None = None
        self._ttl = ttl
        self._grace = leave_grace
        # Longer than a member's expiry or grace, so the reaper finds what it has to announce.
        self._key_ttl = 2 * ttl + 5 + math.ceil(leave_grace)
        self._max_members = max_members
        # With webhooks on (a queue size), every script also writes the webhook stream.
        self._hook_keys = [WEBHOOK_STREAM, WEBHOOK_DROPPED] if webhook_queue > 0 else []
        prelude = _PRELUDE.replace("HOOK_MAX", str(max(webhook_queue, 1)))
        self._join = client.register_script(prelude + _JOIN)
        self._leave = client.register_script(prelude + _LEAVE)
        self._linger = client.register_script(prelude + _LINGER)
        self._refresh = client.register_script(prelude + _REFRESH)
        self._reap = client.register_script(prelude + _REAP)
        self._sync = client.register_script(prelude + _SYNC)

    def _keys(self, channel: str) -> list[str]:
        return channel_keys(channel) + self._hook_keys

    async def start(self, publish: Publish) -> None:
        self._publish = publish

    def _head(self, channel: str) -> list[Any]:
        flag = "1" if self._in_script or self._publish is None else "0"
        # The Redis brokers' topic for this channel's presence: the scripts publish on it.
        return [topic(PRESENCE, channel), self._key_ttl, VERSION_TTL, encode(channel), flag]

    async def _call(self, script: Any, channel: str, args: list[Any], what: str) -> Any:
        try:
            result, events = await script(keys=self._keys(channel), args=args)
        except RedisError as exc:
            raise PresenceError(f"redis presence {what} failed: {exc}") from exc
        await self._send(channel, events)
        return result

    async def _send(self, channel: str, events: list[bytes]) -> None:
        if events and self._publish is not None:
            for data in events:
                await self._publish(channel, data)

    async def join(self, channel: str, conn: str, member: Member) -> str:
        data = encode(member)
        args = [
            *self._head(channel),
            f"{conn} {member.user_id}",
            member.user_id,
            data,
            self._ttl,
            self._max_members,
            bus_presence_body(channel, member),
            member_prefix(data),
            "1" if self._grace > 0 else "0",
        ]
        seq, kind = await self._call(self._join, channel, args, "write")
        if seq == -1:
            raise PresenceFull(f"channel {channel!r} has {self._max_members} members already")
        kind = _text(kind)
        return "" if kind == "none" else f"presence_{kind}"

    async def leave(self, channel: str, conn: str, user_id: str) -> bool:
        args = [*self._head(channel), f"{conn} {user_id}"]
        return bool(await self._call(self._leave, channel, args, "write"))

    async def linger(self, channel: str, conn: str, user_id: str) -> bool:
        args = [*self._head(channel), f"{conn} {user_id}", self._grace]
        return bool(await self._call(self._linger, channel, args, "write"))

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
                        replies.append(await script(keys=self._keys(channel), args=args))
                    continue
                async with self._client.pipeline(transaction=False) as pipe:
                    for channel, args in batch:
                        await script(keys=self._keys(channel), args=args, client=pipe)
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
