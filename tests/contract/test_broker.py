"""One broker contract, run against the in-process broker, real Redis and a real Redis
Cluster (sharded pub/sub), plus Redis faults.

Contract tests use the shared Redis at 127.0.0.1:6379 (skipped when it is not
reachable, failed instead with CHATROOM_REQUIRE_SERVICES=1), and a local cluster
of 3 masters and 3 replicas (tests/redis_cluster.py), each with its own key prefix.
Fault tests start a private redis-server on a free port, kill it, restart it, and
make its subscriber deaf, without touching the shared one. Cluster faults (a
master killed, the wrong mode) are in test_broker_cluster.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from chatroom_server.pubsub import Broker, BrokerUnavailable, make_broker
from chatroom_server.pubsub.redis import RedisBroker
from chatroom_server.pubsub.redis_cluster import RedisClusterBroker

from ..conftest import BROKERS, SHARED_REDIS, PrivateRedis, redis_answers, service_missing
from ..redis_cluster import redis_cluster  # noqa: F401  (a fixture)

WAIT = 5.0
LOGGER = "chatroom_server.pubsub"


class Recorder:
    """A deliver callback that remembers payloads and lets a test wait for them."""

    def __init__(self) -> None:
        self.got: list[tuple[int, str]] = []
        self._changed = asyncio.Event()

    def __call__(self, room_id: int, payload: str) -> None:
        self.got.append((room_id, payload))
        self._changed.set()

    def room(self, room_id: int) -> list[str]:
        return [payload for rid, payload in self.got if rid == room_id]

    async def wait_for(self, room_id: int, payload: str, timeout: float = WAIT) -> None:
        async def wait() -> None:
            while payload not in self.room(room_id):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


class Resyncs:
    """An on_resync callback that counts its calls and signals each one."""

    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    async def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def wait(self, timeout: float = WAIT) -> None:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll a flag that has no event to wait on, with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------- the contract

BrokerFactory = Callable[..., Awaitable[Broker]]


@asynccontextmanager
async def broker_factory(
    backend: str, cluster_url: str | None = None
) -> AsyncIterator[BrokerFactory]:
    """Make connected brokers of one backend, all on one fresh prefix unless told otherwise."""
    if backend == "redis" and not await redis_answers(SHARED_REDIS):
        service_missing(f"Redis at {SHARED_REDIS}")
    url = SHARED_REDIS if backend == "redis" else cluster_url
    default_prefix = f"test-{uuid.uuid4().hex}"
    made: list[Broker] = []

    async def factory(deliver: Recorder, prefix: str | None = None, connect: bool = True) -> Broker:
        broker = make_broker(url, deliver, None, prefix or default_prefix, backend == "cluster")
        made.append(broker)
        if connect:
            await broker.connect()
        return broker

    try:
        yield factory
    finally:
        for broker in made:
            await broker.disconnect()


def cluster_url(request: pytest.FixtureRequest) -> str | None:
    """The local cluster's URL for the "cluster" backend (started on first use)."""
    if request.param != "cluster":
        return None
    return str(request.getfixturevalue("redis_cluster").url)


@pytest.fixture(params=[*BROKERS, "cluster"])
async def new_broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    async with broker_factory(request.param, cluster_url(request)) as factory:
        yield factory


@pytest.fixture(params=["redis", "cluster"])
async def new_redis_broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    """For what only Redis can do: several processes meeting."""
    async with broker_factory(request.param, cluster_url(request)) as factory:
        yield factory


async def test_subscribed_room_receives_payloads_in_publish_order(
    new_broker: BrokerFactory,
) -> None:
    rec = Recorder()
    broker = await new_broker(rec)
    assert broker.healthy
    await broker.subscribe(1)
    sent = [f"message {i}" for i in range(50)]
    for payload in sent:
        await broker.publish(1, payload)
    await rec.wait_for(1, sent[-1])
    assert rec.room(1) == sent


