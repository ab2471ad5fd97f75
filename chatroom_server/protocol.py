"""THE wire format: REST request and response shapes, websocket frames in and out.

Field names of the Go server (`chatMessage`, `CreatedAt`, ...) appear here and
nowhere else. Frames are encoded once, to text, and that text is what every
connection receives.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal, TypeVar

import orjson
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from .domain import (
    EDIT,
    Change,
    HistoryPage,
    Member,
    Message,
    Presence,
    ReadState,
    Revocation,
    Room,
    RoomEvent,
    SessionInfo,
    User,
)
from .errors import BadRequest, InvalidMessage
from .names import refused_character

M = TypeVar("M", bound=BaseModel)

SYSTEM_USER_ID = -1
FRAME_TYPE = 1
# The newest websocket protocol (`v=2` in the query: SPEC 12's events too).
PROTOCOL_VERSION = 2

# Error codes of `error` frames.
INVALID_JSON = "invalid_json"
INVALID_MESSAGE = "invalid_message"
MESSAGE_TOO_LONG = "message_too_long"
WRONG_ROOM = "wrong_room"
RATE_LIMITED = "rate_limited"
STORE_FAILED = "store_failed"
MUTED = "muted"
# ... and of protocol v2's edit and delete.
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"

# Control characters other than tab and newline.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

PASSWORD_MIN_BYTES = 8
PASSWORD_MAX_BYTES = 72  # bcrypt's limit: longer is refused, never truncated
USER_NAME_MAX = 64
ROOM_NAME_MAX = 100
EMAIL_MAX = 254
CLIENT_MESSAGE_ID_MAX = 64


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z suffix and microseconds, as the Go server wrote them."""
    if value is None:
        return None
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    # isoformat is C and zero-pads the year, so the first 26 characters are always
    # the date and time to the microsecond (strftime took 3x as long: room lists).
    return value.isoformat(timespec="microseconds")[:26] + "Z"


# --------------------------------------------------------------------------- REST in


MAX_ID = 2**63 - 1


def query_int(raw: str | None, name: str, low: int, high: int) -> int | None:
    """An integer query parameter in [low, high] (ASCII digits only), None when absent."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise BadRequest(f"{name}: must be an integer from {low} to {high}.")
    return int(raw)


def _strict_int(value: Any) -> Any:
    # Accept 5 and "5" (seed clients send either), never True or 5.0.
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    if not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


# Bounds before the validator, so that the JSON schema says minimum/maximum.
Id = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_strict_int)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


def _check_email(value: str) -> str:
    if len(value) > EMAIL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters")
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("must be a valid email address") from None
    return checked.normalized.lower()


def _check_password(value: str) -> str:
    size = len(value.encode("utf-8"))
    if not PASSWORD_MIN_BYTES <= size <= PASSWORD_MAX_BYTES:
        raise ValueError(f"must be {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes long (UTF-8)")
    return value


def check_new_password(value: str) -> str:
    """The signup rule for a new password (the CLI's reset-password applies it too)."""
    return _check_password(value)


def _check_password_length(value: str) -> str:
    """An existing password: any length bcrypt can take (no minimum: never a hint)."""
    if len(value.encode("utf-8")) > PASSWORD_MAX_BYTES:
        raise ValueError(f"must be at most {PASSWORD_MAX_BYTES} bytes long (UTF-8)")
    return value


def _check_name(value: str, limit: int) -> str:
    value = value.strip()
    if not 1 <= len(value) <= limit:
        raise ValueError(f"must be 1 to {limit} characters long after trimming")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


# The `json_schema_extra` below only document a constraint in the OpenAPI document;
# the validators are what enforce it (bytes, not characters, for passwords).


def _doc(**extra: Any) -> Any:
    return Field(json_schema_extra=extra)


class SignupRequest(_Request):
    user_name: str = _doc(minLength=1, maxLength=USER_NAME_MAX)
    email: str = _doc(format="email", maxLength=EMAIL_MAX)
    password: str = _doc(minLength=PASSWORD_MIN_BYTES, maxLength=PASSWORD_MAX_BYTES)

    @field_validator("user_name")
    @classmethod
    def _user_name(cls, value: str) -> str:
        value = _check_name(value, USER_NAME_MAX)
        refused = refused_character(value)
        if refused:
            raise ValueError(
                f"must not contain control, format, line or paragraph separator, private-use"
                f" or unassigned characters ({refused})"
            )
        return value

    _email = field_validator("email")(_check_email)
    _password = field_validator("password")(_check_password)


class LoginRequest(_Request):
    email: str = _doc(maxLength=EMAIL_MAX)
    password: str = _doc(maxLength=PASSWORD_MAX_BYTES)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        # No format check: an unknown address gets the same answer as a wrong password.
        if len(value) > EMAIL_MAX:
            raise ValueError(f"must be at most {EMAIL_MAX} characters")
        return value.strip().lower()

    _password = field_validator("password")(_check_password_length)


Visibility = Literal["public", "private"]
Role = Literal["moderator", "member"]
REASON_MAX = 200
BAN_SECONDS_MAX = 365 * 24 * 3600  # 31536000, the bound of the i13 design


class CreateRoomRequest(_Request):
    name: str = _doc(minLength=1, maxLength=ROOM_NAME_MAX)
    visibility: Visibility = Field(
        default="public", description="`private`: only its members see it."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, ROOM_NAME_MAX)


class UpdateRoomRequest(_Request):
    name: str | None = Field(
        default=None, json_schema_extra={"minLength": 1, "maxLength": ROOM_NAME_MAX}
    )
    visibility: Visibility | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value, ROOM_NAME_MAX)


