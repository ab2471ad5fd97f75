"""Pub/sub between processes: a small Broker contract and its backends.

The broker knows rooms and opaque text payloads, never connections. Every
process publishes each committed message once; the broker hands the payload to
`deliver` in every process subscribed to the room, the publishing one included
(its hub then fans it out). The payload format (the bus envelope) belongs to
`protocol`; brokers never look inside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ..errors import ChatError

if TYPE_CHECKING:  # redis is imported only when a Redis URL is configured
    from .redis import RedisBroker

Deliver = Callable[[int, str], None]

# Room 0 never exists: its channel is the control room, where processes tell each
# other of ended sessions (protocol.bus_revocation). Every process subscribes to it.
CONTROL_ROOM = 0
Resync = Callable[[], Awaitable[None]]


class BrokerUnavailable(ChatError):
    """The backend cannot take a publish right now (the caller falls back to local delivery)."""

    status = 503
    code = "broker_unavailable"


class Broker(Protocol):
    @property
    def healthy(self) -> bool:
        """False while the backend is unreachable or a subscription is known to be lost."""

    async def connect(self) -> None:
        """Open connections; called once before the server accepts clients."""

    async def disconnect(self) -> None:
        """Close connections and stop background tasks; called once when the server stops."""

    async def subscribe(self, room_id: int) -> None:
        """Start receiving payloads of `room_id` (on this process's first local connection)."""

    async def unsubscribe(self, room_id: int) -> None:
        """Stop receiving payloads of `room_id` (on this process's last local connection)."""

    async def publish(self, room_id: int, payload: str) -> None:
        """Send a payload to every process subscribed to `room_id`, this one included.

        Raises BrokerUnavailable when it could not be sent.
        """

    async def publish_many(self, items: Sequence[tuple[int, str]], echo: bool = True) -> None:
        """Publish several (room ID, payload) pairs, in order, in one round trip.

        With `echo` False the caller has delivered them in this process already:
        the broker spares this process its own payloads when they come back (best
        effort: after a reconnect one may still come, so `deliver` must take a
        duplicate; the relay's sequencer drops it by seq). Only for payloads no
        other process publishes (a stored row's, which carries its unique ID).
        Raises BrokerUnavailable when they could not all be sent.
        """


def make_broker(
    url: str | None,
    deliver: Deliver,
    on_resync: Resync | None = None,
    prefix: str = "chatroom",
    cluster: bool = False,
) -> Broker:
    """Pick the backend by URL: none for one process, redis:// for several
    (`cluster`: the URL names a node of a Redis Cluster; sharded pub/sub).

    `on_resync` is awaited after a lost subscription was re-established, so that
    the caller can back-fill from the database what it may have missed.
    """
    if url is None:
        from .memory import MemoryBroker

        return MemoryBroker(deliver)
    return _redis_broker(url, deliver, on_resync, prefix, cluster)


def _redis_broker(
    url: str, deliver: Deliver, on_resync: Resync | None, prefix: str, cluster: bool
) -> RedisBroker:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ChatError(f"unsupported broker URL scheme: {url.split(':', 1)[0]!r}")
    if cluster:
        from .redis_cluster import RedisClusterBroker

        return RedisClusterBroker(url, deliver, on_resync, prefix)
    from .redis import RedisBroker

    return RedisBroker(url, deliver, on_resync, prefix)


async def redis_refusal(url: str, cluster: bool) -> str | None:
    """Why a server must not start on the Redis at `url` (it is a cluster node and
    `cluster` is off, or the reverse), in one line; None when it may."""
    from .redis_connect import refusal

    return await refusal(url, cluster)


async def publish_once(
    url: str, room_id: int, payload: str, prefix: str = "chatroom", cluster: bool = False
) -> None:
    """From a process that is not a server (the admin CLI): send one payload to every
    server subscribed to `room_id` through the Redis at `url`, then disconnect.

    Raises BrokerUnavailable when it could not be sent, or would not be heard: servers
    on a cluster hear SPUBLISH only, servers on one Redis PUBLISH only.
    """
    problem = await redis_refusal(url, cluster)
    if problem is not None:
        raise BrokerUnavailable(problem)
    broker = _redis_broker(url, lambda room, data: None, None, prefix, cluster)
    await broker.publish_once(room_id, payload)