async def test_publish_many_keeps_order_and_skips_rooms_nobody_hears(
    new_broker: BrokerFactory,
) -> None:
    rec = Recorder()
    broker = await new_broker(rec)
    await broker.subscribe(1)
    await broker.subscribe(2)
    items = [(1 + i % 3, f"batch {i}") for i in range(60)]  # room 3 is not subscribed
    await broker.publish_many(items)
    await broker.publish(1, "after")
    await rec.wait_for(1, "after")
    await rec.wait_for(2, "batch 58")
    assert rec.room(1) == [p for r, p in items if r == 1] + ["after"]
    assert rec.room(2) == [p for r, p in items if r == 2]
    assert rec.room(3) == []


async def test_unsubscribed_room_receives_nothing(new_broker: BrokerFactory) -> None:
    rec = Recorder()
    broker = await new_broker(rec)
    await broker.subscribe(2)
    await broker.publish(1, "not for us")
    await broker.publish(2, "sentinel")  # published after, so heard after
    await rec.wait_for(2, "sentinel")
    assert rec.got == [(2, "sentinel")]


async def test_unsubscribe_stops_delivery(new_broker: BrokerFactory) -> None:
    rec = Recorder()
    broker = await new_broker(rec)
    await broker.subscribe(1)
    await broker.subscribe(2)
    await broker.publish(1, "before")
    await rec.wait_for(1, "before")
    await broker.unsubscribe(1)
    await broker.unsubscribe(1)  # a second time is harmless
    await broker.publish(1, "after")
    await broker.publish(2, "sentinel")
    await rec.wait_for(2, "sentinel")
    assert rec.room(1) == ["before"]
    await broker.subscribe(1)
    await broker.publish(1, "again")
    await rec.wait_for(1, "again")
    assert rec.room(1) == ["before", "again"]


async def test_payload_text_survives_exactly(new_broker: BrokerFactory) -> None:
    rec = Recorder()
    broker = await new_broker(rec)
    await broker.subscribe(7)
    payload = 'line one\nline two\r\n\ttabbed "quoted" \\ 😀 żółć 中文 \u200b end\n'
    large = "ü\n" * 100_000
    await broker.publish(7, payload)
    await broker.publish(7, large)
    await broker.publish(7, "")
    await rec.wait_for(7, "")
    assert rec.room(7) == [payload, large, ""]


async def test_disconnect_is_idempotent(new_broker: BrokerFactory) -> None:
    broker = await new_broker(Recorder())
    await broker.subscribe(1)
    await broker.disconnect()
    await broker.disconnect()
    # the fixture disconnects it a third time


async def test_disconnect_without_connect(new_broker: BrokerFactory) -> None:
    never_connected = await new_broker(Recorder(), connect=False)
    await never_connected.disconnect()


async def test_two_processes_hear_each_other(new_redis_broker: BrokerFactory) -> None:
    first, second = Recorder(), Recorder()
    a = await new_redis_broker(first)
    b = await new_redis_broker(second)
    await a.subscribe(1)
    # subscribe() returns once Redis confirmed it: a publish right after is heard.
    await b.subscribe(1)
    await a.publish(1, "from a")
    await b.publish(1, "from b")
    for rec in (first, second):
        await rec.wait_for(1, "from b")
        assert rec.room(1) == ["from a", "from b"]


async def test_prefixes_are_isolated(new_redis_broker: BrokerFactory) -> None:
    first, second = Recorder(), Recorder()
    a = await new_redis_broker(first, prefix=f"test-{uuid.uuid4().hex}")
    b = await new_redis_broker(second, prefix=f"test-{uuid.uuid4().hex}")
    await a.subscribe(1)
    await b.subscribe(1)
    await a.publish(1, "only a")
    await b.publish(1, "only b")
    await first.wait_for(1, "only a")
    await second.wait_for(1, "only b")
    # Each sentinel came after the other broker's payload: nothing crossed over.
    await a.publish(1, "sentinel a")
    await b.publish(1, "sentinel b")
    await first.wait_for(1, "sentinel a")
    await second.wait_for(1, "sentinel b")
    assert first.room(1) == ["only a", "sentinel a"]
    assert second.room(1) == ["only b", "sentinel b"]


