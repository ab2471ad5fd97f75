"""REST responses: the shapes the API answers with (USER, ROOM, MSG...) and their models."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)
from pydantic.json_schema import SkipJsonSchema

from ..domain import (
    HistoryPage,
    Member,
    Message,
    Presence,
    ReadState,
    Room,
    SessionInfo,
    User,
)
from .common import CLIENT_MESSAGE_ID_MAX, timestamp
from .rest_in import _doc, _Request

# --------------------------------------------------------------------------- REST out
#
# The response models describe what the *_json functions below build (the OpenAPI
# document and tests use them; the functions stay plain dicts, which is faster).
# tests/unit/test_protocol.py checks that each function's output validates against them.


def _openapi_30(schema: dict[str, Any]) -> None:
    """OpenAPI 3.0 (what sanic-ext serves) has `nullable`, not JSON Schema's type null."""
    for prop in schema.get("properties", {}).values():
        options = prop.get("anyOf")
        if options and {"type": "null"} in options and len(options) == 2:
            del prop["anyOf"]
            prop.update(next(o for o in options if o != {"type": "null"}), nullable=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_openapi_30)


Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time", "example": "2023-10-30T15:47:33.246704Z"})
]


class UserOut(_Response):
    ID: int
    CreatedAt: Timestamp
    UpdatedAt: Timestamp
    DeletedAt: Timestamp | None
    UserName: str
    Email: str


class AuthResponse(_Response):
    user: UserOut
    token: str = Field(description="HS256 JWT to send as `Authorization: Bearer <token>`.")


class SessionOut(_Response):
    id: str
    createdAt: Timestamp
    lastSeenAt: Timestamp = Field(
        description="When a server last checked this session (to within a minute or so)."
    )
    userAgent: str | None
    current: bool = Field(description="Whether this is the session of the token asking.")


class SessionsResponse(_Response):
    sessions: list[SessionOut]


class RoomOut(_Response):
    ID: int
    CreatedAt: Timestamp
    UpdatedAt: Timestamp
    DeletedAt: Timestamp | None
    name: str
    visibility: Literal["public", "private", "direct"]
    ownerId: int | None = Field(description="Who created it; null for CLI and direct rooms.")
    role: Literal["owner", "moderator", "member"] | None = Field(
        description="The asking user's role in the room; null when not a member."
    )
    unread: int = Field(
        ge=0,
        description="The room's messages after the asking user's read marker, not counting"
        " their own (nor any before their own newest one) or deleted ones.",
    )
    lastReadId: int | None = Field(
        description="The asking user's read marker: the ID of the last message they read"
        " there; null if they never marked the room read."
    )


class MemberUser(_Response):
    ID: int
    UserName: str


class MemberOut(_Response):
    user: MemberUser
    role: Literal["owner", "moderator", "member"]


class MembersResponse(_Response):
    members: list[MemberOut] = Field(description="The owner, moderators, members; by ID.")


class MemberResponse(_Response):
    member: MemberOut


class CreatedRoomResponse(_Response):
    chatRoom: RoomOut


class RoomsResponse(_Response):
    chatRooms: list[RoomOut] = Field(
        description="Every room by ID ascending; with `limit` or `after`, one page of them."
    )
    nextAfter: int | None = Field(
        default=None,
        description=(
            "With `limit` or `after`: the `after` of the next page (the last ID of this"
            " one), or null when this is the last page. Absent without them."
        ),
    )


class MessageOut(_Response):
    ID: int
    chatRoomId: int
    chatRoomName: str
    chatMessage: str
    chatUser: str
    chatUserId: int
    ChatMessageTs: Timestamp
    # Present only when the sender gave one: never null.
    clientMessageId: str | SkipJsonSchema[None] = Field(
        default=None, min_length=1, max_length=CLIENT_MESSAGE_ID_MAX
    )
    # Present only when the message was edited.
    EditedAt: Timestamp | SkipJsonSchema[None] = Field(
        default=None, description="When the text was last edited; absent if never."
    )


class EditMessageRequest(_Request):
    chatMessage: str = _doc(minLength=1)


class MessageResponse(_Response):
    message: MessageOut


class LegacyHistoryResponse(_Response):
    chats: list[MessageOut] = Field(description="The last 50 messages, oldest first.")


class HistoryResponse(_Response):
    messages: list[MessageOut] = Field(description="Oldest first.")
    hasMore: bool


class ReadResponse(_Response):
    chatRoomId: int
    lastReadId: int | None = Field(
        description="The read marker after the call (never lower than before); null while"
        " the user has none in the room."
    )
    unread: int = Field(ge=0, description="The room's unread messages for the user now.")


class PresentUser(_Response):
    ID: int
    UserName: str


class PresenceResponse(_Response):
    users: list[PresentUser]
    connections: int = Field(ge=0, description="Open connections to the room, on all hosts.")


class RoomsRequest(_Request):
    """POST /rooms: seed clients send `{}` or nothing; any fields are ignored."""


class ErrorResponse(_Response):
    description: str = Field(description="The HTTP status phrase, e.g. `Bad Request`.")
    status: int
    message: str = Field(description="What went wrong, for people; names the field on a 400.")


class HealthResponse(_Response):
    status: str = Field(description="`ok`.")


