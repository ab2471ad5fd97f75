"""The hub: which local connections are in which room, and the one road a message takes.

websocket text -> protocol decode -> services store (commit) -> protocol encode once
-> broker.publish -> every process's hub.deliver -> each connection's queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from .. import protocol
from ..domain import Identity, Message, Presence, Room
from ..pubsub import Broker, make_broker
from ..services import messages as message_service
from ..services import rooms as room_service
from .connection import CLOSE_GOING_AWAY, Connection

log = logging.getLogger("chatroom_server.realtime")


class Hub:
    def __init__(self, redis_url: str | None, room_check_interval: float) -> None:
        self.broker: Broker = make_broker(redis_url, self.deliver)
        self.room_check_interval = room_check_interval
        self._rooms: dict[int, set[Connection]] = {}
        # room -> user -> number of that user's local connections in the room
        self._members: dict[int, dict[int, int]] = {}
        # Store-then-publish runs under the room's lock, so frames leave this
        # process in ID order even when two senders race.
        self._locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._watcher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.broker.connect()
        self._watcher = asyncio.create_task(self._watch_deleted_rooms(), name="room-watcher")

    async def stop(self) -> None:
        """Close every connection with 1001 (shutting down) and disconnect the broker."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.wait({self._watcher})
            self._watcher = None
        for conns in list(self._rooms.values()):
            for conn in list(conns):
                conn.close(CLOSE_GOING_AWAY, "server shutting down")
        await self.broker.disconnect()

    # ------------------------------------------------------------------ membership

    @property
    def connection_count(self) -> int:
        return sum(len(conns) for conns in self._rooms.values())

    def rooms(self) -> list[int]:
        return list(self._rooms)

    def presence(self, room_id: int) -> Presence:
        """Users with a connection to the room in this process, by user ID."""
        conns = self._rooms.get(room_id, set())
        names = {conn.user_id: conn.identity.user_name for conn in conns}
        return Presence(sorted(names.items()), len(conns))

    async def join(self, conn: Connection) -> None:
        room_id = conn.room.id
        conns = self._rooms.get(room_id)
        if conns is None:
            conns = self._rooms[room_id] = set()
            await self.broker.subscribe(room_id)
        conns.add(conn)
        members = self._members.setdefault(room_id, {})
        members[conn.user_id] = members.get(conn.user_id, 0) + 1
        if members[conn.user_id] == 1:
            await self._announce("join", conn.room, conn.identity)

    async def leave(self, conn: Connection) -> None:
        room_id = conn.room.id
        conns = self._rooms.get(room_id)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        members = self._members[room_id]
        members[conn.user_id] -= 1
        if members[conn.user_id] == 0:
            del members[conn.user_id]
            await self._announce("leave", conn.room, conn.identity)
        if not conns:
            del self._rooms[room_id]
            del self._members[room_id]
            self._locks.pop(room_id, None)
            await self.broker.unsubscribe(room_id)

    async def _announce(self, event: str, room: Room, who: Identity) -> None:
        frame = protocol.presence_frame(event, room, who.user_id, who.user_name)
        try:
            await self.broker.publish(room.id, frame)
        except Exception:  # presence lines are best effort; messages are not
            log.warning("could not announce %s in room %s", event, room.id, exc_info=True)

    # ------------------------------------------------------------------ messages

    async def post(
        self, room: Room, author: Identity, text: str, client_message_id: str | None = None
    ) -> Message:
        """Store the message (committed), then publish it once to every process."""
        async with self._locks[room.id]:
            message = await message_service.store_message(room, author, text, client_message_id)
            await self.broker.publish(room.id, protocol.message_frame(message))
        return message

    def deliver(self, room_id: int, frame: str) -> None:
        """Broker callback: put the same encoded frame on every local connection's queue."""
        for conn in tuple(self._rooms.get(room_id, ())):
            conn.enqueue(frame)

    def close_room(self, room_id: int, code: int, reason: str) -> None:
        for conn in tuple(self._rooms.get(room_id, ())):
            conn.close(code, reason)

    async def _watch_deleted_rooms(self) -> None:
        # Rooms are deleted by the admin CLI, another process: look for them here.
        while True:
            await asyncio.sleep(self.room_check_interval)
            if not self._rooms:
                continue
            try:
                deleted = await room_service.deleted_among(self._rooms)
            except Exception:
                log.warning("could not check for deleted rooms", exc_info=True)
                continue
            for room_id in deleted:
                log.info("closing connections of deleted room %s", room_id)
                self.close_room(room_id, CLOSE_GOING_AWAY, "room deleted")
