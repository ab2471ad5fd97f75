"""Websocket frames, in (a client's) and out (the server's, encoded once)."""

from __future__ import annotations

from typing import Any

import orjson

from ..domain import (
    EDIT,
    Change,
    Message,
    Room,
)
from ..errors import InvalidMessage
from .common import (
    _CONTROL,
    CLIENT_MESSAGE_ID_MAX,
    FRAME_TYPE,
    INVALID_JSON,
    INVALID_MESSAGE,
    MESSAGE_TOO_LONG,
    SYSTEM_USER_ID,
    WRONG_ROOM,
    dumps,
    timestamp,
)
from .rest_in import MAX_ID, _strict_int
from .rest_out import message_json

# --------------------------------------------------------------------------- websocket


class ClientMessage:
    __slots__ = ("text", "client_message_id")

    def __init__(self, text: str, client_message_id: str | None) -> None:
        self.text = text
        self.client_message_id = client_message_id


def parse_client_frame(data: str | bytes, room_id: int, max_chars: int) -> ClientMessage:
    """Decode `{"chatRoomId": N, "chatMessage": "..."}`; raise InvalidMessage if it is not one."""
    return _message(_object(data), room_id, max_chars)


def _object(data: str | bytes) -> dict[str, Any]:
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidMessage(INVALID_JSON, "The frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise InvalidMessage(INVALID_MESSAGE, "The frame must be a JSON object.")
    return frame


def _message(frame: dict[str, Any], room_id: int, max_chars: int) -> ClientMessage:
    if "chatRoomId" in frame and frame["chatRoomId"] is not None:
        try:
            target = _strict_int(frame["chatRoomId"])
        except ValueError:
            raise InvalidMessage(INVALID_MESSAGE, "chatRoomId must be an integer.") from None
        if target != room_id:
            raise InvalidMessage(
                WRONG_ROOM, f"This connection is for room {room_id}, not room {target}."
            )
    text = check_text(frame.get("chatMessage"), max_chars)
    client_id = frame.get("clientMessageId")
    if client_id is not None:
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= CLIENT_MESSAGE_ID_MAX:
            raise InvalidMessage(
                INVALID_MESSAGE,
                f"clientMessageId must be a string of 1 to {CLIENT_MESSAGE_ID_MAX} characters.",
            )
        if _CONTROL.search(client_id):
            raise InvalidMessage(INVALID_MESSAGE, "clientMessageId contains control characters.")
    return ClientMessage(text, client_id)


def check_text(text: Any, max_chars: int) -> str:
    """A message's text as sent (or edited): raise InvalidMessage if it may not be stored."""
    if not isinstance(text, str):
        raise InvalidMessage(INVALID_MESSAGE, "chatMessage must be a string.")
    if len(text) > max_chars:
        raise InvalidMessage(
            MESSAGE_TOO_LONG, f"A message can be at most {max_chars} characters long."
        )
    if not text.strip():
        raise InvalidMessage(INVALID_MESSAGE, "The message is empty.")
    if _CONTROL.search(text):
        raise InvalidMessage(
            INVALID_MESSAGE, "The message contains control characters other than newline and tab."
        )
    return text


# Protocol v2's other client frames (SPEC 12); a frame without "type" is a message.


class EditFrame:
    __slots__ = ("message_id", "text")

    def __init__(self, message_id: int, text: str) -> None:
        self.message_id = message_id
        self.text = text


class DeleteFrame:
    __slots__ = ("message_id",)

    def __init__(self, message_id: int) -> None:
        self.message_id = message_id


class TypingFrame:
    __slots__ = ()


class ReadFrame:
    __slots__ = ("last_read_id",)

    def __init__(self, last_read_id: int) -> None:
        self.last_read_id = last_read_id


ClientFrame = ClientMessage | EditFrame | DeleteFrame | TypingFrame | ReadFrame
TYPING = TypingFrame()


def parse_client_frame_v2(data: str | bytes, room_id: int, max_chars: int) -> ClientFrame:
    """Decode a protocol v2 client frame; raise InvalidMessage if it is not one."""
    frame = _object(data)
    kind = frame.get("type", "message")
    if kind == "message":
        return _message(frame, room_id, max_chars)
    if kind == "typing":
        return TYPING
    if kind == "edit":
        return EditFrame(_frame_id(frame, "id"), check_text(frame.get("chatMessage"), max_chars))
    if kind == "delete":
        return DeleteFrame(_frame_id(frame, "id"))
    if kind == "read":
        return ReadFrame(_frame_id(frame, "lastReadId", low=0))
    raise InvalidMessage(
        INVALID_MESSAGE, "type must be one of message, edit, delete, typing, read."
    )


def _frame_id(frame: dict[str, Any], name: str, low: int = 1) -> int:
    try:
        value = _strict_int(frame.get(name))
    except ValueError:
        value = None
    if not isinstance(value, int) or not low <= value <= MAX_ID:
        raise InvalidMessage(INVALID_MESSAGE, f"{name} must be an integer from {low} to {MAX_ID}.")
    return value


def _frame(event: str, body: dict[str, Any]) -> str:
    return dumps({"Type": FRAME_TYPE, "Event": event, "Body": body})


def message_frame(message: Message) -> str:
    return _frame("message", message_json(message))


def presence_frame(event: str, room: Room, user_id: int, user_name: str) -> str:
    """`join` or `leave`: a system line for seed-era clients, plus the user."""
    verb = "joined" if event == "join" else "left"
    return _frame(
        event,
        {
            "chatRoomId": room.id,
            "chatRoomName": room.name,
            "chatUserId": SYSTEM_USER_ID,
            "chatMessage": f"{user_name} {verb}",
            "user": {"ID": user_id, "UserName": user_name},
        },
    )


def read_frame(room_id: int, last_read_id: int) -> str:
    """`read` (v2 only): the user read up to this message, on another connection."""
    return _frame("read", {"chatRoomId": room_id, "lastReadId": last_read_id})


def error_frame(code: str, text: str) -> str:
    return _frame("error", {"chatUserId": SYSTEM_USER_ID, "chatMessage": text, "code": code})


def change_frame(change: Change) -> str:
    """Protocol v2's `edit` (the MSG with its new text and EditedAt) or `delete`; both name
    their own place in the room's order as `eventId`, a cursor like a message's ID."""
    if change.kind == EDIT:
        assert change.message is not None
        body = message_json(change.message)
        body["eventId"] = change.id
        return _frame("edit", body)
    return _frame(
        "delete",
        {
            "ID": change.target_id,
            "chatRoomId": change.room_id,
            "DeletedAt": timestamp(change.at),
            "eventId": change.id,
        },
    )


def typing_frame(room_id: int, user_id: int, user_name: str) -> str:
    return _frame("typing", {"chatRoomId": room_id, "user": {"ID": user_id, "UserName": user_name}})


def recovered_frame(count: int, complete: bool) -> str:
    return _frame(
        "recovered",
        {"chatUserId": SYSTEM_USER_ID, "chatMessage": "", "count": count, "complete": complete},
    )
