"""The relay: the one road a message takes, between the store, the broker and the hub.

    post:    writer (group commit in the store) -> protocol encode once -> broker.publish
    change:  store.store_change (an edit or delete, next in the room's order) -> the same
    deliver: broker -> protocol.parse_bus -> the room's sequencer -> hub.push

Edits, deletes and typing are protocol v2 events: the hub writes them to the
connections that asked for v2 only.

It also keeps this process's rooms subscribed while they have local connections,
announces joins and leaves through presence, replays a reconnecting client's
backlog, and closes the sockets of rooms deleted elsewhere. Everything it talks
to is handed in by create_app: the hub, the message store, the broker (made
from the relay's own callbacks) and presence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

from .. import protocol
from ..db import store as stored
from ..db.store import ChangeDraft, MessageStore
from ..domain import DELETE, Change, Identity, Message, Presence, Room
from ..errors import StorageError
from ..pubsub import CONTROL_ROOM, Broker, BrokerUnavailable, Deliver, Resync
from ..pubsub.presence import Entry, PresenceStore
from ..services.writer import MessageWriter
from .connection import CLOSE_GOING_AWAY, CLOSE_INTERNAL, Connection
from .hub import Hub
from .sequencer import BACKFILL_BATCH, Fetched, Sequencer
from .typing import TypingThrottle

log = logging.getLogger("chatroom_server.realtime")

MakeBroker = Callable[[Deliver, Resync], Broker]


class Control(Protocol):
    """Who listens to the control room (realtime/revocations.py)."""

    def hear(self, payload: str) -> None: ...

    async def resynced(self) -> None: ...


DeletedAmong = Callable[[Iterable[int]], Awaitable[set[int]]]

# A reconnecting client is replayed at most this many messages, then told to
# page through the history API for the rest.
REPLAY_LIMIT = 1000


class Relay:
    def __init__(
        self,
        hub: Hub,
        store: MessageStore,
        make_broker: MakeBroker,
        presence: PresenceStore,
        deleted_among: DeletedAmong,
        room_check_interval: float,
        presence_ttl: float = 30.0,
    ) -> None:
        self.hub = hub
        self.store = store
        self.broker = make_broker(self.deliver, self.resync)
        self.presence_store = presence
        self.writer = MessageWriter(self._publish, store.store_batch)
        self._deleted_among = deleted_among
        self.room_check_interval = room_check_interval
        self.presence_ttl = presence_ttl
        self._sequencers: dict[int, Sequencer] = {}
        # Rooms being opened here (subscribed, then their last seq read): a second
        # connection waits for that before it reads a backlog, or it could miss a
        # message committed meanwhile. True once open, False if opening failed.
        self._opening: dict[int, asyncio.Future[bool]] = {}
        self._joining: dict[Connection, asyncio.Future[None]] = {}
        self._writes: set[asyncio.Future[Any]] = set()
        self._typing = TypingThrottle()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        # Set by create_app before start(): hears the control room.
        self.control: Control | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.broker.connect()
        try:
            await self.broker.subscribe(CONTROL_ROOM)
        except Exception:
            # The broker keeps it wanted and subscribes it when Redis is back.
            log.warning("could not subscribe the control room yet", exc_info=True)
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
        conns = self.hub.all_connections()
        self.hub.close_all(CLOSE_GOING_AWAY, "server shutting down")
        if self._writes:
            # Messages being stored now finish (committed, or their sender was told).
            await asyncio.wait(set(self._writes), timeout=10)
        for conn in conns:
            # The handlers may not get to run again before the loop stops.
            with contextlib.suppress(Exception):
                await self.presence_store.remove(self._entry(conn))
        for sequencer in self._sequencers.values():
            sequencer.close()
        self._sequencers.clear()
        await self.presence_store.close()
        await self.broker.disconnect()

    # ------------------------------------------------------------------ membership

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
        room = conn.room
        # In the room before any await, so that nobody else's leave closes it meanwhile.
        if self.hub.add(conn):
            await self._open(conn)
        else:
            opening = self._opening.get(room.id)
            if opening is not None and not await asyncio.shield(opening):
                raise StorageError("The room could not be opened; please try again.")
        try:
            first = await self.presence_store.add(self._entry(conn))
        except BrokerUnavailable:
            first = False  # presence is best effort; messages are not
        if first:
            await self._announce("join", room, conn.identity)

    async def _open(self, conn: Connection) -> None:
        """The room's first connection here: subscribe, then learn where the room is."""
        room = conn.room
        sequencer = self._open_room(room)
        opening: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._opening[room.id] = opening
        try:
            # Subscribe first, then read where the room is: nothing falls in between.
            try:
                await self.broker.subscribe(room.id)
            except Exception:
                # The broker keeps the room wanted and subscribes it when it is back,
                # then resyncs: the room works locally meanwhile.
                log.warning("could not subscribe room %s yet", room.id, exc_info=True)
            sequencer.start(await self.store.last_seq(room.id))
            opening.set_result(True)
            del self._opening[room.id]
        except Exception:
            log.exception("could not open room %s", room.id)
            opening.set_result(False)
            for other in self.hub.connections(room.id):
                other.close(CLOSE_INTERNAL, "internal error")
            # Until the room closes here, whoever else joins it is refused too.
            await self._drop(conn)
            raise
        finally:
            if not opening.done():  # cancelled: the shielded join cannot be, but be sure
                opening.set_result(False)

    def _open_room(self, room: Room) -> Sequencer:
        store, hub, room_id = self.store, self.hub, room.id

        async def fetch(after_seq: int) -> list[Fetched]:
            # The room as it is now (a rename replaces it in the hub).
            found = await store.after_seq(hub.room(room_id) or room, after_seq, BACKFILL_BATCH)
            rows: list[Fetched] = []
            for seq, entry in found:
                if entry is None:
                    rows.append((seq, 0, None, False))  # deleted since: nothing to show
                    continue
                if isinstance(entry, Message) and entry.edited_at is not None:
                    # Its current text in SPEC 5's frame, for every connection: its
                    # edits follow it in the room's order, and only v2 gets those.
                    entry = replace(entry, edited_at=None)
                rows.append((seq, entry.id, entry_frame(entry), isinstance(entry, Change)))
            return rows

        sequencer = Sequencer(lambda mid, frame, v2: hub.push(room_id, mid, frame, v2), fetch)
        self._sequencers[room_id] = sequencer
        return sequencer

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
            # shutdown Redis may already be closed; stop() cleaned presence up.
            if not self._stopping:
                log.warning("leaving room %s failed", conn.room.id, exc_info=True)

    async def _drop(self, conn: Connection) -> bool:
        """Take the connection out of the hub; close the room here when it was the last."""
        removed, closed = self.hub.remove(conn)
        if closed:
            room_id = conn.room.id
            self._opening.pop(room_id, None)
            sequencer = self._sequencers.pop(room_id, None)
            if sequencer is not None:
                sequencer.close()
            if not self._stopping:
                await self.broker.unsubscribe(room_id)
        return removed

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
        work.add_done_callback(self._writes.discard)
        return work

    async def change(self, draft: ChangeDraft) -> Change:
        """Store an edit or delete (committed, next in the room's order), then publish it
        to every process; it goes on even if the caller is cancelled."""
        if self._stopping:
            raise StorageError("The server is shutting down; the change was not stored.")
        work = asyncio.ensure_future(self._change(draft))
        self._writes.add(work)
        work.add_done_callback(self._writes.discard)
        return await asyncio.shield(work)

    async def _change(self, draft: ChangeDraft) -> Change:
        change = await self.store.store_change(draft)
        frame = protocol.change_frame(change)
        self._offer(change.room_id, change.seq, change.id, frame, True)
        await self._publish_items([(change.room_id, protocol.bus_change(change, frame))])
        return change

    async def typing(self, room: Room, who: Identity) -> None:
        """Tell the room's other v2 connections, on every host, that `who` is typing."""
        frame = protocol.typing_frame(room.id, who.user_id, who.user_name)
        payload = protocol.bus_typing(who.user_id, frame)
        try:
            await self.broker.publish(room.id, payload)
        except BrokerUnavailable:
            self.deliver(room.id, payload)  # at least this process hears it

    async def _publish(self, messages: list[Message]) -> None:
        """After a commit, in commit order: this process's connections get each new
        message now, every other process's relay through the broker."""
        items = []
        for m in messages:
            frame = protocol.message_frame(m)
            self._offer(m.room_id, m.seq, m.id, frame, False)
            items.append((m.room_id, protocol.bus_message(m, frame)))
        await self._publish_items(items)

    def _offer(self, room_id: int, seq: int, row_id: int, frame: str, v2_only: bool) -> None:
        # Delivered here without the broker's round trip and without parsing our own
        # envelope back (issue 15); the sequencer keeps the room's order with what
        # other hosts publish, and drops our echo should the broker still send one.
        sequencer = self._sequencers.get(room_id)
        if sequencer is not None:
            sequencer.offer(seq, row_id, frame, v2_only)

    async def _publish_items(self, items: list[tuple[int, str]]) -> None:
        try:
            await self.broker.publish_many(items, echo=False)
        except BrokerUnavailable:
            pass  # stored is stored, and delivered here: other hosts back-fill by seq

    async def publish_control(self, payload: str) -> None:
        """Send a payload to every process's control listener (raises BrokerUnavailable)."""
        await self.broker.publish(CONTROL_ROOM, payload)

    def deliver(self, room_id: int, payload: str) -> None:
        """Broker callback: put the payload's frame in line for the room's connections."""
        if room_id == CONTROL_ROOM:
            if self.control is not None:
                self.control.hear(payload)
            return
        sequencer = self._sequencers.get(room_id)
        if sequencer is None:
            return
        try:
            item = protocol.parse_bus(payload)
        except ValueError:
            log.warning("ignoring a malformed bus payload for room %s", room_id)
            return
        if item.typist:
            if self._typing.allow(room_id, item.typist):
                self.hub.push_typing(room_id, item.typist, item.frame)
        elif item.seq is None or item.message_id is None:
            self.hub.push(room_id, None, item.frame)
        else:
            sequencer.offer(item.seq, item.message_id, item.frame, item.v2_only)

    async def resync(self) -> None:
        """The broker may have dropped payloads: let every room look in the database."""
        for sequencer in list(self._sequencers.values()):
            sequencer.resync()
        if self.control is not None:
            await self.control.resynced()

    async def recover(self, conn: Connection, since: int) -> None:
        """Send what the room got after row `since` (a message's ID, or with protocol v2
        an edit's or delete's eventId), then a `recovered` frame.

        Protocol v1 gets the live messages with their current text; v2 also every
        edit and delete, in the room's order. Call between conn.hold() and
        join(conn)'s return: live frames wait while the backlog is read, and those
        the backlog already had are dropped at release.
        """
        v2 = conn.version != 1
        backlog, last_id, complete = await self.store.after_id(
            conn.room, since, REPLAY_LIMIT, changes=v2
        )
        count = 0
        for entry in backlog:
            if not v2 and isinstance(entry, Message) and entry.edited_at is not None:
                entry = replace(entry, edited_at=None)  # SPEC 5's frame, exactly
            frame = entry_frame(entry)
            if frame is not None:
                conn.replay(frame)
                count += 1
        conn.replay(protocol.recovered_frame(count, complete))
        conn.release(last_id)

    # ------------------------------------------------------------------ background

    async def _refresh_presence(self) -> None:
        # Push this host's entries' expiry forward well before they lapse.
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            entries = [self._entry(c) for c in self.hub.all_connections()]
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
            rooms = self.hub.rooms()
            if not rooms:
                continue
            try:
                deleted = await self._deleted_among(rooms)
            except Exception:
                log.warning("could not check for deleted rooms", exc_info=True)
                continue
            for room_id in deleted:
                log.info("closing connections of deleted room %s", room_id)
                self.hub.close_room(room_id, CLOSE_GOING_AWAY, "room deleted")


def entry_frame(entry: stored.Entry) -> str | None:
    """The frame of a row read back: None for an edit of a message deleted since."""
    if isinstance(entry, Message):
        return protocol.message_frame(entry)
    if entry.kind == DELETE or entry.message is not None:
        return protocol.change_frame(entry)
    return None