async def test_publish_many_without_echo_spares_only_the_publisher(
    new_broker: BrokerFactory,
) -> None:
    """echo=False: the caller delivered them itself; its broker does not hand them back,
    and what it publishes with an echo (or others publish) still comes, in order."""
    rec = Recorder()
    broker = await new_broker(rec)
    await broker.subscribe(1)
    await broker.publish_many([(1, f"own {i}") for i in range(20)], echo=False)
    await broker.publish_many([(1, "with echo")])
    await broker.publish(1, "sentinel")  # published after, so heard after
    await rec.wait_for(1, "sentinel")
    assert rec.room(1) == ["with echo", "sentinel"]


async def test_other_processes_hear_what_one_published_without_echo(
    new_redis_broker: BrokerFactory,
) -> None:
    first, second = Recorder(), Recorder()
    a = await new_redis_broker(first)
    b = await new_redis_broker(second)
    for broker in (a, b):
        await broker.subscribe(1)
        await broker.subscribe(2)
    items = [(1 + i % 2, f"m {i}") for i in range(40)]
    await a.publish_many(items, echo=False)
    await b.publish(1, "from b")  # b heard a's batch, then this
    await a.publish(1, "sentinel")
    await second.wait_for(1, "sentinel")
    await first.wait_for(1, "sentinel")
    assert second.room(1) == [p for r, p in items if r == 1] + ["from b", "sentinel"]
    assert second.room(2) == [p for r, p in items if r == 2]
    # Once heard back, a's own payload is forgotten: the same text from b is delivered.
    await b.publish_many([(2, "m 1")])
    await a.publish(2, "sentinel 2")
    await first.wait_for(2, "sentinel 2")
    assert first.room(1) == ["from b", "sentinel"]
    assert first.room(2) == ["m 1", "sentinel 2"]


def test_make_broker_picks_redis_by_scheme() -> None:
    for url in ("redis://localhost:6379/0", "rediss://localhost:6380", "unix:///tmp/r.sock"):
        assert isinstance(make_broker(url, Recorder()), RedisBroker)
        assert not isinstance(make_broker(url, Recorder()), RedisClusterBroker)
    cluster = make_broker("redis://localhost:7000/0", Recorder(), cluster=True)
    assert isinstance(cluster, RedisClusterBroker)


# ---------------------------------------------------------------------- faults


def fault_broker(url: str, rec: Recorder, resyncs: Resyncs, **kwargs: Any) -> RedisBroker:
    kwargs.setdefault("backoff_base", 0.02)
    kwargs.setdefault("backoff_cap", 0.1)
    return RedisBroker(url, rec, resyncs, f"test-{uuid.uuid4().hex}", **kwargs)


async def test_redis_restart_reconnects_resubscribes_and_resyncs(
    private_redis: PrivateRedis,
) -> None:
    rec, resyncs = Recorder(), Resyncs()
    broker = fault_broker(private_redis.url, rec, resyncs)
    await broker.connect()
    try:
        await broker.subscribe(1)
        await broker.publish(1, "before")
        await rec.wait_for(1, "before")

        await private_redis.kill()
        await until(lambda: not broker.healthy)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            await broker.publish(1, "during")
        assert time.monotonic() - started < 2.5
        await broker.subscribe(2)  # while down: remembered, applied on reconnect
        await broker.unsubscribe(3)
        assert resyncs.count == 0

        await private_redis.start()
        await resyncs.wait()
        assert broker.healthy
        await broker.publish(1, "after 1")
        await broker.publish(2, "after 2")
        await rec.wait_for(2, "after 2")
        assert rec.room(1) == ["before", "after 1"]
        assert "during" not in rec.room(1)
    finally:
        await broker.disconnect()


async def test_killed_subscriber_connection_is_noticed(private_redis: PrivateRedis) -> None:
    rec, resyncs = Recorder(), Resyncs()
    broker = fault_broker(private_redis.url, rec, resyncs)
    admin = Redis.from_url(private_redis.url, socket_timeout=2)
    await broker.connect()
    try:
        await broker.subscribe(1)
        await broker.publish(1, "before")
        await rec.wait_for(1, "before")
        killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed == 1
        await resyncs.wait()
        assert broker.healthy
        await broker.publish(1, "after")
        await rec.wait_for(1, "after")
        assert rec.room(1) == ["before", "after"]
    finally:
        await broker.disconnect()
        await admin.aclose()


