"""The several-process broker: one Redis pub/sub channel per room.

Redis pub/sub delivers at most once, so this backend is built around noticing
when it may have missed something. One listener task owns the subscriber
connection: it reads messages, sends a probe through Redis to itself every
`probe_interval` seconds, and, when the connection breaks or a probe does not
come back, reconnects with capped backoff, subscribes again to every wanted
room and schedules `on_resync` so the hub can back-fill from the database.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from . import BrokerUnavailable, Deliver, Resync
from .redis_connect import FAILURES, check_mode

log = logging.getLogger("chatroom_server.pubsub")

_CONNECTION_ERRORS = FAILURES  # redis-py's errors and OSError (the builtin TimeoutError)

# Payloads published here with echo=False and not heard back yet, at most this many:
# past it they are forgotten (their echoes, should they come, go to deliver, which
# takes duplicates). Only an echo lost without a lost connection stays behind.
MAX_ECHOES = 65536


class _SubscriptionLost(Exception):
    """The subscriber connection may be deaf: start over."""


class _WrongMode(_SubscriptionLost):
    """The server is a cluster node and the broker is not a cluster one, or the reverse."""


class RedisBroker:
    """Broker over Redis pub/sub; see `chatroom_server.pubsub.Broker` for the contract."""

    # Whether the server must be a cluster node (redis_cluster.RedisClusterBroker).
    cluster = False

    def __init__(
        self,
        url: str,
        deliver: Deliver,
        on_resync: Resync | None = None,
        prefix: str = "chatroom",
        *,
        probe_interval: float = 5.0,
        probe_timeout: float | None = None,
        timeout: float = 1.5,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
    ) -> None:
        self._url = url
        self._deliver = deliver
        self._on_resync = on_resync
        self._room_prefix = f"{prefix}:room:"
        self._probe_channel = f"{prefix}:probe:{uuid.uuid4().hex}"
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout if probe_timeout is not None else probe_interval
        self._timeout = timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap

        self._client: Redis | None = None  # publishes (and probes)
        self._sub_client: Redis | None = None  # the subscriber connection's pool
        self._pubsub: PubSub | None = None
        self._wanted: set[int] = set()
        self._healthy = False
        self._listener: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        # SUBSCRIBE confirmations come back in order per channel: first waiter first.
        self._confirmations: dict[str, deque[asyncio.Future[None]]] = {}
        self._probe_token: str | None = None
        self._drop_reason: str | None = None
        self._wrong_mode: str | None = None  # logged once, not on every retry
        # Our own payloads on their way back (publish_many with echo=False), as a
        # set: recognised by one hash lookup, before anything else is done.
        self._echoes: dict[str, None] = {}

    @property
    def healthy(self) -> bool:
        return self._healthy

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Connect and start listening; if Redis is down, keep retrying in the background."""
        if self._listener is not None:
            return
        # No retries inside redis-py: a failed publish must fail fast. The subscriber
        # also gets no failure handler at all, because redis-py's PubSub reconnects
        # and resubscribes from it even with zero retries, behind the listener's back.
        self._client = self._make_client(Retry(NoBackoff(), 0))
        self._sub_client = self._make_client(Retry(NoBackoff(), 0, supported_errors=()))
        try:
            await self._open_session()
            self._healthy = True
        except _WrongMode:
            pass  # logged as an error; /readyz reports it until the server is right
        except _CONNECTION_ERRORS + (_SubscriptionLost,) as exc:
            log.warning("Redis pub/sub is unreachable (%s); retrying in the background", exc)
        self._listener = asyncio.create_task(self._listen(), name="chatroom-redis-listener")

    async def disconnect(self) -> None:
        tasks = [t for t in (self._listener, self._resync_task) if t is not None]
        self._listener = self._resync_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._healthy = False
        self._wanted.clear()
        self._echoes.clear()
        self._release_confirmations()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _close_quietly(pubsub)
        clients = [c for c in (self._client, self._sub_client) if c is not None]
        self._client = self._sub_client = None
        for client in clients:
            await _close_quietly(client)

    # ------------------------------------------------------------------ the contract

    async def subscribe(self, room_id: int) -> None:
        """Subscribe and wait for Redis to confirm, so a publish right after is heard.

        While disconnected this only records the room; the reconnect subscribes it.
        """
        if room_id in self._wanted:
            return
        self._wanted.add(room_id)
        pubsub = self._live_pubsub()
        if pubsub is None:
            return
        channel = self._room_channel(room_id)
        waiter = asyncio.get_running_loop().create_future()
        # The waiter stays queued even if this call is cancelled: the confirmation
        # of this SUBSCRIBE still comes and must not be taken for a later one.
        self._confirmations.setdefault(channel, deque()).append(waiter)
        try:
            await pubsub.subscribe(channel)
            await asyncio.wait_for(asyncio.shield(waiter), 2 * self._timeout)
        except _CONNECTION_ERRORS as exc:
            await self._drop(pubsub, f"SUBSCRIBE to {channel} failed: {exc}")

    async def unsubscribe(self, room_id: int) -> None:
        if room_id not in self._wanted:
            return
        # Deliveries stop now: the listener drops payloads of rooms no longer wanted.
        self._wanted.discard(room_id)
        pubsub = self._live_pubsub()
        if pubsub is None:
            return
        channel = self._room_channel(room_id)
        try:
            await pubsub.unsubscribe(channel)
        except _CONNECTION_ERRORS as exc:
            await self._drop(pubsub, f"UNSUBSCRIBE from {channel} failed: {exc}")

    async def publish(self, room_id: int, payload: str) -> None:
        client = self._client
        if client is None:
            raise BrokerUnavailable("the Redis broker is not connected")
        try:
            await client.publish(self._room_channel(room_id), payload)
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"Redis is unreachable: {exc}") from exc

    async def publish_many(self, items: Sequence[tuple[int, str]], echo: bool = True) -> None:
        client = self._client
        if client is None:
            raise BrokerUnavailable("the Redis broker is not connected")
        # One pipeline (not a transaction): one round trip, PUBLISHes in order.
        pipe = client.pipeline(transaction=False)
        expect = not echo and self._live_pubsub() is not None
        echoes, wanted = self._echoes, self._wanted
        for room_id, payload in items:
            self._queue_publish(pipe, self._room_channel(room_id), payload)
            if expect and room_id in wanted:
                echoes[payload] = None  # before the await: the echo may come back first
        if len(echoes) > MAX_ECHOES:
            echoes.clear()
        try:
            await pipe.execute()
        except _CONNECTION_ERRORS as exc:
            if expect:
                for _, payload in items:
                    echoes.pop(payload, None)
            raise BrokerUnavailable(f"Redis is unreachable: {exc}") from exc

    def _queue_publish(self, pipe: Any, channel: str, payload: str) -> None:
        """Add one publish to a pipeline (the cluster's broker sends SPUBLISH)."""
        pipe.publish(channel, payload)

    async def publish_once(self, room_id: int, payload: str) -> None:
        """Publish one payload with no subscriber and no listener: for a process that
        only speaks (the admin CLI). Raises BrokerUnavailable when it could not be sent."""
        client = self._make_client(Retry(NoBackoff(), 0))
        try:
            await client.publish(self._room_channel(room_id), payload)
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"Redis is unreachable: {exc}") from exc
        finally:
            await _close_quietly(client)

    # ------------------------------------------------------------------ the listener

    async def _listen(self) -> None:
        while True:
            pubsub = self._pubsub
            if pubsub is None:
                await self._reconnect()
                continue
            try:
                await self._read(pubsub)
            except (*_CONNECTION_ERRORS, _SubscriptionLost) as exc:
                await self._lost(pubsub, self._drop_reason or str(exc) or type(exc).__name__)
            except Exception as exc:
                log.exception("Redis pub/sub listener failed unexpectedly")
                await self._lost(pubsub, repr(exc))
                await asyncio.sleep(self._backoff_cap)  # a bug must not spin the loop

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        next_probe = loop.time() + self._probe_interval
        probe_deadline = 0.0
        while True:
            if self._drop_reason is not None or not _connected(pubsub):
                raise _SubscriptionLost(self._drop_reason or "connection closed")
            now = loop.time()
            if self._probe_token is not None and now >= probe_deadline:
                raise _SubscriptionLost(
                    f"probe did not come back within {self._probe_timeout:.1f} s"
                )
            if self._probe_token is None and now >= next_probe:
                probe_deadline = now + self._probe_timeout
                next_probe = now + self._probe_interval
                await self._send_probe()
                continue
            wake = probe_deadline if self._probe_token is not None else next_probe
            self._handle(await pubsub.get_message(timeout=max(wake - now, 0.001)))

    async def _send_probe(self) -> None:
        assert self._client is not None
        token = uuid.uuid4().hex
        self._probe_token = token
        receivers = await self._client.publish(self._probe_channel, token)
        if receivers == 0:
            # Redis itself says we are not subscribed (connection replaced or dropped).
            raise _SubscriptionLost("Redis lists no subscriber on the probe channel")

    def _handle(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        kind, channel = message["type"], message["channel"]
        if kind == "subscribe":
            waiters = self._confirmations.get(channel)
            if waiters:
                waiter = waiters.popleft()
                if not waiters:
                    del self._confirmations[channel]
                if not waiter.done():
                    waiter.set_result(None)
            return
        if kind != "message":
            return
        data: str = message["data"]
        if self._echoes and self._echoes.pop(data, 0) is None:
            return  # our own publish, delivered here already
        if channel == self._probe_channel:
            if data == self._probe_token:
                self._probe_token = None
            return
        if not channel.startswith(self._room_prefix):
            return
        try:
            room_id = int(channel[len(self._room_prefix) :])
        except ValueError:
            return
        if room_id not in self._wanted:
            return  # unsubscribed while the payload was on its way
        try:
            self._deliver(room_id, data)
        except Exception:
            log.exception("deliver failed for room %s", room_id)

    # ------------------------------------------------------------------ losing and regaining

    async def _lost(self, pubsub: PubSub, reason: str) -> None:
        if self._healthy:
            log.warning("Redis pub/sub lost (%s); reconnecting with backoff", reason)
        self._healthy = False
        if self._pubsub is pubsub:
            self._pubsub = None
        self._echoes.clear()  # what was on its way may never come back
        self._release_confirmations()
        await _close_quietly(pubsub)

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            try:
                await self._open_session()
                break
            except (*_CONNECTION_ERRORS, _SubscriptionLost) as exc:
                attempt += 1
                delay = min(self._backoff_cap, self._backoff_base * 2 ** min(attempt, 30))
                delay *= random.uniform(0.5, 1.0)
                log.debug(
                    "Redis reconnect attempt %d failed (%s); next in %.2f s", attempt, exc, delay
                )
                await asyncio.sleep(delay)
        self._healthy = True
        log.info(
            "Redis pub/sub recovered after %.1f s; %d room(s) subscribed again",
            loop.time() - started,
            len(self._wanted),
        )
        self._schedule_resync()

    async def _open_session(self) -> None:
        """Connect a fresh subscriber, subscribe to every wanted room, wait for Redis to confirm."""
        await self._check_mode()
        pubsub = self._new_pubsub()
        self._drop_reason = None
        self._probe_token = None
        try:
            # Connected before it is published and the wanted rooms are read, with no
            # await in between: a subscribe() made before is in the snapshot, one made
            # after finds a live connection and sends its own SUBSCRIBE.
            await pubsub.connect()  # type: ignore[no-untyped-call]
            self._pubsub = pubsub
            channels = [self._probe_channel, *map(self._room_channel, self._wanted)]
            pending = set(channels)
            await pubsub.subscribe(*channels)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2 * self._timeout
            while pending:
                if not _connected(pubsub) or self._drop_reason is not None:
                    raise _SubscriptionLost(self._drop_reason or "connection closed")
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise _SubscriptionLost("Redis did not confirm the subscriptions")
                message = await pubsub.get_message(timeout=remaining)
                if message is not None and message["type"] == "subscribe":
                    pending.discard(message["channel"])
                self._handle(message)
        except BaseException:
            if self._pubsub is pubsub:
                self._pubsub = None
            await _close_quietly(pubsub)
            raise

    async def _drop(self, pubsub: PubSub, reason: str) -> None:
        """Make the listener start over: its pending read fails once the socket closes."""
        if self._pubsub is not pubsub or self._drop_reason is not None:
            return
        self._drop_reason = reason
        if pubsub.connection is not None:
            try:
                await pubsub.connection.disconnect(nowait=True)
            except _CONNECTION_ERRORS as exc:
                log.debug("closing the subscriber connection failed: %s", exc)

    async def _check_mode(self) -> None:
        """Refuse a server whose mode (cluster or not) is not this broker's: half-working."""
        problem = await check_mode(self._url, self.cluster, self._timeout)
        if problem is not None:
            if problem != self._wrong_mode:
                log.error("%s", problem)
            self._wrong_mode = problem
            raise _WrongMode(problem)
        self._wrong_mode = None

    def _new_pubsub(self) -> PubSub:
        assert self._sub_client is not None
        return self._sub_client.pubsub()

    def _schedule_resync(self) -> None:
        if self._on_resync is None:
            return
        self._resync_task = asyncio.create_task(
            self._resync(self._on_resync, self._resync_task), name="chatroom-redis-resync"
        )

    async def _resync(self, on_resync: Resync, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)  # one back-fill at a time
        try:
            await on_resync()
        except Exception:
            log.exception("back-fill after the Redis reconnect failed")

    # ------------------------------------------------------------------ helpers

    def _make_client(self, retry: Retry) -> Redis:
        return Redis.from_url(
            self._url,
            decode_responses=True,
            socket_connect_timeout=self._timeout,
            socket_timeout=self._timeout,
            retry=retry,
            health_check_interval=0,
            # With RESP3, redis-py turns on maintenance notifications, which skips the
            # pool's check for connections that died while idle: after a Redis restart
            # the first publish would fail on a stale socket.
            protocol=2,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )

    def _room_channel(self, room_id: int) -> str:
        return f"{self._room_prefix}{room_id}"

    def _live_pubsub(self) -> PubSub | None:
        pubsub = self._pubsub
        # A disconnected PubSub would silently reconnect on the next command and
        # skip the back-fill; leave reconnecting to the listener.
        if pubsub is None or not _connected(pubsub) or self._drop_reason is not None:
            return None
        return pubsub

    def _release_confirmations(self) -> None:
        # The wanted set already holds these rooms; the next session subscribes them.
        for waiters in self._confirmations.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._confirmations.clear()


def _connected(pubsub: PubSub) -> bool:
    return pubsub.connection is not None and bool(pubsub.connection.is_connected)


async def _close_quietly(closable: PubSub | Redis) -> None:
    try:
        await closable.aclose()
    except Exception as exc:
        log.debug("closing a Redis connection failed: %s", exc)
