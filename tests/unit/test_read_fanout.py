"""ReadFanout over recording connections: who gets a `read` frame, here and from the bus."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from chatroom_server import protocol
from chatroom_server.domain import Identity, Room
from chatroom_server.realtime.connection import Connection
from chatroom_server.realtime.hub import Hub
from chatroom_server.realtime.reads import ReadFanout
from chatroom_server.realtime.room_events import ControlRoom

from .test_hub import OTHER, ROOM, RecordingTransport, encode, recorded


def conn(user_id: int, version: int, room: Room = ROOM) -> Connection:
    who = Identity(user_id, f"u{user_id}", f"u{user_id}@example.com", int(time.time()) + 60)
    return Connection(RecordingTransport(), who, room, 10, encode, version)


def reads_of(c: Connection) -> list[dict[str, Any]]:
    frames = [orjson.loads(text) for text in recorded(c).frames()]
    return [f["Body"] for f in frames if f["Event"] == "read"]


class Bus:
    """The control room: what was published (and a switch to make publishing fail)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.down = False

    async def publish(self, payload: str) -> None:
        if self.down:
            raise ConnectionError("broker away")
        self.sent.append(payload)


@pytest.fixture
def hub() -> Hub:
    return Hub(encode)


async def test_announce_tells_the_users_other_v2_connections_here_and_publishes(hub: Hub) -> None:
    origin, same_room, other_room = conn(1, 2), conn(1, 2), conn(1, 2, OTHER)
    v1, stranger = conn(1, 1), conn(2, 2)
    for c in (origin, same_room, other_room, v1, stranger):
        hub.add(c)
    bus = Bus()
    fanout = ReadFanout(hub, bus.publish, "p1")

    await fanout.announce(1, ROOM.id, 42, origin_conn=origin)

    body = {"chatRoomId": ROOM.id, "lastReadId": 42}
    assert reads_of(same_room) == [body] and reads_of(other_room) == [body]
    assert reads_of(origin) == [] and reads_of(v1) == [] and reads_of(stranger) == []
    (payload,) = bus.sent
    read = protocol.parse_read(payload)
    assert (read.user_id, read.room_id, read.last_read_id) == (1, ROOM.id, 42)
    assert (read.process, read.connection) == ("p1", str(id(origin)))

    # The broker hands the payload back to this process too: nobody gets it twice.
    fanout.hear(payload)
    assert reads_of(same_room) == [body]


async def test_heard_from_another_process_every_v2_connection_of_the_user_gets_it(
    hub: Hub,
) -> None:
    mine, v1 = conn(1, 2), conn(1, 1, OTHER)
    hub.add(mine)
    hub.add(v1)
    fanout = ReadFanout(hub, Bus().publish, "here")
    control = ControlRoom(None, None, fanout)  # type: ignore[arg-type]
    payload = protocol.bus_read(protocol.BusRead(1, OTHER.id, 7, "there", str(id(mine))))
    control.hear(payload)  # a token of another process names none of ours
    assert reads_of(mine) == [{"chatRoomId": OTHER.id, "lastReadId": 7}]
    assert reads_of(v1) == []
    control.hear("u 1 2 x there -")  # malformed: logged and dropped
    assert len(reads_of(mine)) == 1


async def test_without_the_broker_this_process_still_tells_its_connections(hub: Hub) -> None:
    other_tab = conn(1, 2, OTHER)
    hub.add(other_tab)
    bus = Bus()
    bus.down = True
    await ReadFanout(hub, bus.publish).announce(1, ROOM.id, 3)
    assert reads_of(other_tab) == [{"chatRoomId": ROOM.id, "lastReadId": 3}]
    assert bus.sent == []


def test_every_process_has_an_id_of_its_own(hub: Hub) -> None:
    ids = {ReadFanout(hub, Bus().publish).process_id for _ in range(50)}
    assert len(ids) == 50 and all(" " not in i and i != "-" for i in ids)
