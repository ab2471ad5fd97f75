"""The limit counters' contract, on the in-process backend and on real Redis."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from chatroom_server.pubsub.limits import Limits, MemoryLimits, make_limits
from chatroom_server.pubsub.limits_redis import RedisLimits

from ..conftest import SHARED_REDIS, PrivateRedis, eventually, redis_answers, service_missing


@pytest.fixture(params=["memory", "redis"])
async def limits(request: pytest.FixtureRequest) -> AsyncIterator[Limits]:
    if request.param == "memory":
        made: Limits = MemoryLimits()
    else:
        if not await redis_answers(SHARED_REDIS):
            service_missing(f"Redis at {SHARED_REDIS}")
        made = make_limits(SHARED_REDIS, f"test-{uuid.uuid4().hex}")
    yield made
    await made.close()


async def test_bucket(limits: Limits) -> None:
    assert [await limits.take("b", 1, 3) for _ in range(3)] == [0, 0, 0]
    wait = await limits.take("b", 1, 3)
    assert 0 < wait <= 1.0
    assert await limits.take("other", 1, 3) == 0


async def test_failures_lock_until_cleared_or_lapsed(limits: Limits) -> None:
    for _ in range(2):
        assert await limits.locked("f", 2) == 0
        await limits.failed("f", 60)
    assert 0 < await limits.locked("f", 2) <= 60
    assert await limits.locked("g", 2) == 0
    await limits.clear("f")
    assert await limits.locked("f", 2) == 0
    await limits.failed("short", 0.2)
    await eventually(
        lambda: _unlocked(limits, "short"), "the failure window lapses", timeout=5, interval=0.05
    )


async def _unlocked(limits: Limits, key: str) -> bool:
    return await limits.locked(key, 1) == 0


async def test_slots_held_released_and_lapsing(limits: Limits) -> None:
    assert await limits.acquire("s", "a", 2, 30)
    assert await limits.acquire("s", "b", 2, 30)
    assert not await limits.acquire("s", "c", 2, 30)
    assert await limits.acquire("s", "a", 2, 30)  # held already: still held
    await limits.release("s", "a")
    assert await limits.acquire("s", "c", 2, 30)
    # A holder that stops refreshing (its host died) stops counting after the TTL.
    assert await limits.acquire("t", "dead", 1, 0.3)
    assert await limits.acquire("t2", "alive", 1, 0.3)
    started = time.monotonic()

    async def lapsed() -> bool:
        await limits.refresh([("t2", "alive")], 0.3)
        return await limits.acquire("t", "new", 1, 30)

    await eventually(lapsed, "the dead holder's slot lapses", timeout=5, interval=0.05)
    assert time.monotonic() - started >= 0.2
    assert not await limits.acquire("t2", "other", 1, 30)  # refreshed: still held


async def test_take_now_answers_in_process_only(limits: Limits) -> None:
    # The message path awaits nothing with in-process counters; shared ones say so.
    answer = limits.take_now("n", 1, 1)
    if isinstance(limits, MemoryLimits):
        assert answer == 0 and limits.take_now("n", 1, 1) == pytest.approx(1.0, abs=0.05)
    else:
        assert answer is None


async def test_two_hosts_share_every_count_and_every_key_expires() -> None:
    if not await redis_answers(SHARED_REDIS):
        service_missing(f"Redis at {SHARED_REDIS}")
    prefix = f"test-{uuid.uuid4().hex}"
    a, b = make_limits(SHARED_REDIS, prefix), make_limits(SHARED_REDIS, prefix)
    try:
        assert await a.acquire("user:1", "host-a:1", 2, 30)
        assert await b.acquire("user:1", "host-b:1", 2, 30)
        assert not await a.acquire("user:1", "host-a:2", 2, 30)  # the cap spans hosts
        await b.release("user:1", "host-b:1")
        assert await a.acquire("user:1", "host-a:2", 2, 30)
        assert await a.take("msg:1", 0.001, 2) == 0
        assert await b.take("msg:1", 0.001, 2) == 0
        assert await a.take("msg:1", 0.001, 2) > 0  # one bucket for both hosts
        await a.failed("login:x", 60)
        assert await b.locked("login:x", 1) > 0
        await b.clear("login:x")
        assert await a.locked("login:x", 1) == 0
        await a.failed("login:y", 60)
        redis = Redis.from_url(SHARED_REDIS)
        try:
            keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
            assert len(keys) == 3  # slots, bucket, the failure count of y
            for key in keys:
                assert await redis.pttl(key) > 0, key  # nothing stays forever
        finally:
            await redis.aclose()
    finally:
        await a.close()
        await b.close()


async def test_redis_away_falls_back_to_this_process(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    limits = RedisLimits(private_redis.url, "fallback", retry=0.05)
    try:
        assert await limits.take("k", 1, 1) == 0
        assert await limits.acquire("s", "held-before", 2, 30)
        await private_redis.kill()
        # Nobody is refused for Redis being away, and limits still hold per process:
        # the slot taken before the outage still counts here.
        assert await limits.acquire("s", "a", 2, 30)
        assert not await limits.acquire("s", "b", 2, 30)
        await limits.release("s", "a")
        assert await limits.acquire("s", "b", 2, 30)
        assert await limits.take("x", 1, 1) == 0
        assert await limits.take("x", 1, 1) > 0
        assert limits.take_now("y", 1, 1) == 0  # answered here, no round trip
        await limits.failed("f", 60)
        assert await limits.locked("f", 1) > 0
        assert not limits.shared
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not once per call

        await private_redis.start()

        async def shared_again() -> bool:
            await limits.take("probe", 1000, 1000)
            return limits.shared

        await eventually(shared_again, "the counts are shared again", timeout=5, interval=0.06)
        assert limits.take_now("y", 1, 1) is None
    finally:
        await limits.close()


async def test_a_burst_of_calls_waits_for_connections_rather_than_failing(
    limits: Limits, caplog: pytest.LogCaptureFixture
) -> None:
    """A reconnect storm: thousands of connects at once each take connection slots.
    More calls at once than the client has connections must queue for one, not fail
    (redis-py's default pool raised MaxConnectionsError past 100, and the limits fell
    back to per-process counts)."""
    caplog.set_level(logging.WARNING, logger="chatroom_server.pubsub")
    held = await asyncio.gather(*(limits.acquire(f"burst{i}", "m", 1, 30) for i in range(400)))
    assert held == [True] * 400
    # Never fell back to per-process counts (which would also have said yes).
    assert "unreachable" not in caplog.text