class UserRefRequest(_Request):
    """A user, by ID or by user name (exactly one of them)."""

    userId: Id | None = None
    userName: str | None = Field(
        default=None, json_schema_extra={"minLength": 1, "maxLength": USER_NAME_MAX}
    )

    @field_validator("userName")
    @classmethod
    def _user_name(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value, USER_NAME_MAX)

    @model_validator(mode="after")
    def _one(self) -> UserRefRequest:
        if (self.userId is None) == (self.userName is None):
            raise ValueError("give either userId or userName")
        return self


class RoleRequest(_Request):
    role: Role


class MuteRequest(_Request):
    userId: Id
    seconds: int | None = Field(
        default=None, ge=1, le=BAN_SECONDS_MAX, description="Omitted: until lifted."
    )


class BanRequest(MuteRequest):
    reason: str | None = Field(default=None, json_schema_extra={"maxLength": REASON_MAX})

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _check_name(value, REASON_MAX)


class PasswordChangeRequest(_Request):
    oldPassword: str = _doc(maxLength=PASSWORD_MAX_BYTES)
    newPassword: str = _doc(minLength=PASSWORD_MIN_BYTES, maxLength=PASSWORD_MAX_BYTES)

    _old = field_validator("oldPassword")(_check_password_length)
    _new = field_validator("newPassword")(_check_password)


class RoomMessagesRequest(_Request):
    roomId: Id


class ReadRequest(_Request):
    lastReadId: Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_strict_int)] = Field(
        description="The last message read. The marker goes to the room's message with the"
        " largest ID at most this one (the newest, for a larger ID) and never moves back."
    )


def parse_body(model: type[M], raw: bytes | None) -> M:
    """Decode a JSON body into `model`, or raise BadRequest naming the field."""
    try:
        data = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    if error["type"] == "missing":
        return f"{field}: this field is required."
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{field}: {message}."


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


# --------------------------------------------------------------------------- the bus
#
# What processes send each other through the broker: a header line, then the
# client frame exactly as every connection will receive it (encoded once).
#   "m <seq> <id>\n<frame>"   a stored message, with its room sequence and ID
#   "c <seq> <id>\n<frame>"   an edit or delete (protocol v2 only), sequenced like them
#   "p\n<frame>"              a presence line (join / leave), not sequenced
#   "t <user ID>\n<frame>"    someone typing (protocol v2 only), not sequenced


