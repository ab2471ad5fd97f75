"""The hub and connections over a recording transport: no server, no sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from chatroom_server.domain import Identity, Room
from chatroom_server.realtime.connection import CLOSE_GOING_AWAY, CLOSE_POLICY, Connection, State
from chatroom_server.realtime.hub import Hub

ROOM = Room(1, "general", datetime.now(UTC), datetime.now(UTC))
OTHER = Room(2, "other", datetime.now(UTC), datetime.now(UTC))


def encode(texts: Sequence[str]) -> tuple[str, ...]:
    return tuple(texts)


class RecordingTransport:
    """What a connection wrote and how it was closed; `waiting` is what write() reports."""

    def __init__(self, waiting: int = 0) -> None:
        self.writes: list[tuple[Any, int]] = []
        self.aborts: list[tuple[int, str]] = []
        self.waiting = waiting
        self.broken = False

    def write(self, data: Any, frames: int) -> int:
        if self.broken:
            raise ConnectionError("gone")
        self.writes.append((data, frames))
        return self.waiting

    def abort(self, code: int, reason: str) -> None:
        self.aborts.append((code, reason))

    def frames(self) -> list[str]:
        return [text for data, _ in self.writes for text in data]


def connection(room: Room = ROOM, user_id: int = 1, queue: int = 10, **kw: Any) -> Connection:
    who = Identity(user_id, f"u{user_id}", f"u{user_id}@example.com", int(time.time()) + 60)
    return Connection(RecordingTransport(**kw), who, room, queue, encode)


def recorded(conn: Connection) -> RecordingTransport:
    transport = conn.transport
    assert isinstance(transport, RecordingTransport)
    return transport


async def next_turn() -> None:
    await asyncio.sleep(0)  # the hub flushes at the end of the loop turn it was pushed in


async def test_add_and_remove_open_and_close_the_room() -> None:
    hub = Hub(encode)
    a, b = connection(), connection(user_id=2)
    assert hub.add(a) is True
    assert hub.add(b) is False
    assert hub.room(ROOM.id) is ROOM and hub.rooms() == [ROOM.id]
    assert hub.connection_count == 2
    assert hub.remove(a) == (True, False)
    assert hub.remove(a) == (False, False)  # idempotent
    assert hub.remove(b) == (True, True)
    assert hub.rooms() == [] and hub.room(ROOM.id) is None


async def test_frames_of_one_turn_are_encoded_once_and_written_once_per_connection() -> None:
    hub = Hub(encode)
    conns = [connection(user_id=i) for i in range(3)]
    elsewhere = connection(OTHER, user_id=9)
    for conn in [*conns, elsewhere]:
        hub.add(conn)
    hub.push(ROOM.id, 1, "one")
    hub.push(ROOM.id, 2, "two")
    hub.push(ROOM.id, None, "a join line")
    await next_turn()
    shared = recorded(conns[0]).writes
    assert shared == [(("one", "two", "a join line"), 3)]
    for conn in conns[1:]:
        (write,) = recorded(conn).writes
        assert write[0] is shared[0][0]  # the same encoded object for every connection
    assert recorded(elsewhere).writes == []  # another room hears nothing


async def test_a_replayed_connection_gets_live_frames_after_its_backlog_without_repeats() -> None:
    hub = Hub(encode)
    conn = connection()
    hub.add(conn)
    conn.hold()
    hub.push(ROOM.id, 5, "live 5")
    hub.push(ROOM.id, 6, "live 6")
    await next_turn()
    assert recorded(conn).frames() == []  # held behind the backlog
    conn.replay("backlog 4")
    conn.replay("backlog 5")
    conn.release(replayed_up_to=5)
    assert recorded(conn).frames() == ["backlog 4", "backlog 5", "live 6"]
    hub.push(ROOM.id, 5, "late copy of 5")  # a broker echo the replay already covered
    hub.push(ROOM.id, 7, "live 7")
    await next_turn()
    assert recorded(conn).frames()[-1:] == ["live 7"]
    assert "late copy of 5" not in recorded(conn).frames()


async def test_a_reader_too_far_behind_is_closed_and_the_others_still_get_frames() -> None:
    hub = Hub(encode)
    slow = connection(user_id=1, queue=10, waiting=11)
    fine = connection(user_id=2, queue=10, waiting=3)
    hub.add(slow)
    hub.add(fine)
    hub.push(ROOM.id, 1, "x")
    await next_turn()
    assert recorded(slow).aborts == [(CLOSE_POLICY, "too slow: outgoing queue full")]
    assert slow.state is State.CLOSING and fine.state is State.OPEN
    hub.push(ROOM.id, 2, "y")
    await next_turn()
    assert recorded(fine).frames() == ["x", "y"]
    assert recorded(slow).frames() == ["x"]  # nothing more after the close


async def test_a_connection_whose_socket_is_gone_is_skipped() -> None:
    hub = Hub(encode)
    gone, fine = connection(user_id=1), connection(user_id=2)
    recorded(gone).broken = True
    hub.add(gone)
    hub.add(fine)
    hub.push(ROOM.id, 1, "x")
    await next_turn()
    assert gone.state is State.CLOSING and recorded(gone).aborts == []
    assert recorded(fine).frames() == ["x"]


async def test_close_room_and_close_all_close_with_the_code_given_once() -> None:
    hub = Hub(encode)
    a, b, c = connection(user_id=1), connection(user_id=2), connection(OTHER, user_id=3)
    for conn in (a, b, c):
        hub.add(conn)
    hub.close_room(ROOM.id, CLOSE_GOING_AWAY, "room deleted")
    assert recorded(a).aborts == recorded(b).aborts == [(CLOSE_GOING_AWAY, "room deleted")]
    assert recorded(c).aborts == []
    hub.close_all(CLOSE_GOING_AWAY, "server shutting down")
    assert recorded(a).aborts == [(CLOSE_GOING_AWAY, "room deleted")]  # closed once
    assert recorded(c).aborts == [(CLOSE_GOING_AWAY, "server shutting down")]


class QueueTransport(RecordingTransport):
    """Reports every frame written as still waiting, as a queue nobody drains would."""

    def write(self, data: Any, frames: int) -> int:
        super().write(data, frames)
        return sum(n for _, n in self.writes) - self.sent

    sent = 0


async def test_a_replay_is_a_burst_that_does_not_count_against_the_queue() -> None:
    hub = Hub(encode)
    conn = Connection(QueueTransport(), connection().identity, ROOM, 10, encode)
    hub.add(conn)
    conn.hold()
    hub.push(ROOM.id, 30, "live 30")
    await next_turn()
    for i in range(25):  # a backlog longer than the queue, not yet on its way
        conn.replay(f"backlog {i}")
    conn.release(replayed_up_to=29)
    assert conn.state is State.OPEN and recorded(conn).frames()[-1] == "live 30"
    hub.push(ROOM.id, 31, "live 31")
    await next_turn()
    assert conn.state is State.OPEN  # 27 waiting: 25 of them the replay
    transport = conn.transport
    assert isinstance(transport, QueueTransport)
    transport.sent = 25  # the peer read the backlog: from now on, the plain bound
    hub.push(ROOM.id, 32, "live 32")
    await next_turn()
    assert conn.state is State.OPEN
    for i in range(33, 45):
        hub.push(ROOM.id, i, f"live {i}")
        await next_turn()
    assert conn.state is State.CLOSING
    assert recorded(conn).aborts == [(CLOSE_POLICY, "too slow: outgoing queue full")]
