"""The limit counters in Redis, shared by every worker and host.

Keys (all under `{prefix}:limit:`, all with an expiry so nothing stays):
  b:<key>  token bucket, a hash {t: tokens, s: stamp in ms}; expires once it would be full
  f:<key>  failure count (INCR); expires `window` after its first failure
  c:<key>  connection slots, a sorted set: member = connection ID, score = expiry (ms);
           its holder refreshes it every TTL/3, so a crashed host's members lapse
Each operation is one Lua script (redis-py's `register_script`: EVALSHA, and
EVAL once when Redis does not know the script yet), timed by the Redis server's
clock so that hosts whose clocks disagree still agree on a window. On a Redis
Cluster a script may only touch keys of one hash slot: every script but the
refresh takes one key, and the refresh is sent once per slot.

While Redis is unreachable the counts fall back to this process's own
(`MemoryLimits`): the limits still hold per process and nobody is refused for
the outage. One warning per outage; Redis is tried again every `retry` seconds
meanwhile, so requests do not each wait for a timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from redis.crc import key_slot

from .limits import MemoryLimits
from .redis_connect import FAILURES, Client, make_client

log = logging.getLogger("chatroom_server.pubsub")

_FAILURES = FAILURES
T = TypeVar("T")

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] bucket; ARGV rate (per s), burst. Returns the wait in ms (0: taken).
_TAKE = (
    _NOW_MS
    + """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 't', 's')
local tokens, stamp = tonumber(b[1]), tonumber(b[2])
if tokens == nil or stamp == nil then tokens, stamp = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate / 1000)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""
)

# KEYS[1] counter; ARGV window (ms).
_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""

# KEYS[1] counter; ARGV limit. The ms until it lapses when at the limit, else 0.
_LOCKED = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n < tonumber(ARGV[1]) then return 0 end
return math.max(redis.call('PTTL', KEYS[1]), 1)
"""

# KEYS[1] slot set; ARGV member, limit, ttl (ms). 1 when held.
_ACQUIRE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""
)

# KEYS slot sets; ARGV[1] ttl (ms), then one member per key. XX: a member released
# meanwhile is not brought back.
_REFRESH = (
    _NOW_MS
    + """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', now + ttl, ARGV[i + 1]) > 0 then
    redis.call('PEXPIRE', key, ttl)
  end
end
return 0
"""
)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisLimits:
    def __init__(
        self,
        url: str,
        prefix: str,
        timeout: float = 1.0,
        retry: float = 1.0,
        cluster: bool = False,
    ) -> None:
        # Its own client: a slow limit call never queues behind pub/sub or presence.
        self._redis: Client = make_client(url, cluster, timeout)
        self._cluster = cluster
        self._prefix = f"{prefix}:limit:"
        self._local = MemoryLimits()
        self._retry = retry
        self._down_until: float | None = None  # set while Redis is away
        self._take = self._redis.register_script(_TAKE)
        self._fail = self._redis.register_script(_FAIL)
        self._locked = self._redis.register_script(_LOCKED)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._refresh = self._redis.register_script(_REFRESH)

    @property
    def shared(self) -> bool:
        """False while the counts fall back to this process's own."""
        return self._down_until is None

    def _skip_redis(self) -> bool:
        return self._down_until is not None and time.monotonic() < self._down_until

    async def _shared(
        self, call: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]
    ) -> T:
        if self._skip_redis():
            return await local()
        try:
            result = await call()
        except _FAILURES as exc:
            if self._down_until is None:
                log.warning(
                    "Redis is unreachable (%s): abuse limits are counted per process "
                    "until it is back",
                    type(exc).__name__,
                )
            self._down_until = time.monotonic() + self._retry
            return await local()
        if self._down_until is not None:
            self._down_until = None
            log.info("Redis is back: abuse limits are shared again")
        return result

    def take_now(self, key: str, rate: float, burst: int) -> float | None:
        # During an outage the answer is local anyway: no await on the message path.
        return self._local.take_now(key, rate, burst) if self._skip_redis() else None

    async def take(self, key: str, rate: float, burst: int) -> float:
        async def shared() -> float:
            wait = await self._take(keys=[self._prefix + "b:" + key], args=[rate, burst])
            return int(wait) / 1000

        return await self._shared(shared, lambda: self._local.take(key, rate, burst))

    async def failed(self, key: str, window: float) -> None:
        async def shared() -> None:
            await self._fail(keys=[self._prefix + "f:" + key], args=[_ms(window)])

        await self._shared(shared, lambda: self._local.failed(key, window))

    async def locked(self, key: str, limit: int) -> float:
        async def shared() -> float:
            wait = await self._locked(keys=[self._prefix + "f:" + key], args=[limit])
            return int(wait) / 1000

        return await self._shared(shared, lambda: self._local.locked(key, limit))

    async def clear(self, key: str) -> None:
        async def shared() -> None:
            await self._redis.delete(self._prefix + "f:" + key)

        await self._shared(shared, lambda: self._local.clear(key))

    async def acquire(self, key: str, member: str, limit: int, ttl: float) -> bool:
        # The local table mirrors every slot this process holds, without a limit:
        # should Redis go away, this process's own sockets are what the fallback counts.
        self._local.acquire_now(key, member, 2**31, ttl)

        async def shared() -> bool:
            args: list[Any] = [member, limit, _ms(ttl)]
            return bool(int(await self._acquire(keys=[self._prefix + "c:" + key], args=args)))

        async def local() -> bool:
            self._local.release_now(key, member)
            return self._local.acquire_now(key, member, limit, ttl)

        held = await self._shared(shared, local)
        if not held:
            self._local.release_now(key, member)
        return held

    async def release(self, key: str, member: str) -> None:
        self._local.release_now(key, member)

        async def shared() -> None:
            await self._redis.zrem(self._prefix + "c:" + key, member)

        async def lapses() -> None:
            pass  # in Redis the member lapses by itself, as a crashed host's do

        await self._shared(shared, lapses)

    async def refresh(self, slots: Iterable[tuple[str, str]], ttl: float) -> None:
        items = list(slots)
        self._local.refresh_now(items, ttl)
        for chunk in self._refresh_batches(items):

            async def shared(chunk: list[tuple[str, str]] = chunk) -> None:
                keys = [key for key, _ in chunk]
                args: list[Any] = [_ms(ttl), *(member for _, member in chunk)]
                await self._refresh(keys=keys, args=args)

            async def nothing() -> None:
                pass

            await self._shared(shared, nothing)

    def _refresh_batches(self, items: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
        """(Redis key, member) batches of at most 500 (bounded script calls with many
        sockets), each within one hash slot on a cluster."""
        groups: dict[int, list[tuple[str, str]]] = {}
        for key, member in items:
            name = self._prefix + "c:" + key
            slot = key_slot(name.encode()) if self._cluster else 0
            groups.setdefault(slot, []).append((name, member))
        return [
            group[start : start + 500]
            for group in groups.values()
            for start in range(0, len(group), 500)
        ]

    async def close(self) -> None:
        await self._redis.aclose()
