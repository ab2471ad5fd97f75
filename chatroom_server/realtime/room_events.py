"""Kicks, bans, mutes, rooms gone private or deleted: applied to this process's sockets.

services/members.py announces a RoomEvent; it is applied here at once and travels
through the broker's control room to every other process, which applies it too
(applying twice changes nothing). ControlRoom sorts the control room's payloads
between these, the session revocations and read markers (reads.py).

A site admin may open any room; when the admin CLI takes that right away
("admin_off", or, unheard, the accounts mark it moves: realtime/revocations.py),
the user's sockets are checked again by the same verdicts as the sweep's, and
those to rooms they may no longer see close.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

from .. import protocol
from ..domain import Room, RoomEvent
from .connection import CLOSE_GOING_AWAY, CLOSE_POLICY, Connection
from .hub import Hub
from .keys import KeyWatch
from .reads import ReadFanout
from .revocations import Revocations

log = logging.getLogger("chatroom_server.realtime")

# Why a socket closed, as its client reads it in the close frame.
REASONS = {
    "removed": "removed from the room",
    "left": "left the room",
    "banned": "banned from the room",
    "private": "room is private now",
    "admin_off": "no longer a site admin",
}

# (room ID, user IDs) -> those of them who may still see the room.
Seers = Callable[[int, Iterable[int]], Awaitable[set[int]]]


class Verdict(Protocol):
    @property
    def stays(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def mute_deadline(self) -> float: ...


# (room ID, user ID) pairs of open sockets -> whether each may stay, and its mute.
Verdicts = Callable[[Iterable[tuple[int, int]]], Awaitable[Mapping[tuple[int, int], Verdict]]]


class RoomEvents:
    """Applies room events; and, since an event can be lost while the broker is away,
    checks every open socket against the database every `recheck` seconds until it
    is back, right after it resubscribed, and every `sweep_every` seconds anyway."""

    def __init__(
        self,
        hub: Hub,
        seers: Seers,
        publish: Callable[[str], Awaitable[None]],
        verdicts: Verdicts,
        load_room: Callable[[int], Awaitable[Room]],
        healthy: Callable[[], bool],
        recheck: float,
        sweep_every: float = 60.0,
    ) -> None:
        self.hub = hub
        self._seers = seers
        self._publish = publish
        self._verdicts = verdicts
        self._load_room = load_room
        self._healthy = healthy
        self.recheck = recheck
        self.sweep_every = sweep_every
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

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
        if event.kind == "admin_off":
            self._spawn(self._recheck_user(event.user_id))
            return
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
            self._spawn(self._members_only(event.room_id))
        elif event.kind == "renamed" and conns:
            self._spawn(self._reload(event.room_id))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload(self, room_id: int) -> None:
        try:
            room = await self._load_room(room_id)
        except Exception:
            return  # deleted meanwhile: that event closes its sockets
        self.hub.replace_room(room)

    async def sweep(self) -> None:
        await self._recheck(self.hub.all_connections())

    async def admins_changed(self) -> None:
        """A site admin's right may have been taken away, nobody said whose (the
        accounts mark moved): check the sockets opened by site admins."""
        await self._recheck([c for c in self.hub.all_connections() if c.opened_as_admin])

    async def _recheck_user(self, user_id: int) -> None:
        try:
            await self._recheck([c for c in self.hub.all_connections() if c.user_id == user_id])
        except Exception:
            log.warning("could not re-check user %s's room access", user_id, exc_info=True)

    async def _recheck(self, conns: list[Connection]) -> None:
        if not conns:
            return
        found = await self._verdicts({(c.room.id, c.user_id) for c in conns})
        for conn in conns:
            verdict = found.get((conn.room.id, conn.user_id))
            if verdict is None:
                continue
            if verdict.stays:
                conn.muted_until = verdict.mute_deadline
            elif verdict.reason == "deleted":
                conn.close(CLOSE_GOING_AWAY, "room deleted")
            elif verdict.reason == "removed" and conn.opened_as_admin:
                # Let in as a site admin and no longer seeing the room: the right is gone.
                conn.close(CLOSE_POLICY, REASONS["admin_off"])
            else:
                conn.close(CLOSE_POLICY, REASONS.get(verdict.reason, REASONS["removed"]))

    def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch(), name="room-access-recheck")

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._watcher] if self._watcher else [])]
        self._watcher = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_every
        while True:
            await asyncio.sleep(self.recheck)
            if self._healthy() and loop.time() < next_sweep:
                continue
            next_sweep = loop.time() + self.sweep_every
            try:
                await self.sweep()
            except Exception:
                log.warning("could not re-check open sockets' room access", exc_info=True)

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
    """The control room's listener: session revocations, room events, read markers and
    signing key rotations."""

    def __init__(
        self,
        revocations: Revocations,
        rooms: RoomEvents,
        reads: ReadFanout | None = None,
        keys: KeyWatch | None = None,
    ) -> None:
        self.revocations = revocations
        self.rooms = rooms
        self.reads = reads
        self.keys = keys

    def hear(self, payload: str) -> None:
        if payload.startswith("e "):
            self.rooms.hear(payload)
        elif payload.startswith("u "):
            if self.reads is not None:
                self.reads.hear(payload)
        elif payload.startswith("k "):
            if self.keys is not None:
                self.keys.hear(payload)
        else:
            self.revocations.hear(payload)

    async def resynced(self) -> None:
        await self.revocations.resynced()
        try:
            await self.rooms.sweep()
        except Exception:
            log.warning("could not re-check open sockets' room access", exc_info=True)