class NotReadyResponse(_Response):
    status: str = Field(description="`unavailable`.")
    failing: list[str] = Field(description="The parts that failed: `database`, `redis`.")


# What each error status means, for the OpenAPI document.
ERROR_STATUSES = {
    400: "Malformed JSON or a failed validation; the message names the field.",
    401: "Missing, invalid or expired token, or its session ended; or wrong login credentials.",
    403: "Not allowed: the message says what is missing (a role, a wrong current password,"
    " a refused origin), or the caller is banned from the room.",
    404: "Unknown or deleted room (or one the caller may not see), user or session.",
    409: "An account with this email, or a user name that looks the same, already exists;"
    " or the user to add is banned from the room.",
    413: "The request body is too large.",
    429: "Too many attempts; retry after `Retry-After` seconds.",
    503: "The database is unavailable.",
}


def user_json(user: User) -> dict[str, Any]:
    return {
        "ID": user.id,
        "CreatedAt": timestamp(user.created_at),
        "UpdatedAt": timestamp(user.updated_at),
        "DeletedAt": timestamp(user.deleted_at),
        "UserName": user.user_name,
        "Email": user.email,
    }


def auth_json(user: User, token: str) -> dict[str, Any]:
    return {"user": user_json(user), "token": token}


def sessions_json(sessions: list[SessionInfo], current: str | None) -> dict[str, Any]:
    return {
        "sessions": [
            {
                "id": s.id,
                "createdAt": timestamp(s.created_at),
                "lastSeenAt": timestamp(s.last_seen_at),
                "userAgent": s.user_agent,
                "current": s.id == current,
            }
            for s in sessions
        ]
    }


def room_json(room: Room, role: str | None = None, read: ReadState | None = None) -> dict[str, Any]:
    return {
        "ID": room.id,
        "CreatedAt": timestamp(room.created_at),
        "UpdatedAt": timestamp(room.updated_at),
        "DeletedAt": timestamp(room.deleted_at),
        "name": room.name,
        "visibility": room.visibility,
        "ownerId": room.owner_id,
        "role": role,
        "unread": read.unread if read is not None else 0,
        "lastReadId": read.last_read_id if read is not None else None,
    }


def created_room_json(
    room: Room, role: str | None = None, read: ReadState | None = None
) -> dict[str, Any]:
    return {"chatRoom": room_json(room, role, read)}


def rooms_json(rooms: list[Room]) -> dict[str, Any]:
    return {"chatRooms": [room_json(room) for room in rooms]}


def member_json(member: Member) -> dict[str, Any]:
    return {"user": {"ID": member.user_id, "UserName": member.user_name}, "role": member.role}


def members_json(members: list[Member]) -> dict[str, Any]:
    return {"members": [member_json(m) for m in members]}


ROOM_PAGE_MAX = 1000

# ROOM's keys in room_json's order, for the list the database builds as JSON itself
# (db/room_list.py): the ID, created, updated, deleted, the name, the visibility, the
# owner, and the asking user's role, unread count and read marker.
ROOM_KEYS = (
    "ID",
    "CreatedAt",
    "UpdatedAt",
    "DeletedAt",
    "name",
    "visibility",
    "ownerId",
    "role",
    "unread",
    "lastReadId",
)


def room_list_body(array: str, paged: bool, next_after: int | None = None) -> bytes:
    """The room list around a JSON array of ROOMs that the database built with
    ROOM_KEYS (db/room_list.py); `nextAfter` only when the caller asked for a page."""
    if not paged:
        return b'{"chatRooms":' + array.encode() + b"}"
    after = b"null" if next_after is None else str(next_after).encode()
    return b'{"chatRooms":' + array.encode() + b',"nextAfter":' + after + b"}"


def message_json(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ID": message.id,
        "chatRoomId": message.room_id,
        "chatRoomName": message.room_name,
        "chatMessage": message.text,
        "chatUser": message.user_name,
        "chatUserId": message.user_id,
        "ChatMessageTs": timestamp(message.created_at),
    }
    if message.client_message_id is not None:
        body["clientMessageId"] = message.client_message_id
    if message.edited_at is not None:
        body["EditedAt"] = timestamp(message.edited_at)
    return body


def message_response_json(message: Message) -> dict[str, Any]:
    return {"message": message_json(message)}


def legacy_history_json(messages: list[Message]) -> dict[str, Any]:
    return {"chats": [message_json(m) for m in messages]}


def history_json(page: HistoryPage) -> dict[str, Any]:
    return {"messages": [message_json(m) for m in page.messages], "hasMore": page.has_more}


def read_json(state: ReadState) -> dict[str, Any]:
    return {"chatRoomId": state.room_id, "lastReadId": state.last_read_id, "unread": state.unread}


def presence_json(presence: Presence) -> dict[str, Any]:
    return {
        "users": [{"ID": uid, "UserName": name} for uid, name in presence.users],
        "connections": presence.connections,
    }


def error_json(status: int, message: str) -> dict[str, Any]:
    """Sanic's own error shape, so clients see one format for every error."""
    try:
        description = HTTPStatus(status).phrase
    except ValueError:
        description = "Error"
    return {"description": description, "status": status, "message": message}
