"""The broker on a Redis Cluster: sharded pub/sub (SPUBLISH / SSUBSCRIBE).

A room's channel lives on the master of its hash slot, so its traffic stays on
that shard instead of being broadcast to every node as PUBLISH is. Everything
else is RedisBroker's: one listener owns the subscription, probes it, and on any
doubt starts a new session (capped backoff, subscribe every wanted room again,
back-fill from the database by sequence).

The subscriber side is `ShardedPubSub`: one connection per master that owns a
wanted channel, their messages merged into one stream that looks to the
listener like a single PubSub. It fails as a whole: a master that dies (a
failover), or a slot that moves away (Redis sends SUNSUBSCRIBE for it), ends
the session, and the next one asks the cluster who owns which slot now. Each
master gets its own probe channel, in the slot of a channel subscribed there, so
a deaf connection to any master is noticed.

redis-py's own ClusterPubSub is not used: it reconnects and resubscribes behind
its caller's back, and a subscription re-established that way skips the
back-fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.maint_notifications import MaintNotificationsConfig

from . import BrokerUnavailable
from .redis import _CONNECTION_ERRORS, RedisBroker, _close_quietly, _SubscriptionLost
from .redis_connect import make_client

NodeClient = Callable[[str, int], Redis]


def hash_tag(channel: str) -> str:
    """What Redis hashes for the slot of `channel`, to build a name in the same slot."""
    start = channel.find("{")
    if start > -1:
        end = channel.find("}", start + 1)
        if end > start + 1:
            return channel[start + 1 : end]
    return channel


@dataclass
class _Node:
    client: Redis
    pubsub: PubSub
    probe: str  # a channel in a slot this master owns
    reader: asyncio.Task[None] | None = field(default=None)


class ShardedPubSub:
    """The subset of PubSub that RedisBroker's listener uses, over every master."""

    def __init__(self, cluster: RedisCluster, node_client: NodeClient, probe_prefix: str) -> None:
        self._cluster = cluster
        self._node_client = node_client
        self._probe_prefix = probe_prefix
        self._nodes: dict[str, _Node] = {}
        self._leaving: dict[str, int] = {}  # SUNSUBSCRIBEs we sent, not yet confirmed
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._failure: BaseException | None = None
        self._opening = asyncio.Lock()
        # RedisBroker looks at `pubsub.connection` to tell a live subscriber from a
        # dropped one, and disconnects it to make the listener start over.
        self.connection = self

    # ------------------------------------------------------------------ what the broker sees

    @property
    def is_connected(self) -> bool:
        return self._failure is None and all(_live(n.pubsub) for n in self._nodes.values())

    @property
    def probes(self) -> list[str]:
        return [node.probe for node in self._nodes.values()]

    async def connect(self) -> None:
        """Learn who owns which slot now (after a failover the old map is stale)."""
        await self._cluster.initialize()
        await self._cluster.nodes_manager.initialize()

    async def subscribe(self, *channels: str) -> None:
        """SSUBSCRIBE each channel on its slot's master, one command per slot."""
        self._check()
        groups: dict[str, dict[int, list[str]]] = {}
        owners = {}
        for channel in channels:
            owner = self._cluster.get_node_from_key(channel)
            if owner is None:  # only with replica=True; keeps mypy honest
                raise RedisConnectionError(f"no master owns the slot of {channel}")
            owners[owner.name] = owner
            slot = self._cluster.keyslot(channel)
            groups.setdefault(owner.name, {}).setdefault(slot, []).append(channel)
        for name, slots in groups.items():
            first = next(iter(slots.values()))[0]
            owner = owners[name]
            node = await self._node(name, owner.host, int(owner.port), first)
            for group in slots.values():
                await node.pubsub.ssubscribe(*group)

    async def unsubscribe(self, channel: str) -> None:
        self._check()
        owner = self._cluster.get_node_from_key(channel)
        node = self._nodes.get(owner.name) if owner is not None else None
        if node is None:
            return
        self._leaving[channel] = self._leaving.get(channel, 0) + 1
        await node.pubsub.sunsubscribe(channel)

    async def get_message(self, timeout: float | None = None) -> dict[str, Any] | None:
        self._check()
        if not self._queue.empty():
            message = self._queue.get_nowait()
            if message is None:
                self._check()
            return message
        try:
            message = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if message is None:  # a reader failed and woke us
            self._check()
        return message

    async def disconnect(self, nowait: bool = False) -> None:
        """Drop every master's connection: the listener's next read fails."""
        self._fail(RedisConnectionError("the subscriber was dropped"))
        for node in self._nodes.values():
            if node.pubsub.connection is not None:
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await node.pubsub.connection.disconnect(nowait=True)

    async def aclose(self) -> None:
        nodes = list(self._nodes.values())
        self._nodes.clear()
        readers = [n.reader for n in nodes if n.reader is not None]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for node in nodes:
            await _close_quietly(node.pubsub)
            await _close_quietly(node.client)

    # ------------------------------------------------------------------ per master

    async def _node(self, name: str, host: str, port: int, channel: str) -> _Node:
        async with self._opening:
            self._check()
            node = self._nodes.get(name)
            if node is not None:
                return node
            client = self._node_client(host, port)
            pubsub = client.pubsub()
            probe = f"{self._probe_prefix}:{{{hash_tag(channel)}}}"
            try:
                await pubsub.connect()  # type: ignore[no-untyped-call]
                await pubsub.ssubscribe(probe)
            except BaseException:
                await _close_quietly(pubsub)
                await _close_quietly(client)
                raise
            node = _Node(client, pubsub, probe)
            node.reader = asyncio.create_task(self._read(name, pubsub), name=f"chatroom-{name}")
            self._nodes[name] = node
            return node

    async def _read(self, name: str, pubsub: PubSub) -> None:
        try:
            while True:
                # A PubSub reconnects by itself on a read after a drop; a new session
                # (with its back-fill) must do that instead.
                if not _live(pubsub):
                    raise RedisConnectionError(f"the connection to {name} closed")
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind, channel = message["type"], message["channel"]
                # Told apart from plain pub/sub by type only: RedisBroker reads these names.
                if kind == "smessage":
                    message["type"] = "message"
                    self._queue.put_nowait(message)
                elif kind == "ssubscribe":
                    message["type"] = "subscribe"
                    self._queue.put_nowait(message)
                elif kind == "sunsubscribe":
                    left = self._leaving.pop(channel, 0)
                    if left == 0:
                        # The slot moved (failover, resharding): Redis let us go.
                        raise RedisConnectionError(f"{name} no longer serves {channel}")
                    if left > 1:
                        self._leaving[channel] = left - 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            self._queue.put_nowait(None)

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure
        for name, node in self._nodes.items():
            if not _live(node.pubsub):
                raise RedisConnectionError(f"the connection to {name} closed")


