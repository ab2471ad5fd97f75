"""protocol's response models against what its *_json functions build (no server).

The OpenAPI document (tests/e2e/test_openapi.py) is built from these models.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from chatroom_server import protocol
from chatroom_server.domain import HistoryPage, Message, Presence, ReadState, Room, User
from chatroom_server.errors import BadRequest


def test_response_models_describe_what_the_functions_build() -> None:
    """Every *_json function's output validates against its model, key for key."""
    now = datetime(2023, 10, 30, 15, 47, 33, 246704, tzinfo=UTC)
    user = User(1, "ann", "ann@example.com", now, now)
    deleted = Room(2, "general", now, now, deleted_at=now)
    plain = Message(3, 2, "general", "hi", 1, "ann", now)
    tagged = Message(4, 2, "general", "yo", 1, "ann", now, client_message_id="c-1")
    cases: list[tuple[type, dict[str, Any]]] = [
        (protocol.AuthResponse, protocol.auth_json(user, "t.o.k")),
        (protocol.CreatedRoomResponse, protocol.created_room_json(deleted)),
        (
            protocol.CreatedRoomResponse,
            protocol.created_room_json(deleted, "owner", ReadState(2, 17, 3)),
        ),
        (protocol.ReadResponse, protocol.read_json(ReadState(2, 17, 3, moved=True))),
        (protocol.ReadResponse, protocol.read_json(ReadState(2, None, 0))),
        (protocol.RoomsResponse, protocol.rooms_json([deleted, Room(5, "b", now, now)])),
        (protocol.LegacyHistoryResponse, protocol.legacy_history_json([plain, tagged])),
        (protocol.HistoryResponse, protocol.history_json(HistoryPage([plain, tagged], True))),
        (protocol.PresenceResponse, protocol.presence_json(Presence([(1, "ann")], 2))),
        (protocol.ErrorResponse, protocol.error_json(404, "Room 9 does not exist.")),
    ]
    for model, body in cases:
        parsed = model.model_validate(body, strict=True)
        assert parsed.model_dump(exclude_unset=True) == body, model.__name__
    assert "clientMessageId" not in protocol.message_json(plain)
    assert protocol.room_json(deleted)["DeletedAt"] == "2023-10-30T15:47:33.246704Z"
    assert protocol.user_json(user)["DeletedAt"] is None
    # A room nobody asked about the reads of: nothing unread, no marker.
    assert protocol.room_json(deleted)["unread"] == 0
    assert protocol.room_json(deleted)["lastReadId"] is None
    read = protocol.room_json(deleted, "member", ReadState(2, 17, 3))
    assert (read["role"], read["unread"], read["lastReadId"]) == ("member", 3, 17)


def test_the_room_list_body_wraps_the_databases_array() -> None:
    """room_list_body around an array of room_json objects (as the database builds them
    with ROOM_KEYS) is the RoomsResponse of those rooms, with nextAfter only if paged."""
    now = datetime(2023, 10, 30, 15, 47, 33, 246704, tzinfo=UTC)
    rooms = [Room(1, "a", now, now), Room(7, 'b " ü', now, now)]
    objects = [protocol.room_json(r) for r in rooms]
    objects.append(protocol.room_json(Room(9, "c", now, now), "owner", ReadState(9, 40, 2)))
    assert all(tuple(o) == protocol.ROOM_KEYS for o in objects)
    array = orjson.dumps(objects).decode()
    listed = {"chatRooms": objects}
    assert orjson.loads(protocol.room_list_body(array, paged=False)) == listed
    assert protocol.rooms_json(rooms) == {"chatRooms": objects[:2]}
    for next_after in (7, None):
        body = orjson.loads(protocol.room_list_body(array, paged=True, next_after=next_after))
        assert body == {**listed, "nextAfter": next_after}
        protocol.RoomsResponse.model_validate(body, strict=True)
    assert orjson.loads(protocol.room_list_body("[]", paged=True)) == {
        "chatRooms": [],
        "nextAfter": None,
    }


@pytest.mark.parametrize(
    "value",
    [
        datetime(2023, 10, 30, 15, 47, 33, 246704, tzinfo=UTC),
        datetime(2023, 10, 30, 15, 47, 33, tzinfo=UTC),
        datetime(2023, 10, 30, 10, 47, 33, 5, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2023, 10, 30, 15, 47, 33, 246704),  # naive: taken as UTC
        datetime(1, 1, 1, tzinfo=UTC),
    ],
)
def test_timestamps_keep_the_go_servers_form(value: datetime) -> None:
    expected = value.astimezone(UTC) if value.tzinfo else value
    want = expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ").rjust(27, "0")
    assert protocol.timestamp(value) == want


def test_read_request_bounds_name_the_field() -> None:
    for good, value in ((0, 0), (5, 5), ("12", 12), (protocol.MAX_ID, protocol.MAX_ID)):
        assert protocol.parse_body(protocol.ReadRequest, orjson.dumps({"lastReadId": good})) == (
            protocol.ReadRequest(lastReadId=value)
        )
    for bad in ({}, {"lastReadId": -1}, {"lastReadId": 2**63}, {"lastReadId": None},
                {"lastReadId": True}, {"lastReadId": 1.5}, {"lastReadId": "x"},
                {"lastReadId": [1]}, {"lastReadID": 1}):  # fmt: skip
        with pytest.raises(BadRequest) as refused:
            protocol.parse_body(protocol.ReadRequest, orjson.dumps(bad))
        assert refused.value.message.startswith("lastReadId: "), bad


def test_read_frames_and_their_bus_payload() -> None:
    frame = orjson.loads(protocol.read_frame(4, 99))
    assert frame == {"Type": 1, "Event": "read", "Body": {"chatRoomId": 4, "lastReadId": 99}}
    for connection in ("140234", None):
        payload = protocol.bus_read(protocol.BusRead(3, 4, 99, "p1", connection))
        assert payload.startswith("u ")
        read = protocol.parse_read(payload)
        got = (read.user_id, read.room_id, read.last_read_id, read.process, read.connection)
        assert got == (3, 4, 99, "p1", connection)
    for bad in ("e removed 1 2 0.0", "u 1 2 3 p", "u 1 2 x p -", "r 1 - -"):
        with pytest.raises(ValueError):
            protocol.parse_read(bad)
