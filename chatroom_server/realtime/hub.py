"""The hub: which local connections are in which room, and writing frames to them.

It knows connections and rooms, never the broker, presence or the database:
the relay (relay.py) decides what reaches a room and in which order; the hub
writes it to every local connection of the room, encoded once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .. import metrics
from ..domain import Room
from ..protocol import MAX_ID
from .connection import Connection, Encode


@dataclass
class LocalRoom:
    """A room with at least one connection in this process."""

    room: Room
    encode: Encode
    loop: asyncio.AbstractEventLoop
    conns: set[Connection] = field(default_factory=set)
    # Frames (message ID or None, text) that arrived during this turn of the event
    # loop: written together at its end, one write per connection for all of them.
    pending: list[tuple[int | None, str]] = field(default_factory=list)
    # Positions in `pending` of frames for protocol v2 connections only (edits and
    # deletes); None when there are none, the usual case, and then every connection
    # gets the same data.
    v2_marks: list[int] | None = None

    def push(self, message_id: int | None, frame: str, v2_only: bool = False) -> None:
        if not self.pending:
            self.loop.call_soon(self.flush)
        if v2_only:
            if self.v2_marks is None:
                self.v2_marks = []
            self.v2_marks.append(len(self.pending))
        self.pending.append((message_id, frame))

    def flush(self) -> None:
        """Encode the pending frames once and write the same data to every connection."""
        pending, self.pending = self.pending, []
        marks, self.v2_marks = self.v2_marks, None
        if not pending or not self.conns:
            return
        conns = tuple(self.conns)
        if marks is None:
            self._write(pending, conns)
            return
        # Protocol v1 connections get the frames of SPEC section 5 only.
        v2 = tuple(conn for conn in conns if conn.version != 1)
        if v2:
            self._write(pending, v2)
        if len(v2) < len(conns):
            skip = set(marks)
            rest = [item for i, item in enumerate(pending) if i not in skip]
            if rest:
                self._write(rest, tuple(conn for conn in conns if conn.version == 1))

    def _write(self, pending: list[tuple[int | None, str]], conns: tuple[Connection, ...]) -> None:
        ids = [message_id for message_id, _ in pending if message_id is not None]
        first_id = ids[0] if ids else MAX_ID
        shared = self.encode([frame for _, frame in pending])
        single: list[object] | None = None
        for conn in conns:
            if conn.deliver_shared(shared, first_id, len(pending)):
                continue
            # Held for a replay, or just replayed: frame by frame, each checked.
            if single is None:
                single = [self.encode((frame,)) for _, frame in pending]
            for (message_id, _), data in zip(pending, single, strict=True):
                conn.deliver(data, message_id)
        if ids:
            metrics.MESSAGES_DELIVERED.inc(len(ids) * len(conns))


class Hub:
    """Rooms with local connections, and their connections.

    `encode` turns a list of text frames into what the connections' transports
    write in one go (the web layer's choice: see web/internals).
    """

    def __init__(self, encode: Encode) -> None:
        self.encode = encode
        self._rooms: dict[int, LocalRoom] = {}

    @property
    def connection_count(self) -> int:
        return sum(len(local.conns) for local in self._rooms.values())

    def rooms(self) -> list[int]:
        return list(self._rooms)

    def connections(self, room_id: int) -> tuple[Connection, ...]:
        local = self._rooms.get(room_id)
        return tuple(local.conns) if local else ()

    def all_connections(self) -> list[Connection]:
        return [conn for local in self._rooms.values() for conn in local.conns]

    def room(self, room_id: int) -> Room | None:
        """The room, if it has connections in this process (its sockets share one object)."""
        local = self._rooms.get(room_id)
        return local.room if local is not None else None

    def replace_room(self, room: Room) -> None:
        """The room changed (renamed): its connections here carry the new one."""
        local = self._rooms.get(room.id)
        if local is None:
            return
        local.room = room
        for conn in local.conns:
            conn.room = room

    def add(self, conn: Connection) -> bool:
        """Put the connection in its room; True if it opened the room in this process."""
        local = self._rooms.get(conn.room.id)
        opened = local is None
        if local is None:
            local = LocalRoom(conn.room, self.encode, asyncio.get_running_loop())
            self._rooms[conn.room.id] = local
            metrics.ROOMS.inc()
        local.conns.add(conn)
        metrics.CONNECTIONS.inc()
        return opened

    def remove(self, conn: Connection) -> tuple[bool, bool]:
        """Take the connection out: (it was in, and its room is now closed here)."""
        room_id = conn.room.id
        local = self._rooms.get(room_id)
        if local is None or conn not in local.conns:
            return False, False
        local.conns.discard(conn)
        metrics.CONNECTIONS.dec()
        if local.conns or self._rooms.get(room_id) is not local:
            return True, False
        del self._rooms[room_id]
        metrics.ROOMS.dec()
        return True, True

    def push(self, room_id: int, message_id: int | None, frame: str, v2_only: bool = False) -> None:
        """Send a frame to every local connection of the room, at the end of this loop turn
        (`v2_only`: to those that asked for protocol v2)."""
        local = self._rooms.get(room_id)
        if local is not None:
            local.push(message_id, frame, v2_only)

    def push_typing(self, room_id: int, typist: int, frame: str) -> None:
        """Send a typing frame to the room's protocol v2 connections of everyone but the
        typist, now (it is in no order with the room's messages)."""
        local = self._rooms.get(room_id)
        if local is None:
            return
        data = None
        for conn in local.conns:
            if conn.version != 1 and conn.user_id != typist:
                if data is None:
                    data = self.encode((frame,))
                conn.deliver(data)

    def close_room(self, room_id: int, code: int, reason: str) -> None:
        local = self._rooms.get(room_id)
        for conn in tuple(local.conns if local else ()):
            conn.close(code, reason)

    def close_all(self, code: int, reason: str) -> None:
        for conn in self.all_connections():
            conn.close(code, reason)
