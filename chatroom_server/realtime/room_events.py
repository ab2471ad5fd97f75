"""Kicks, bans, mutes, rooms gone private or deleted: applied to this process's sockets.

services/members.py announces a RoomEvent; it is applied here at once and travels
through the broker's control room to every other process, which applies it too
(applying twice changes nothing). ControlRoom sorts the control room's payloads
between these and the session revocations.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable

from .. import protocol
from ..domain import RoomEvent
from .connection import CLOSE_GOING_AWAY, CLOSE_POLICY
from .hub import Hub
from .revocations import Revocations

log = logging.getLogger("chatroom_server.realtime")

# Why a socket closed, as its client reads it in the close frame.
REASONS = {
    "removed": "removed from the room",
    "left": "left the room",
    "banned": "banned from the room",
    "private": "room is private now",
}

# (room ID, user IDs) -> those of them who may still see the room.
Seers = Callable[[int, Iterable[int]], Awaitable[set[int]]]


class RoomEvents:
    def __init__(self, hub: Hub, seers: Seers, publish: Callable[[str], Awaitable[None]]) -> None:
        self.hub = hub
        self._seers = seers
        self._publish = publish
        self._tasks: set[asyncio.Task[None]] = set()

    async def announce(self, event: RoomEvent) -> None:
        """Apply here, then tell every other process (best effort: see SECURITY.md)."""
        self.apply(event)
        try:
            await self._publish(protocol.bus_room_event(event))
        except Exception:
            log.warning("could not announce a room change to other hosts")

    def hear(self, payload: str) -> None:
        try:
            event = protocol.parse_room_event(payload)
        except ValueError:
            log.warning("ignoring a malformed room event")
            return
        self.apply(event)

    def apply(self, event: RoomEvent) -> None:
        conns = self.hub.connections(event.room_id)
        if event.kind == "deleted":
            self.hub.close_room(event.room_id, CLOSE_GOING_AWAY, "room deleted")
        elif event.kind in ("removed", "left", "banned"):
            for conn in conns:
                if conn.user_id == event.user_id:
                    conn.close(CLOSE_POLICY, REASONS[event.kind])
        elif event.kind == "muted":
            until = event.until or math.inf
            for conn in conns:
                if conn.user_id == event.user_id:
                    conn.muted_until = until
        elif event.kind == "unmuted":
            for conn in conns:
                if conn.user_id == event.user_id:
                    conn.muted_until = 0.0
        elif event.kind == "private" and conns:
            task = asyncio.create_task(self._members_only(event.room_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _members_only(self, room_id: int) -> None:
        conns = self.hub.connections(room_id)
        try:
            keep = await self._seers(room_id, {c.user_id for c in conns})
        except Exception:
            log.warning("could not check who may stay in room %s", room_id, exc_info=True)
            return
        for conn in conns:
            if conn.user_id not in keep:
                conn.close(CLOSE_POLICY, REASONS["private"])


class ControlRoom:
    """The control room's listener: session revocations and room events."""

    def __init__(self, revocations: Revocations, rooms: RoomEvents) -> None:
        self.revocations = revocations
        self.rooms = rooms

    def hear(self, payload: str) -> None:
        if payload.startswith("e "):
            self.rooms.hear(payload)
        else:
            self.revocations.hear(payload)

    async def resynced(self) -> None:
        await self.revocations.resynced()
