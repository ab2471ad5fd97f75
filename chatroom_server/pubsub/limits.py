"""Counters behind the abuse limits: a small contract and its in-process backend.

Three kinds of counter, each under a string key:
- a token bucket (`take`): `rate` tokens a second, at most `burst` saved up;
- a failure count over a window (`failed`, `locked`, `clear`);
- connection slots (`acquire`, `release`, `refresh`): members with an expiry that
  their holder keeps pushing forward, so a holder that dies stops counting.

`make_limits` picks the backend like `make_broker`: this module's
`MemoryLimits` for one process, `RedisLimits` (limits_redis.py) when a Redis
URL is configured, so that every worker and host shares one count. The memory
backend is also the Redis one's fallback while Redis is unreachable.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

V = TypeVar("V")


class Limits(Protocol):
    def take_now(self, key: str, rate: float, burst: int) -> float | None:
        """`take` answered without I/O when this backend can (memory); else None."""

    async def take(self, key: str, rate: float, burst: int) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is there."""

    async def failed(self, key: str, window: float) -> None:
        """Count a failure; the count lapses `window` seconds after its first failure."""

    async def locked(self, key: str, limit: int) -> float:
        """Seconds until the count lapses when it reached `limit`; else 0.0."""

    async def clear(self, key: str) -> None:
        """Forget the key's failures (after a success)."""

    async def acquire(self, key: str, member: str, limit: int, ttl: float) -> bool:
        """Hold a slot for `member` for `ttl` seconds unless `limit` are held: False then."""

    async def release(self, key: str, member: str) -> None:
        """Give a slot back (a member not held is ignored)."""

    async def refresh(self, slots: Iterable[tuple[str, str]], ttl: float) -> None:
        """Keep held (key, member) slots from expiring for another `ttl` seconds."""

    async def close(self) -> None: ...


class Bounded(OrderedDict[str, V], Generic[V]):
    """A table that forgets its least recently used keys past `max_keys`: a flood
    of new keys (random emails, spoofed addresses) cannot grow memory without end."""

    def __init__(self, max_keys: int) -> None:
        super().__init__()
        self.max_keys = max_keys

    def put(self, key: str, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.max_keys:
            self.popitem(last=False)


class MemoryLimits:
    """This process's counters. Slots are not bounded by `max_keys`: they exist only
    for open sockets, which the connection limits themselves bound."""

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._buckets: Bounded[tuple[float, float]] = Bounded(max_keys)  # tokens, stamp
        self._failures: Bounded[tuple[int, float]] = Bounded(max_keys)  # count, lapses at
        self._slots: dict[str, dict[str, float]] = {}  # key -> member -> expiry

    def take_now(self, key: str, rate: float, burst: int) -> float:
        now = self._clock()
        tokens, stamp = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - stamp) * rate)
        if tokens >= 1.0:
            self._buckets.put(key, (tokens - 1.0, now))
            return 0.0
        self._buckets.put(key, (tokens, now))
        return (1.0 - tokens) / rate

    async def take(self, key: str, rate: float, burst: int) -> float:
        return self.take_now(key, rate, burst)

    async def failed(self, key: str, window: float) -> None:
        now = self._clock()
        count, lapses = self._failures.get(key, (0, 0.0))
        if lapses <= now:
            count, lapses = 0, now + window
        self._failures.put(key, (count + 1, lapses))

    async def locked(self, key: str, limit: int) -> float:
        count, lapses = self._failures.get(key, (0, 0.0))
        wait = lapses - self._clock()
        return wait if count >= limit and wait > 0 else 0.0

    async def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def acquire_now(self, key: str, member: str, limit: int, ttl: float) -> bool:
        now = self._clock()
        held = self._slots.setdefault(key, {})
        for gone in [m for m, expiry in held.items() if expiry <= now]:
            del held[gone]
        if member not in held and len(held) >= limit:
            if not held:
                del self._slots[key]
            return False
        held[member] = now + ttl
        return True

    async def acquire(self, key: str, member: str, limit: int, ttl: float) -> bool:
        return self.acquire_now(key, member, limit, ttl)

    def release_now(self, key: str, member: str) -> None:
        held = self._slots.get(key)
        if held is not None:
            held.pop(member, None)
            if not held:
                del self._slots[key]

    async def release(self, key: str, member: str) -> None:
        self.release_now(key, member)

    def refresh_now(self, slots: Iterable[tuple[str, str]], ttl: float) -> None:
        expiry = self._clock() + ttl
        for key, member in slots:
            held = self._slots.get(key)
            if held is not None and member in held:
                held[member] = expiry

    async def refresh(self, slots: Iterable[tuple[str, str]], ttl: float) -> None:
        self.refresh_now(slots, ttl)

    async def close(self) -> None:
        pass


def make_limits(url: str | None, prefix: str, cluster: bool = False) -> Limits:
    """In-process counters, or counters shared in Redis when a Redis URL is configured."""
    if url is None:
        return MemoryLimits()
    from .limits_redis import RedisLimits

    return RedisLimits(url, prefix, cluster=cluster)
