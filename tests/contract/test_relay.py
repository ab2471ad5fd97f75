"""The relay over a real store and the in-process broker: joins, posts and recovery.

Connections write to a recording transport (no sockets); everything else is the
server's own: hub, relay, sequencer, writer, store, broker, presence.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from chatroom_server.db.store import MessageStore
from chatroom_server.domain import Identity, Room
from chatroom_server.errors import StorageError
from chatroom_server.pubsub import Deliver, Resync, make_broker
from chatroom_server.pubsub.presence import LocalPresence
from chatroom_server.realtime.connection import Connection
from chatroom_server.realtime.hub import Hub
from chatroom_server.realtime.relay import Relay
from chatroom_server.services import rooms as room_service

from ..unit.test_hub import RecordingTransport
from .conftest import new_author


def encode(texts: Sequence[str]) -> tuple[str, ...]:
    return tuple(texts)


class GatedStore:
    """The real store, but reading a room's last seq waits for the test's go-ahead."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store
        self.gate = asyncio.Event()
        self.gate.set()
        self.store_batch = store.store_batch
        self.after_seq = store.after_seq
        self.after_id = store.after_id
        self.history = store.history

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def last_seq(self, room_id: int) -> int:
        await self.gate.wait()
        return await self._store.last_seq(room_id)


@pytest.fixture
async def relay(store: MessageStore) -> AsyncIterator[tuple[Relay, GatedStore]]:
    gated = GatedStore(store)

    def broker(deliver: Deliver, resync: Resync) -> Any:
        return make_broker(None, deliver, resync)

    async def none_deleted(rooms: object) -> set[int]:
        return set()

    relay = Relay(Hub(encode), gated, broker, LocalPresence(), none_deleted, 60.0)
    await relay.start()
    try:
        yield relay, gated
    finally:
        await relay.stop()


def frames(conn: Connection) -> list[dict[str, Any]]:
    transport = conn.transport
    assert isinstance(transport, RecordingTransport)
    return [json.loads(text) for text in transport.frames()]


def messages(conn: Connection) -> list[str]:
    return [f["Body"]["chatMessage"] for f in frames(conn) if f["Event"] == "message"]


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_second_joiner_waits_for_the_room_to_open_and_misses_nothing(
    relay: tuple[Relay, GatedStore],
) -> None:
    """A message committed while the room opens here reaches a reconnecting joiner."""
    relay_, gated = relay
    who: Identity = await new_author()
    room: Room = await room_service.create_room("general")
    a = Connection(RecordingTransport(), who, room, 100, encode)
    b = Connection(RecordingTransport(), who, room, 100, encode)
    for conn in (a, b):
        conn.hold()  # both reconnect with since=0
    gated.gate.clear()
    join_a = asyncio.create_task(relay_.join(a))
    await turns()
    join_b = asyncio.create_task(relay_.join(b))
    await turns()
    assert not join_b.done(), "the second joiner went on before the room was open"
    # Committed after the room subscribed, before its last seq is read.
    await relay_.post(room, who, "during the open")
    gated.gate.set()
    await asyncio.wait_for(asyncio.gather(join_a, join_b), 10)
    for conn in (a, b):
        await relay_.recover(conn, 0)
    await relay_.post(room, who, "after")
    await turns()
    assert messages(a) == messages(b) == ["during the open", "after"]
    for conn in (a, b):
        await relay_.leave(conn)
    assert relay_.hub.rooms() == []


async def test_a_joiner_is_refused_while_its_room_failed_to_open(
    relay: tuple[Relay, GatedStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    relay_, gated = relay
    who = await new_author()
    room = await room_service.create_room("general")
    a = Connection(RecordingTransport(), who, room, 100, encode)
    b = Connection(RecordingTransport(), who, room, 100, encode)

    async def broken(room_id: int) -> int:
        await gated.gate.wait()
        raise OSError("the database went away")

    monkeypatch.setattr(gated, "last_seq", broken)
    gated.gate.clear()
    join_a = asyncio.create_task(relay_.join(a))
    await turns()
    join_b = asyncio.create_task(relay_.join(b))
    await turns()
    gated.gate.set()
    results = await asyncio.gather(join_a, join_b, return_exceptions=True)
    assert isinstance(results[0], OSError)
    assert isinstance(results[1], StorageError)  # refused, not let into a dead room
    assert a.close_code == b.close_code == 1011  # both told: internal error
    await relay_.leave(b)
    assert relay_.hub.rooms() == []