class BusItem:
    __slots__ = ("seq", "message_id", "frame", "v2_only", "typist")

    def __init__(
        self,
        seq: int | None,
        message_id: int | None,
        frame: str,
        v2_only: bool = False,
        typist: int = 0,
    ) -> None:
        self.seq = seq
        self.message_id = message_id
        self.frame = frame
        self.v2_only = v2_only
        self.typist = typist  # a typing frame's user


def bus_message(message: Message, frame: str) -> str:
    return f"m {message.seq} {message.id}\n{frame}"


def bus_change(change: Change, frame: str) -> str:
    return f"c {change.seq} {change.id}\n{frame}"


def bus_presence(frame: str) -> str:
    return f"p\n{frame}"


def bus_typing(user_id: int, frame: str) -> str:
    return f"t {user_id}\n{frame}"


def parse_bus(payload: str) -> BusItem:
    """Decode a bus payload; raise ValueError if it is not one of ours."""
    header, sep, frame = payload.partition("\n")
    if not sep:
        raise ValueError("no header")
    if header == "p":
        return BusItem(None, None, frame)
    if header[:2] == "t ":
        return BusItem(None, None, frame, True, int(header[2:]))
    kind, seq, message_id = header.split(" ")
    if kind not in ("m", "c"):
        raise ValueError(f"unknown kind {kind!r}")
    return BusItem(int(seq), int(message_id), frame, kind == "c")


# The control room (pubsub.CONTROL_ROOM) carries revocations, one per payload:
#   "r <user ID> <session ID or -> <session kept or ->"   sessions ended
#   "l <user ID> - -"                                       tokens without a session ended


def bus_revocation(revocation: Revocation) -> str:
    kind = "l" if revocation.legacy_only else "r"
    return f"{kind} {revocation.user_id} {revocation.session_id or '-'} {revocation.keep or '-'}"


# ... and room events (services/members.py, the admin CLI -> realtime/room_events.py):
#   "e <kind> <room ID> <user ID> <until>"                 (room ID 0: every room)


def bus_room_event(event: RoomEvent) -> str:
    return f"e {event.kind} {event.room_id} {event.user_id} {event.until!r}"


def parse_room_event(payload: str) -> RoomEvent:
    """Decode a room event; raise ValueError if it is not one."""
    tag, kind, room_id, user_id, until = payload.split(" ")
    if tag != "e":
        raise ValueError(f"not a room event: {tag!r}")
    return RoomEvent(kind, int(room_id), int(user_id), float(until))


def parse_revocation(payload: str) -> Revocation:
    """Decode a control payload; raise ValueError if it is not a revocation."""
    kind, user_id, session_id, keep = payload.split(" ")
    if kind not in ("r", "l"):
        raise ValueError(f"unknown kind {kind!r}")
    return Revocation(
        int(user_id),
        None if session_id == "-" else session_id,
        None if keep == "-" else keep,
        legacy_only=kind == "l",
    )


# ... and read markers that moved (realtime/reads.py), for the user's other connections:
#   "u <user ID> <room ID> <last read ID> <process> <connection or ->"
# `process` names the process whose connection `connection` (a token of that process's
# own) moved it, or that moved it over REST (connection "-").


class BusRead:
    __slots__ = ("user_id", "room_id", "last_read_id", "process", "connection")

    def __init__(
        self, user_id: int, room_id: int, last_read_id: int, process: str, connection: str | None
    ) -> None:
        self.user_id = user_id
        self.room_id = room_id
        self.last_read_id = last_read_id
        self.process = process
        self.connection = connection


def bus_read(read: BusRead) -> str:
    return (
        f"u {read.user_id} {read.room_id} {read.last_read_id} {read.process}"
        f" {read.connection or '-'}"
    )


def parse_read(payload: str) -> BusRead:
    """Decode a moved read marker; raise ValueError if it is not one."""
    tag, user_id, room_id, last_read_id, process, connection = payload.split(" ")
    if tag != "u" or not process:
        raise ValueError(f"not a read marker: {tag!r}")
    return BusRead(
        int(user_id),
        int(room_id),
        int(last_read_id),
        process,
        None if connection == "-" else connection,
    )
