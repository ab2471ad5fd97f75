"""The hub: which local connections are in which room, and the one road a message takes.

websocket text -> protocol decode -> services store (commit) -> protocol encode once
-> broker.publish -> every process's hub.deliver -> room sequencer -> each
connection's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from .. import metrics, protocol
from ..domain import Identity, Message, Presence, Room
from ..errors import StorageError
from ..protocol import MAX_ID
from ..pubsub import Broker, BrokerUnavailable, make_broker
from ..pubsub.presence import Entry, PresenceStore, make_presence
from ..services import messages as message_service
from ..services import rooms as room_service
from ..services.writer import MessageWriter
from .connection import CLOSE_GOING_AWAY, CLOSE_INTERNAL, Connection, wire_frame, wire_frames
from .sequencer import BACKFILL_BATCH, Sequencer

log = logging.getLogger("chatroom_server.realtime")


@dataclass
class LocalRoom:
    """A room with at least one connection in this process."""

    room: Room
    sequencer: Sequencer
    loop: asyncio.AbstractEventLoop
    conns: set[Connection] = field(default_factory=set)
    # Frames (message ID or None, text) that arrived during this turn of the event
    # loop: written together at its end, one write per connection for all of them.
    pending: list[tuple[int | None, str]] = field(default_factory=list)

    def push(self, message_id: int | None, frame: str) -> None:
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append((message_id, frame))

    def flush(self) -> None:
        """Encode the pending frames once and write the same bytes to every connection."""
        pending, self.pending = self.pending, []
        if not pending or not self.conns:
            return
        ids = [message_id for message_id, _ in pending if message_id is not None]
        first_id = ids[0] if ids else MAX_ID
        shared = wire_frames([frame for _, frame in pending])
        single: list[bytes] | None = None
        conns = tuple(self.conns)
        for conn in conns:
            if conn.deliver_shared(shared, first_id, len(pending)):
                continue
            # Held for a replay, or just replayed: frame by frame, each checked.
            if single is None:
                single = [wire_frame(frame) for _, frame in pending]
            for (message_id, _), data in zip(pending, single, strict=True):
                conn.deliver(data, message_id)
        if ids:
            metrics.MESSAGES_DELIVERED.inc(len(ids) * len(conns))


class Hub:
    def __init__(
        self,
        redis_url: str | None,
        room_check_interval: float,
        redis_prefix: str = "chatroom",
        presence_ttl: float = 30.0,
    ) -> None:
        self.broker: Broker = make_broker(redis_url, self.deliver, self._resync, redis_prefix)
        self.presence_store: PresenceStore = make_presence(redis_url, redis_prefix, presence_ttl)
        self.writer = MessageWriter(self._publish)
        self.room_check_interval = room_check_interval
        self.presence_ttl = presence_ttl
        self._rooms: dict[int, LocalRoom] = {}
        self._joining: dict[Connection, asyncio.Future[None]] = {}
        self._writes: set[asyncio.Future[tuple[Message, bool]]] = set()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.broker.connect()
        self._tasks = [
            asyncio.create_task(self._watch_deleted_rooms(), name="room-watcher"),
            asyncio.create_task(self._refresh_presence(), name="presence-refresh"),
        ]

    async def stop(self) -> None:
        """Close every connection with 1001 (shutting down) and disconnect the broker."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks = []
        for local in list(self._rooms.values()):
            for conn in list(local.conns):
                conn.close(CLOSE_GOING_AWAY, "server shutting down")
        if self._writes:
            # Messages being stored now finish (committed, or their sender was told).
            await asyncio.wait(set(self._writes), timeout=10)
        for local in list(self._rooms.values()):
            for conn in list(local.conns):
                # The handlers may not get to run again before the loop stops.
                with contextlib.suppress(Exception):
                    await self.presence_store.remove(self._entry(conn))
            local.sequencer.close()
        await self.presence_store.close()
        await self.broker.disconnect()

    # ------------------------------------------------------------------ membership

    @property
    def connection_count(self) -> int:
        return sum(len(local.conns) for local in self._rooms.values())

    def rooms(self) -> list[int]:
        return list(self._rooms)

    def connections(self, room_id: int) -> tuple[Connection, ...]:
        local = self._rooms.get(room_id)
        return tuple(local.conns) if local else ()

    def local_room(self, room_id: int) -> Room | None:
        """The room, if it has connections in this process (its sockets share one object)."""
        local = self._rooms.get(room_id)
        return local.room if local is not None else None

    async def presence(self, room_id: int) -> Presence:
        """Users connected to the room and open connections, on every host."""
        return await self.presence_store.list(room_id)

    @staticmethod
    def _entry(conn: Connection) -> Entry:
        return Entry(conn.room.id, conn.user_id, conn.identity.user_name, str(id(conn)))

    async def join(self, conn: Connection) -> None:
        """Add a connection to its room (subscribing the process on its first one).

        Membership changes run to the end even if the caller is cancelled (Sanic
        cancels a handler whose client went away): a room left half-opened would
        hold every later message back.
        """
        task = asyncio.ensure_future(self._join(conn))
        self._joining[conn] = task
        try:
            await asyncio.shield(task)
        finally:
            if task.done():
                self._joining.pop(conn, None)

    async def _join(self, conn: Connection) -> None:
        room_id = conn.room.id
        local = self._rooms.get(room_id)
        opened = local is None
        if local is None:
            local = self._open_room(conn.room)
        # In the room before any await, so that nobody else's leave closes it meanwhile.
        local.conns.add(conn)
        metrics.CONNECTIONS.inc()
        if opened:
            try:
                # Subscribe first, then read where the room is: nothing falls in between.
                try:
                    await self.broker.subscribe(room_id)
                except Exception:
                    # The broker keeps the room wanted and subscribes it when it is back,
                    # then resyncs: the room works locally meanwhile.
                    log.warning("could not subscribe room %s yet", room_id, exc_info=True)
                local.sequencer.start(await room_service.last_seq(room_id))
            except Exception:
                log.exception("could not open room %s", room_id)
                for other in tuple(local.conns):
                    other.close(CLOSE_INTERNAL, "internal error")
                await self._drop(conn)
                raise
        try:
            first = await self.presence_store.add(self._entry(conn))
        except BrokerUnavailable:
            first = False  # presence is best effort; messages are not
        if first:
            await self._announce("join", conn.room, conn.identity)

    def _open_room(self, room: Room) -> LocalRoom:
        async def fetch(after_seq: int) -> list[tuple[Message, str]]:
            found = await message_service.after_seq(room, after_seq, BACKFILL_BATCH)
            return [(m, protocol.message_frame(m)) for m in found]

        local = LocalRoom(
            room,
            Sequencer(lambda mid, frame: local.push(mid, frame), fetch),
            asyncio.get_running_loop(),
        )
        self._rooms[room.id] = local
        metrics.ROOMS.inc()
        return local

    async def leave(self, conn: Connection) -> None:
        """Remove a connection (after its join, if that is still running); idempotent."""
        pending = self._joining.pop(conn, None)
        if pending is not None:
            await asyncio.wait({pending})
        await asyncio.shield(asyncio.ensure_future(self._leave(conn)))

    async def _leave(self, conn: Connection) -> None:
        try:
            if not await self._drop(conn):
                return
            try:
                last = await self.presence_store.remove(self._entry(conn))
            except BrokerUnavailable:
                last = False
            if last and not self._stopping:
                await self._announce("leave", conn.room, conn.identity)
        except Exception:
            # Nobody awaits a leave whose handler was cancelled: report it here. During
            # shutdown Redis may already be closed; hub.stop() cleaned presence up.
            if not self._stopping:
                log.warning("leaving room %s failed", conn.room.id, exc_info=True)

    async def _drop(self, conn: Connection) -> bool:
        """Take the connection out of its room; close the room when it was the last."""
        room_id = conn.room.id
        local = self._rooms.get(room_id)
        if local is None or conn not in local.conns:
            return False
        local.conns.discard(conn)
        metrics.CONNECTIONS.dec()
        if not local.conns and self._rooms.get(room_id) is local:
            del self._rooms[room_id]
            metrics.ROOMS.dec()
            local.sequencer.close()
            if not self._stopping:
                await self.broker.unsubscribe(room_id)
        return True

    async def _announce(self, event: str, room: Room, who: Identity) -> None:
        payload = protocol.bus_presence(
            protocol.presence_frame(event, room, who.user_id, who.user_name)
        )
        try:
            await self.broker.publish(room.id, payload)
        except BrokerUnavailable:
            self.deliver(room.id, payload)  # at least this process hears it

    # ------------------------------------------------------------------ messages

    def post(
        self, room: Room, author: Identity, text: str, client_message_id: str | None = None
    ) -> asyncio.Future[tuple[Message, bool]]:
        """Store the message (committed), then publish it once to every process.

        The future resolves to the message and whether it was a resend of one
        already stored (which is not published again). Messages are stored and
        published in the order posted. The write goes on even if the sender's
        handler is cancelled (its client went away): a message is either stored
        and delivered, or it failed.
        """
        if self._stopping:
            raise StorageError("The server is shutting down; the message was not stored.")
        work = self.writer.submit(room, author, text, client_message_id)
        self._writes.add(work)
        work.add_done_callback(self._write_done)
        return work

    def _write_done(self, work: asyncio.Future[tuple[Message, bool]]) -> None:
        self._writes.discard(work)

    async def _publish(self, messages: list[Message]) -> None:
        """After a commit, in commit order: every process's hub gets each new message."""
        items = [(m.room_id, protocol.bus_message(m, protocol.message_frame(m))) for m in messages]
        try:
            await self.broker.publish_many(items)
            heard = self.broker.healthy
        except BrokerUnavailable:
            heard = False
        if not heard:
            # Stored is stored: deliver here now (the sequencer drops the echo if one
            # comes); other hosts back-fill them by seq.
            for room_id, payload in items:
                self.deliver(room_id, payload)

    def deliver(self, room_id: int, payload: str) -> None:
        """Broker callback: hand the encoded frame to every local connection, in order."""
        local = self._rooms.get(room_id)
        if local is None:
            return
        try:
            item = protocol.parse_bus(payload)
        except ValueError:
            log.warning("ignoring a malformed bus payload for room %s", room_id)
            return
        if item.seq is None or item.message_id is None:
            local.push(None, item.frame)
        else:
            local.sequencer.offer(item.seq, item.message_id, item.frame)

    async def _resync(self) -> None:
        """The broker may have dropped payloads: let every room look in the database."""
        for local in list(self._rooms.values()):
            local.sequencer.resync()

    def close_room(self, room_id: int, code: int, reason: str) -> None:
        local = self._rooms.get(room_id)
        for conn in tuple(local.conns if local else ()):
            conn.close(code, reason)

    async def _refresh_presence(self) -> None:
        # Push this host's entries' expiry forward well before they lapse.
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            entries = [self._entry(c) for local in self._rooms.values() for c in local.conns]
            if not entries:
                continue
            try:
                await self.presence_store.refresh(entries)
            except BrokerUnavailable:
                log.warning("could not refresh presence")

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
