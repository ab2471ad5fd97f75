"""Who is connected to which room, across every process sharing a broker.

`add` and `remove` answer whether the user's first connection to the room just
opened, or their last one just closed, anywhere: that is when the hub announces
`join` and `leave`. With Redis, entries carry an expiry that their host keeps
pushing forward (`refresh`), so a host that dies silently drops out by itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..domain import Presence


@dataclass(frozen=True, slots=True)
class Entry:
    room_id: int
    user_id: int
    user_name: str
    conn_key: str  # unique per connection (the store adds the host)


class PresenceStore(Protocol):
    async def add(self, entry: Entry) -> bool:
        """Record a connection; True if it is the user's only one in the room."""

    async def remove(self, entry: Entry) -> bool:
        """Forget a connection; True if the user has no other one left in the room."""

    async def list(self, room_id: int) -> Presence:
        """Users (by ID) and open connections in the room, on every host."""

    async def refresh(self, entries: Iterable[Entry]) -> None:
        """Keep this host's live connections from expiring."""

    async def close(self) -> None: ...


class LocalPresence:
    """One process: counts in memory, nothing expires."""

    def __init__(self) -> None:
        self._rooms: dict[int, dict[int, tuple[str, set[str]]]] = {}

    async def add(self, entry: Entry) -> bool:
        users = self._rooms.setdefault(entry.room_id, {})
        _, conns = users.setdefault(entry.user_id, (entry.user_name, set()))
        conns.add(entry.conn_key)
        return len(conns) == 1

    async def remove(self, entry: Entry) -> bool:
        users = self._rooms.get(entry.room_id, {})
        found = users.get(entry.user_id)
        if found is None:
            return False
        found[1].discard(entry.conn_key)
        if found[1]:
            return False
        del users[entry.user_id]
        if not users:
            self._rooms.pop(entry.room_id, None)
        return True

    async def list(self, room_id: int) -> Presence:
        users = self._rooms.get(room_id, {})
        return Presence(
            sorted((uid, name) for uid, (name, _) in users.items()),
            sum(len(conns) for _, conns in users.values()),
        )

    async def refresh(self, entries: Iterable[Entry]) -> None:
        pass

    async def close(self) -> None:
        self._rooms.clear()


def make_presence(url: str | None, prefix: str, ttl: float, cluster: bool = False) -> PresenceStore:
    if url is None:
        return LocalPresence()
    from .redis_presence import RedisPresence

    return RedisPresence(url, prefix, ttl, cluster=cluster)
