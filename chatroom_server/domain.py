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


@dataclass(frozen=True, slots=True)
class Room:
    id: int
    name: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


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


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid token says the caller is."""

    user_id: int
    user_name: str
    email: str
    expires_at: int  # unix seconds


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: list[Message]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is connected to a room: (user ID, user name) pairs, and open sockets."""

    users: list[tuple[int, str]]
    connections: int
