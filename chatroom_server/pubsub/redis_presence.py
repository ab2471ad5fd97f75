"""Presence in Redis: sorted sets scored by expiry time, refreshed by each host.

Per room R:
  {prefix}:presence:{R}          users present: member "<user_id>|<name>", score = expiry
  {prefix}:presence:{R}:u:<uid>  that user's connections: member "<host>|<conn>", score = expiry
Readers ignore scores in the past, so a host that died stops counting within the TTL.
Scripts keep "add, then am I the first?" and "remove, then am I the last?" atomic.
The hash tag {R} puts a room's keys in one slot of a Redis Cluster, where a script
may only touch keys of one slot (and `list` is one node's pipeline); the same
names serve a standalone Redis.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from ..domain import Presence
from . import BrokerUnavailable
from .presence import Entry
from .redis_connect import FAILURES, Client, make_client

_FAILURES = FAILURES

_ADD = """
local now, expiry, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], expiry, ARGV[4])
redis.call('ZADD', KEYS[1], expiry, ARGV[5])
redis.call('EXPIRE', KEYS[1], ttl * 2)
redis.call('EXPIRE', KEYS[2], ttl * 2)
return redis.call('ZCARD', KEYS[2])
"""

_REMOVE = """
local now = tonumber(ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local left = redis.call('ZCARD', KEYS[2])
if left == 0 then redis.call('ZREM', KEYS[1], ARGV[3]) end
return left
"""


class RedisPresence:
    def __init__(
        self, url: str, prefix: str, ttl: float, timeout: float = 1.5, cluster: bool = False
    ) -> None:
        self._redis: Client = make_client(url, cluster, timeout)
        self._prefix = f"{prefix}:presence:"
        self._host = uuid.uuid4().hex[:12]
        self._ttl = max(1, int(ttl))

    def _room_key(self, room_id: int) -> str:
        return f"{self._prefix}{{{room_id}}}"

    def _keys(self, entry: Entry) -> list[str]:
        room = self._room_key(entry.room_id)
        return [room, f"{room}:u:{entry.user_id}"]

    def _conn(self, entry: Entry) -> str:
        return f"{self._host}|{entry.conn_key}"

    @staticmethod
    def _user(entry: Entry) -> str:
        return f"{entry.user_id}|{entry.user_name}"

    async def add(self, entry: Entry) -> bool:
        now = time.time()
        try:
            count = await self._redis.eval(
                _ADD, 2, *self._keys(entry), now, now + self._ttl, self._ttl,
                self._conn(entry), self._user(entry),
            )  # fmt: skip
        except _FAILURES as exc:
            raise BrokerUnavailable("Presence is unavailable.") from exc
        return int(count) == 1

    async def remove(self, entry: Entry) -> bool:
        try:
            left = await self._redis.eval(
                _REMOVE, 2, *self._keys(entry), time.time(), self._conn(entry), self._user(entry)
            )
        except _FAILURES as exc:
            raise BrokerUnavailable("Presence is unavailable.") from exc
        return int(left) == 0

    async def list(self, room_id: int) -> Presence:
        room = self._room_key(room_id)
        now = time.time()
        try:
            users = [str(m) for m in await self._redis.zrangebyscore(room, now, "+inf")]
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in users:
                    pipe.zcount(f"{room}:u:{member.split('|', 1)[0]}", now, "+inf")
                counts = await pipe.execute()
        except _FAILURES as exc:
            raise BrokerUnavailable("Presence is unavailable.") from exc
        present = []
        for member, count in zip(users, counts, strict=True):
            if int(count) > 0:
                uid, _, name = member.partition("|")
                present.append((int(uid), name))
        return Presence(sorted(present), sum(int(c) for c in counts))

    async def refresh(self, entries: Iterable[Entry]) -> None:
        expiry = time.time() + self._ttl
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in entries:
                    room, user = self._keys(entry)
                    pipe.zadd(user, {self._conn(entry): expiry})
                    pipe.zadd(room, {self._user(entry): expiry})
                    pipe.expire(room, self._ttl * 2)
                    pipe.expire(user, self._ttl * 2)
                await pipe.execute()
        except _FAILURES as exc:
            raise BrokerUnavailable("Presence is unavailable.") from exc

    async def close(self) -> None:
        await self._redis.aclose()
