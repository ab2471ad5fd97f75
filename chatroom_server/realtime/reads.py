"""Read markers that moved, told to the user's other connections on every host (SPEC 12).

A `read` frame goes to every v2 connection of the user, in any room (a tab
showing another room clears that room's badge too), except the connection that
moved the marker. Connections of protocol v1 never get it: seed-era clients
would show its Body as a chat line.

This process's connections get it at once, whatever the broker does; then the
control room carries it to every other process. Each process has an ID of its
own, in the payload, so it skips its own payloads when the broker hands them
back, and "the connection that moved it" (a token of its process: `id(conn)`)
cannot be mistaken for another host's. Best effort, like presence: a payload the
broker loses is lost, and the room list still has the marker.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

from .. import protocol
from .connection import Connection
from .hub import Hub

log = logging.getLogger("chatroom_server.realtime")

# The first protocol version whose connections get `read` frames.
READ_EVENTS_FROM = 2


class ReadFanout:
    def __init__(
        self,
        hub: Hub,
        publish: Callable[[str], Awaitable[None]],
        process_id: str | None = None,
    ) -> None:
        self.hub = hub
        self._publish = publish
        self.process_id = process_id or uuid.uuid4().hex[:16]

    async def announce(
        self,
        user_id: int,
        room_id: int,
        last_read_id: int,
        origin_conn: Connection | None = None,
    ) -> None:
        """The user's marker in the room moved to `last_read_id`: tell their other
        connections here at once, and every other process through the broker.
        `origin_conn`: the connection that moved it (it is not told); None for REST."""
        self.apply(user_id, room_id, last_read_id, origin_conn)
        read = protocol.BusRead(
            user_id,
            room_id,
            last_read_id,
            self.process_id,
            None if origin_conn is None else str(id(origin_conn)),
        )
        try:
            await self._publish(protocol.bus_read(read))
        except Exception:
            log.warning("could not tell other hosts of a read marker")

    def hear(self, payload: str) -> None:
        """Broker callback for the control room's read payloads."""
        try:
            read = protocol.parse_read(payload)
        except ValueError:
            log.warning("ignoring a malformed read payload")
            return
        if read.process == self.process_id:
            return  # applied when it was announced
        self.apply(read.user_id, read.room_id, read.last_read_id, None)

    def apply(
        self, user_id: int, room_id: int, last_read_id: int, origin: Connection | None
    ) -> None:
        conns = [
            conn
            for conn in self.hub.all_connections()
            if conn.user_id == user_id and conn.version >= READ_EVENTS_FROM and conn is not origin
        ]
        if not conns:
            return
        data = self.hub.encode((protocol.read_frame(room_id, last_read_id),))
        for conn in conns:
            conn.deliver(data)
