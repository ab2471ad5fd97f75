"""Plain values that services hand to the transport layers (no ORM, no Sanic)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class User:
    id: int
    user_name: str
    email: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


PUBLIC, PRIVATE, DIRECT = "public", "private", "direct"
OWNER, MODERATOR, MEMBER = "owner", "moderator", "member"


@dataclass(frozen=True, slots=True)
class Room:
    id: int
    name: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    visibility: str = PUBLIC
    owner_id: int | None = None


@dataclass(frozen=True, slots=True)
class Member:
    user_id: int
    user_name: str
    role: str


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """A change to who may do what in a room, as every process hears of it.

    `kind`: "removed" (kicked), "left", "banned", "muted" (until `until`, unix
    seconds, or 0 for no end), "unmuted", "private" (the room's non-members
    leave), "renamed" (read the room again), "deleted"; and "admin_off": the user
    is no longer a site admin (`room_id` 0: their sockets to every room are
    checked again).
    """

    kind: str
    room_id: int
    user_id: int = 0
    until: float = 0.0


# What a row of the messages table is (db/models.py MessageRow.kind).
MESSAGE, EDIT, DELETE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    room_id: int
    room_name: str
    text: str
    user_id: int
    user_name: str
    created_at: datetime
    client_message_id: str | None = None
    seq: int = 0
    edited_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """An edit or delete of message `target_id`, stored as row `id` at `seq` of its room.

    `message`: for an edit, the message with the text this edit set and `edited_at`;
    None for a delete, or when the message was deleted since (nothing to show).
    """

    kind: int  # EDIT or DELETE
    id: int
    seq: int
    room_id: int
    target_id: int
    at: datetime
    by_user_id: int
    message: Message | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid token says the caller is."""

    user_id: int
    user_name: str
    email: str
    expires_at: int  # unix seconds
    # The session the token belongs to (its `sid`); None for a token issued before
    # sessions existed, which stands until it expires or the user ends all sessions.
    session_id: str | None = None
    issued_at: int = 0  # unix seconds
    # The signing key that signed the token (its `kid`); None: the legacy key, for a
    # token without a kid. Its socket closes when that key retires (realtime/keys.py).
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class Revocation:
    """Sessions that just ended, as every process hears of them.

    With `session_id`, that one session; without, every session of the user but
    `keep` (and the user's tokens without a session): logout-all, a password
    change, a deactivated account.
    """

    user_id: int
    session_id: str | None = None
    keep: str | None = None
    # Only the user's tokens without a session (a logout with such a token).
    legacy_only: bool = False

    def ends(self, user_id: int, session_id: str | None) -> bool:
        if user_id != self.user_id:
            return False
        if self.legacy_only:
            return session_id is None
        if self.session_id is not None:
            return session_id == self.session_id
        return session_id is None or session_id != self.keep


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    created_at: datetime
    last_seen_at: datetime
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: list[Message]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is connected to a room: (user ID, user name) pairs, and open sockets."""

    users: list[tuple[int, str]]
    connections: int


@dataclass(frozen=True, slots=True)
class ReadState:
    """How far a user has read a room: their marker (None: they never marked it, or
    no message of the room is at or before what they named), what is left unread
    there, and whether the call that returned this moved the marker."""

    room_id: int
    last_read_id: int | None
    unread: int
    moved: bool = False
