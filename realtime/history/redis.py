"""History in Redis Streams, on the presence Redis whatever MQ carries broadcasts.

Per history channel ``c``, both keys in one cluster slot (the hash tag ``{history:c}``: both
names share everything up to the first ``}``, so they hash alike even when ``c`` holds braces):

- ``{history:c}:s``: a stream whose entry ids are the offsets (``<offset>-0``), field ``d`` =
  the bus message as published, with its ``offset`` and ``epoch``; trimmed to ``size``
  entries on each append (exact ``MAXLEN``: one eviction per append, and what a client can
  recover stays predictable);
- ``{history:c}:m``: hash ``offset`` (the last one given) and ``epoch``.

Both expire ``ttl`` seconds after the last append. A channel whose hash is gone (expired, or a
Redis that restarted without its data) starts again at offset 1 under a new epoch, from Redis's
own clock; a stream left without its hash is deleted then, so offsets are never reused.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from realtime.errors import HistoryError
from realtime.history.base import Page, Position, complete

# KEYS: stream, meta. ARGV[1]: ttl.
_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local ttl = tonumber(ARGV[1])
local function epoch()
  local e = redis.call('HGET', KEYS[2], 'epoch')
  if e then return e end
  local clock = redis.call('TIME')
  e = clock[1] .. '.' .. clock[2]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', e, 'offset', 0)
  redis.call('EXPIRE', KEYS[2], ttl)
  return e
end
"""

# ARGV[2]: size; ARGV[3]: the bus message without its closing brace.
# Returns {offset, epoch}.
_APPEND = """
local e = epoch()
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
local data = ARGV[3] .. ',"offset":' .. offset .. ',"epoch":"' .. e .. '"}'
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], offset .. '-0', 'd', data)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return {offset, e}
"""

# ARGV[2]: after; ARGV[3]: limit. Returns {offset, epoch, first, id, data, id, data, ...}.
_READ = """
local e = epoch()
local offset = tonumber(redis.call('HGET', KEYS[2], 'offset') or '0')
local first = offset + 1
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #head > 0 then first = tonumber(string.match(head[1][1], '^%d+')) end
local out = {offset, e, first}
local after, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
if limit > 0 and after < offset then
  for _, row in ipairs(redis.call('XRANGE', KEYS[1], (after + 1) .. '-0', '+', 'COUNT', limit)) do
    out[#out + 1] = row[1]
    out[#out + 1] = row[2][2]
  end
end
return out
"""


def history_keys(channel: str) -> list[str]:
    tag = "{history:" + channel + "}"
    return [tag + ":s", tag + ":m"]


class RedisHistory:
    def __init__(self, client: aioredis.Redis, size: int, ttl: int) -> None:
        self._client = client
        self.size = size
        self.ttl = ttl
        self._append = client.register_script(_PRELUDE + _APPEND)
        self._read = client.register_script(_PRELUDE + _READ)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, script: Any, channel: str, args: list[Any], what: str) -> Any:
        try:
            return await script(keys=history_keys(channel), args=[self.ttl, *args])
        except RedisError as exc:
            raise HistoryError(f"history {what} failed: {type(exc).__name__}: {exc}") from exc

    async def append(self, channel: str, body: bytes) -> tuple[Position, bytes]:
        offset, epoch = await self._call(self._append, channel, [self.size, body], "append")
        position = Position(int(offset), _text(epoch))
        return position, complete(body, position.offset, position.epoch)

    async def read(self, channel: str, after: int, limit: int) -> Page:
        reply = await self._call(self._read, channel, [after, max(limit, 0)], "read")
        offset, epoch, first, *rows = reply
        entries = [
            (int(_text(rows[i]).partition("-")[0]), bytes(rows[i + 1]))
            for i in range(0, len(rows), 2)
        ]
        return Page(entries, Position(int(offset), _text(epoch)), int(first))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
