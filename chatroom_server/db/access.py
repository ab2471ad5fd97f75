"""A room, what one user is there (role, ban, mute) and whether they are a site
admin: one round trip, on the websocket's connect path and every room endpoint.

The room by primary key and four point lookups by unique index, in one statement;
`services/access.py` decides what the answer allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import storage_errors
from .params import bind


@dataclass(frozen=True, slots=True)
class StandingRow:
    role: str | None = None
    banned: bool = False
    ban_until: datetime | None = None
    muted: bool = False
    mute_until: datetime | None = None
    admin: bool = False


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """A live room's columns, as `services.rooms.to_room` wants them."""

    id: int
    name: str
    created_at: datetime
    updated_at: datetime
    deleted_at: None
    visibility: str
    owner_id: int | None


def _connection() -> Any:
    from tortoise import connections

    (conn,) = connections.all()
    return conn


def _sql(sqlite: bool) -> str:
    room, user = ("?1", "?2") if sqlite else ("$1", "$2")
    return (
        "SELECT r.id, r.name, r.created_at, r.updated_at, r.visibility, r.owner_id,"
        " m.role, b.id, b.until, mu.id, mu.until, u.is_admin"
        " FROM rooms r"
        f" LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = {user}"
        f" LEFT JOIN room_bans b ON b.room_id = r.id AND b.user_id = {user}"
        f" LEFT JOIN room_mutes mu ON mu.room_id = r.id AND mu.user_id = {user}"
        f" LEFT JOIN users u ON u.id = {user}"
        f" WHERE r.id = {room} AND r.deleted_at IS NULL"
    )


def as_datetime(value: object) -> datetime | None:
    """A timestamp as the driver returns it: a datetime (asyncpg) or text (SQLite)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def room_and_standing(room_id: int, user_id: int) -> tuple[RoomRecord, StandingRow] | None:
    """The live room and what the user is there, in one round trip; None if the room
    does not exist or was deleted."""
    conn = _connection()
    sqlite = conn.capabilities.dialect == "sqlite"
    with storage_errors():
        _, rows = await conn.execute_query(_sql(sqlite), bind(sqlite, [room_id, user_id]))
    if not rows:
        return None
    (
        rid,
        name,
        created,
        updated,
        visibility,
        owner,
        role,
        ban,
        ban_until,
        mute,
        mute_until,
        admin,
    ) = tuple(rows[0])
    created_at, updated_at = as_datetime(created), as_datetime(updated)
    assert created_at is not None and updated_at is not None
    record = RoomRecord(
        int(rid),
        str(name),
        created_at,
        updated_at,
        None,
        str(visibility),
        None if owner is None else int(owner),
    )
    standing = StandingRow(
        role=role,
        banned=ban is not None,
        ban_until=as_datetime(ban_until),
        muted=mute is not None,
        mute_until=as_datetime(mute_until),
        admin=bool(admin),
    )
    return record, standing


async def standing_row(room_id: int, user_id: int) -> StandingRow:
    """What the user is in the room (the room assumed to exist)."""
    found = await room_and_standing(room_id, user_id)
    return StandingRow() if found is None else found[1]
