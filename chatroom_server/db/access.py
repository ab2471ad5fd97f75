"""What one user is in one room (role, ban, mute) and whether they are a site admin:
one round trip, on the websocket's connect path and every room endpoint.

Four point lookups by unique index, in one statement; `services/access.py` decides
what the answer allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import storage_errors


@dataclass(frozen=True, slots=True)
class StandingRow:
    role: str | None = None
    banned: bool = False
    ban_until: datetime | None = None
    muted: bool = False
    mute_until: datetime | None = None
    admin: bool = False


def _connection() -> Any:
    from tortoise import connections

    (conn,) = connections.all()
    return conn


def _sql(sqlite: bool) -> str:
    def p(n: int) -> str:
        return "?" if sqlite else f"${n}"

    return (
        f"SELECT 'r', role, NULL FROM room_members WHERE room_id = {p(1)} AND user_id = {p(2)}"
        f" UNION ALL SELECT 'b', NULL, until FROM room_bans"
        f" WHERE room_id = {p(3)} AND user_id = {p(4)}"
        f" UNION ALL SELECT 'm', NULL, until FROM room_mutes"
        f" WHERE room_id = {p(5)} AND user_id = {p(6)}"
        f" UNION ALL SELECT 'a', NULL, NULL FROM users WHERE id = {p(7)} AND is_admin"
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


async def standing_row(room_id: int, user_id: int) -> StandingRow:
    conn = _connection()
    sqlite = conn.capabilities.dialect == "sqlite"
    params = [room_id, user_id, room_id, user_id, room_id, user_id, user_id]
    with storage_errors():
        _, rows = await conn.execute_query(_sql(sqlite), params)
    found: dict[str, Any] = {}
    for kind, role, until in rows:
        found[kind] = role if kind == "r" else until
    return StandingRow(
        role=found.get("r"),
        banned="b" in found,
        ban_until=as_datetime(found.get("b")),
        muted="m" in found,
        mute_until=as_datetime(found.get("m")),
        admin="a" in found,
    )
