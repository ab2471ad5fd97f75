"""Redis Cluster: sharded pub/sub on the slot's master, presence and limits whose
scripts stay in one slot, a master failover, and the refusal of the wrong mode.

The local cluster (3 masters, 3 replicas) is tests/redis_cluster.py; the test
that kills a master has a cluster of its own.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from redis.asyncio import Redis

from chatroom_server.pubsub import (
    CONTROL_ROOM,
    BrokerUnavailable,
    make_broker,
    publish_once,
    redis_refusal,
)
from chatroom_server.pubsub.limits_redis import RedisLimits
from chatroom_server.pubsub.presence import Entry
from chatroom_server.pubsub.redis import RedisBroker
from chatroom_server.pubsub.redis_cluster import RedisClusterBroker, hash_tag
from chatroom_server.pubsub.redis_presence import RedisPresence

from ..conftest import SHARED_REDIS, redis_answers, service_missing
from ..redis_cluster import LocalCluster, own_redis_cluster, redis_cluster  # noqa: F401
from .test_broker import WAIT, Recorder, Resyncs, until

LOGGER = "chatroom_server.pubsub"


def prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


def node(port: int) -> Redis:
    return Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2)


class CountingProbes(RedisClusterBroker):
    """Counts probe rounds, so a test can wait for several."""

    probes_sent = 0

    async def _send_probe(self) -> None:
        await super()._send_probe()
        self.probes_sent += 1


async def test_room_traffic_goes_through_the_slots_master_only(
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    rec = Recorder()
    p = prefix()
    broker = make_broker(redis_cluster.url, rec, None, p, cluster=True)
    await broker.connect()
    try:
        for room in (1, 2, 3, 4, 5, 6):
            await broker.subscribe(room)
        channel = f"{p}:room:4"
        owner = redis_cluster.master_of(channel)
        master = node(owner)
        try:
            # Sharded: the slot's master counts our SSUBSCRIBE; nobody did a plain SUBSCRIBE.
            assert await master.execute_command("PUBSUB", "SHARDNUMSUB", channel) == [channel, 1]
            assert await master.execute_command("PUBSUB", "NUMSUB", channel) == [channel, 0]
        finally:
            await master.aclose()
        await broker.publish_many([(room, f"to {room}") for room in (1, 2, 3, 4, 5, 6)])
        for room in (1, 2, 3, 4, 5, 6):
            await rec.wait_for(room, f"to {room}")
        assert broker.healthy
    finally:
        await broker.disconnect()


async def test_the_admin_clis_publish_once_reaches_servers_on_a_cluster(
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    rec, p = Recorder(), prefix()
    server = make_broker(redis_cluster.url, rec, None, p, cluster=True)
    await server.connect()
    try:
        await server.subscribe(CONTROL_ROOM)
        await publish_once(redis_cluster.url, CONTROL_ROOM, "revoked", p, cluster=True)
        await rec.wait_for(CONTROL_ROOM, "revoked")
    finally:
        await server.disconnect()


async def test_a_probe_goes_to_every_master_subscribed(
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    resyncs = Resyncs()
    # A round is sent only once every master's probe of the last one came back; a
    # generous timeout keeps a busy test machine from failing a slow round.
    broker = CountingProbes(
        redis_cluster.url, Recorder(), resyncs, prefix(), probe_interval=0.1, probe_timeout=5.0
    )
    await broker.connect()
    try:
        for room in range(1, 30):  # rooms on every master
            await broker.subscribe(room)
        sharded = broker._pubsub
        assert sharded is not None
        probes = sharded.probes  # type: ignore[attr-defined]
        assert len({redis_cluster.master_of(hash_tag(c)) for c in probes}) == 3
        # Every master's probe comes back, round after round: no session is restarted.
        start = broker.probes_sent
        await until(lambda: broker.probes_sent >= start + 5, timeout=30)
        assert broker.healthy and resyncs.count == 0
    finally:
        await broker.disconnect()


async def test_failover_resubscribes_on_the_new_master_and_resyncs(
    own_redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    cluster = own_redis_cluster
    rec, resyncs, other = Recorder(), Resyncs(), Recorder()
    p = prefix()
    broker = RedisClusterBroker(
        cluster.url, rec, resyncs, p, probe_interval=0.5, backoff_base=0.05, backoff_cap=0.5
    )
    publisher = RedisClusterBroker(cluster.url, other, None, p, backoff_cap=0.5)
    await broker.connect()
    await publisher.connect()
    try:
        for room in range(1, 12):
            await broker.subscribe(room)
        await publisher.publish(1, "before")
        await rec.wait_for(1, "before")

        dead = await asyncio.to_thread(cluster.kill_master_of, f"{p}:room:1")
        await resyncs.wait(timeout=30)  # lost, reconnected to the new master, back-filled
        assert cluster.master_of(f"{p}:room:1") != dead
        await until(lambda: broker.healthy, timeout=30)

        # The first publish after a failover may meet the old map: retried, or fails once.
        async def publish_after() -> None:
            while True:
                try:
                    await publisher.publish(1, "after")
                    return
                except Exception:
                    await asyncio.sleep(0.1)  # the publisher's map catches up

        await asyncio.wait_for(publish_after(), 30)
        await rec.wait_for(1, "after", timeout=WAIT)
        for room in range(2, 12):  # rooms on the masters that stayed are heard too
            await publisher.publish(room, f"still {room}")
            await rec.wait_for(room, f"still {room}")
    finally:
        await broker.disconnect()
        await publisher.disconnect()


async def test_presence_and_limits_work_on_a_cluster(
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    p = prefix()
    one = RedisPresence(redis_cluster.url, p, ttl=30, cluster=True)
    two = RedisPresence(redis_cluster.url, p, ttl=30, cluster=True)
    try:
        for room in range(1, 8):  # rooms in slots of every master
            assert await one.add(Entry(room, 7, "ann", "c1")) is True
            assert await two.add(Entry(room, 7, "ann", "c2")) is False
            assert await two.add(Entry(room, 8, "bob", "c3")) is True
            listed = await one.list(room)
            assert (listed.users, listed.connections) == ([(7, "ann"), (8, "bob")], 3)
            await one.refresh([Entry(room, 7, "ann", "c1")])
            assert await one.remove(Entry(room, 7, "ann", "c1")) is False
            assert await two.remove(Entry(room, 7, "ann", "c2")) is True
            assert (await one.list(room)).users == [(8, "bob")]
    finally:
        await one.close()
        await two.close()

    limits = RedisLimits(redis_cluster.url, p, cluster=True)
    try:
        for n in range(20):
            assert await limits.take(f"user:{n}", 1.0, 1) == 0
            assert await limits.take(f"user:{n}", 1.0, 1) > 0  # shared: the bucket is empty
            assert await limits.acquire(f"ip:{n}", f"conn{n}", 1, 30)
            assert not await limits.acquire(f"ip:{n}", "another", 1, 30)
            await limits.failed(f"login:{n}", 60)
            assert await limits.locked(f"login:{n}", 1) > 0
        # One refresh over slots on every master: sent once per slot, never CROSSSLOT.
        await limits.refresh([(f"ip:{n}", f"conn{n}") for n in range(20)], 30)
        assert limits.shared  # nothing fell back to per-process counts
    finally:
        await limits.close()


async def test_the_wrong_mode_is_refused_and_not_healthy(
    redis_cluster: LocalCluster,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    if not await redis_answers(SHARED_REDIS):
        service_missing(f"Redis at {SHARED_REDIS}")
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    without_flag = await redis_refusal(redis_cluster.url, cluster=False)
    assert without_flag is not None and "is a Redis Cluster node" in without_flag
    assert "--redis-cluster" in without_flag
    with_flag = await redis_refusal(SHARED_REDIS, cluster=True)
    assert with_flag is not None and "is not a cluster node" in with_flag
    assert await redis_refusal(redis_cluster.url, cluster=True) is None
    assert await redis_refusal(SHARED_REDIS, cluster=False) is None
    assert await redis_refusal("redis://127.0.0.1:1/0", cluster=True) is None  # unreachable
    # The admin CLI's announcement would not be heard: it says why instead.
    with pytest.raises(BrokerUnavailable, match="is a Redis Cluster node"):
        await publish_once(redis_cluster.url, CONTROL_ROOM, "x", prefix(), cluster=False)
    with pytest.raises(BrokerUnavailable, match="is not a cluster node"):
        await publish_once(SHARED_REDIS, CONTROL_ROOM, "x", prefix(), cluster=True)

    plain = RedisBroker(redis_cluster.url, Recorder(), None, prefix(), backoff_cap=0.1)
    sharded = RedisClusterBroker(SHARED_REDIS, Recorder(), None, prefix(), backoff_cap=0.1)
    for broker in (plain, sharded):
        await broker.connect()
    try:

        def attempts() -> int:
            return sum("reconnect attempt" in r.getMessage() for r in caplog.records)

        await until(lambda: attempts() >= 6)  # several each; none may succeed
        assert not plain.healthy and not sharded.healthy
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        # One line each, not one per retry.
        assert sum("is a Redis Cluster node" in e for e in errors) == 1, errors
        assert sum("is not a cluster node" in e for e in errors) == 1, errors
    finally:
        for broker in (plain, sharded):
            await broker.disconnect()