class DeafeningProxy:
    """A TCP proxy to Redis that can stop passing Redis's bytes to subscribers.

    The subscriber socket stays open and Redis still counts the subscriber, as
    when Redis is partitioned away or a connection is silently half-dead: only
    the probe can notice. New connections pass again.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: list[dict[str, bool]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def deafen_subscribers(self) -> int:
        deafened = 0
        for pipe in self._pipes:
            if pipe["subscriber"]:
                pipe["deaf"] = True
                deafened += 1
        return deafened

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        pipe = {"subscriber": False, "deaf": False}
        self._pipes.append(pipe)
        for task in (
            self._pump(reader, up_writer, pipe, upstream=True),
            self._pump(up_reader, writer, pipe, upstream=False),
        ):
            t = asyncio.create_task(task)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pipe: dict[str, bool],
        upstream: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if upstream and b"SUBSCRIBE" in data.upper():
                    pipe["subscriber"] = True
                if not upstream and pipe["deaf"]:
                    continue
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_deaf_subscriber_is_found_by_the_probe(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    proxy = DeafeningProxy(private_redis.port)
    await proxy.start()
    rec, resyncs = Recorder(), Resyncs()
    broker = fault_broker(proxy.url, rec, resyncs, probe_interval=0.1, probe_timeout=0.5)
    await broker.connect()
    try:
        await broker.subscribe(1)
        await broker.publish(1, "before")
        await rec.wait_for(1, "before")

        assert proxy.deafen_subscribers() == 1
        await broker.publish(1, "unheard")  # Redis accepts it; the subscriber never sees it
        await resyncs.wait()
        assert broker.healthy
        await broker.publish(1, "after")
        await rec.wait_for(1, "after")
        assert rec.room(1) == ["before", "after"]
        lost = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(lost) == 1 and "probe" in lost[0], lost
    finally:
        await broker.disconnect()
        await proxy.close()


async def test_outage_is_logged_once_not_per_retry(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    rec, resyncs = Recorder(), Resyncs()
    broker = fault_broker(private_redis.url, rec, resyncs)
    await broker.connect()

    def records(level: int) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]

    try:
        await broker.subscribe(1)
        await private_redis.kill()
        await until(lambda: len(records(logging.DEBUG)) >= 5)  # five failed attempts
        assert len(records(logging.WARNING)) == 1
        assert not records(logging.INFO)

        await private_redis.start()
        await resyncs.wait()
        assert len(records(logging.WARNING)) == 1
        recovered = records(logging.INFO)
        assert len(recovered) == 1 and "recovered" in recovered[0].getMessage()
        assert not records(logging.ERROR)
    finally:
        await broker.disconnect()


async def test_start_while_redis_is_down_then_recover(private_redis: PrivateRedis) -> None:
    await private_redis.kill()
    rec, resyncs = Recorder(), Resyncs()
    broker = fault_broker(private_redis.url, rec, resyncs)
    await broker.connect()  # does not raise: the server starts, /readyz reports it
    try:
        assert not broker.healthy
        await broker.subscribe(1)
        with pytest.raises(BrokerUnavailable):
            await broker.publish(1, "nobody")
        await private_redis.start()
        await resyncs.wait()
        assert broker.healthy
        await broker.publish(1, "hello")
        await rec.wait_for(1, "hello")
    finally:
        await broker.disconnect()


async def test_listener_cancellation_is_not_swallowed(private_redis: PrivateRedis) -> None:
    broker = fault_broker(private_redis.url, Recorder(), Resyncs())
    await broker.connect()
    listener = broker._listener
    assert listener is not None
    await broker.disconnect()
    assert listener.cancelled()
    assert not broker.healthy
    with pytest.raises(BrokerUnavailable):
        await broker.publish(1, "after disconnect")
