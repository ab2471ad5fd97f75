"""protocol's response models against what its *_json functions build (no server).

The OpenAPI document (tests/e2e/test_openapi.py) is built from these models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chatroom_server import protocol
from chatroom_server.domain import HistoryPage, Message, Presence, Room, User


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