def _live(pubsub: PubSub) -> bool:
    return pubsub.connection is not None and bool(pubsub.connection.is_connected)


# The TLS options a plain Redis client takes (redis-py's names, read once).
_SSL_OPTIONS = frozenset(
    name for name in inspect.signature(Redis.__init__).parameters if name.startswith("ssl_")
)


def node_tls_options(cluster_options: dict[str, Any]) -> dict[str, Any]:
    """TLS for a plain connection to one node, as the cluster client has it.

    RedisCluster.from_url("rediss://...") keeps no `ssl` flag: it stores
    connection_class=SSLConnection and the ssl_* options (CA, certificates,
    verification), which a plain Redis client takes as ssl=True and the same names.
    """
    tls = cluster_options.get("connection_class") is SSLConnection or bool(
        cluster_options.get("ssl", False)
    )
    if not tls:
        return {"ssl": False}
    found = {k: v for k, v in cluster_options.items() if k in _SSL_OPTIONS and v is not None}
    return {"ssl": True, **found}


class RedisClusterBroker(RedisBroker):
    """RedisBroker on a Redis Cluster: SPUBLISH, and SSUBSCRIBE through ShardedPubSub."""

    cluster = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._probe_waiting: set[str] = set()

    # RedisBroker keeps its clients typed as Redis; here they are RedisCluster.
    def _make_client(self, retry: Retry) -> Redis:
        client = make_client(
            self._url,
            True,
            self._timeout,
            health_check_interval=0,
            protocol=2,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )
        return cast(Redis, client)

    def _cluster(self, client: Redis | None) -> RedisCluster:
        if client is None:
            raise BrokerUnavailable("the Redis broker is not connected")
        return cast(RedisCluster, client)

    def _node_client(self, host: str, port: int) -> Redis:
        """A plain connection to one master, as RedisBroker's subscriber is: no
        retries, no failure handler (a dropped connection ends the session)."""
        options = self._cluster(self._sub_client).nodes_manager.connection_kwargs
        return Redis(
            host=host,
            port=port,
            username=options.get("username"),
            password=options.get("password"),
            **node_tls_options(options),
            decode_responses=True,
            socket_connect_timeout=self._timeout,
            socket_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0, supported_errors=()),
            health_check_interval=0,
            protocol=2,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )

    async def _check_mode(self) -> None:
        try:
            await super()._check_mode()
        except _CONNECTION_ERRORS:
            # The node the URL names may be a master that died: the others still
            # answer, and reading the slot map (CLUSTER SLOTS) proves cluster mode.
            pass

    def _new_pubsub(self) -> PubSub:
        sharded = ShardedPubSub(
            self._cluster(self._sub_client), self._node_client, self._probe_channel
        )
        return cast(PubSub, sharded)  # duck-typed: what the listener calls is there

    # ------------------------------------------------------------------ publishing

    async def publish(self, room_id: int, payload: str) -> None:
        client = self._cluster(self._client)
        try:
            await client.spublish(self._room_channel(room_id), payload)
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"Redis is unreachable: {exc}") from exc

    # publish_many is RedisBroker's (its echo bookkeeping included): a cluster pipeline
    # sends each master its commands in one round trip, in order.
    def _queue_publish(self, pipe: Any, channel: str, payload: str) -> None:
        pipe.spublish(channel, payload)

    async def publish_once(self, room_id: int, payload: str) -> None:
        client = self._cluster(self._make_client(Retry(NoBackoff(), 0)))
        try:
            await client.spublish(self._room_channel(room_id), payload)
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"Redis is unreachable: {exc}") from exc
        finally:
            await _close_quietly(cast(Redis, client))

    # ------------------------------------------------------------------ probing every master

    async def _send_probe(self) -> None:
        sharded = cast(ShardedPubSub, self._pubsub)
        client = self._cluster(self._client)
        token = uuid.uuid4().hex
        self._probe_token = token
        self._probe_waiting = set(sharded.probes)
        for channel in list(self._probe_waiting):
            if await client.spublish(channel, token) == 0:
                raise _SubscriptionLost(f"Redis lists no subscriber on {channel}")

    def _handle(self, message: dict[str, Any] | None) -> None:
        if (
            message is not None
            and message["type"] == "message"
            and message["channel"].startswith(self._probe_channel + ":")
        ):
            if message["data"] == self._probe_token:
                self._probe_waiting.discard(message["channel"])
                if not self._probe_waiting:
                    self._probe_token = None
            return
        super()._handle(message)
