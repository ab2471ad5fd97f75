"""Pub/sub between processes: a small Broker contract and its backends.

The broker knows rooms and encoded frames, never connections. Every process
publishes each committed message once; the broker hands it to `deliver` in every
process that subscribed to the room (the local hub then fans it out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Deliver = Callable[[int, str], None]


class Broker(Protocol):
    async def connect(self) -> None:
        """Open connections; called once before the server accepts clients."""

    async def disconnect(self) -> None:
        """Close connections; called once when the server stops."""

    async def subscribe(self, room_id: int) -> None:
        """Start receiving frames of `room_id` (on this process's first local connection)."""

    async def unsubscribe(self, room_id: int) -> None:
        """Stop receiving frames of `room_id` (on this process's last local connection)."""

    async def publish(self, room_id: int, frame: str) -> None:
        """Send an encoded frame to every process subscribed to `room_id`, this one included."""


def make_broker(url: str | None, deliver: Deliver) -> Broker:
    """Pick the backend by URL: none for one process, redis:// for several."""
    if url is None:
        from .memory import MemoryBroker

        return MemoryBroker(deliver)
    from ..errors import ConfigError

    raise ConfigError(
        "Redis scale-out is not available in this version yet; run without --redis-url."
    )
