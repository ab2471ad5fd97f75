"""The room list, built as JSON by the database: thousands of rooms, no Python per row.

Through the ORM, 5,000 rooms took 560 ms of the event loop a request here (Tortoise
makes every timestamp a timezone-aware datetime), and every other room's messages
waited behind it; read as plain rows and encoded in Python, 40 ms. Built by the
database, the loop only wraps the text: SQLite steps with the GIL let go, in
aiosqlite's thread; PostgreSQL works in its own process (benchmarks/rooms_list.py,
figures in benchmarks/README.md).

The plan is an index range scan on both databases, never a sort: on SQLite the
(deleted_at) index carries the rowid, so `deleted_at IS NULL AND id > ?` in ID order
is one range of it; on PostgreSQL the primary key's. The viewer's role in each room
is one probe of room_members' (room_id, user_id) index; private and direct rooms
they are not a member of are skipped (an admin sees every room). Their read marker
there is one probe of read_markers' (user_id, room_id) index, and their unread
count two more index probes (read_markers.py): three per room, no scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import storage_errors
from .params import bind
from .read_markers import seen_seq_sql, unread_sql


@dataclass(frozen=True)
class RoomsJson:
    array: str  # a JSON array of room objects, by ID
    count: int
    last_id: int | None


def _connection() -> Any:
    from tortoise import connections

    # One connection is configured (db.tortoise_config): "sqlite" or "postgres".
    (conn,) = connections.all()
    return conn


# Timestamps come out in protocol.timestamp's form. On SQLite the text Tortoise wrote
# ("2023-10-30 15:47:33.246704+00:00") is cut into shape; a time on a whole second
# has no fraction there, and strftime (which also converts any offset) gives it one.
def _sqlite_time(column: str) -> str:
    return (
        f"CASE WHEN length({column}) = 32 AND substr({column}, 27) = '+00:00'"
        f" THEN substr({column}, 1, 10) || 'T' || substr({column}, 12, 15) || 'Z'"
        f" ELSE strftime('%Y-%m-%dT%H:%M:%f', {column}) || '000Z' END"
    )


def _postgres_time(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _page_sql(sqlite: bool, keys: Sequence[str], limited: bool) -> str:
    """`keys` name, in order: the ID, created, updated, deleted (null), the name, the
    visibility, the owner's ID, the viewer's role there, their unread messages and
    their read marker (read_markers.py).

    Parameters: the viewer's ID, `after`, `limit`.
    """
    time = _sqlite_time if sqlite else _postgres_time
    viewer = _p(sqlite, 1)
    values = [
        "page.id",
        time("page.created_at"),
        time("page.updated_at"),
        "NULL",
        "page.name",
        "page.visibility",
        "page.owner_id",
        "page.role",
        unread_sql(sqlite, "page.id", "page.last_seq", "page.seen"),
        "page.last_read_id",
    ]
    pairs = ", ".join(f"'{key}', {value}" for key, value in zip(keys, values, strict=True))
    seen = seen_seq_sql(sqlite, viewer, "r.id", "r.last_seq", "k.last_read_seq")
    page = (
        "SELECT r.id, r.name, r.created_at, r.updated_at, r.visibility, r.owner_id, m.role,"
        f" r.last_seq, k.last_read_id, {seen} AS seen"
        " FROM rooms r LEFT JOIN room_members m"
        f" ON m.room_id = r.id AND m.user_id = {viewer}"
        f" LEFT JOIN read_markers k ON k.user_id = {viewer} AND k.room_id = r.id"
        f" WHERE r.deleted_at IS NULL AND r.id > {_p(sqlite, 2)}"
        f" AND (r.visibility = 'public' OR m.role IS NOT NULL OR {_admin(sqlite)})"
        " ORDER BY r.id" + (f" LIMIT {_p(sqlite, 3)}" if limited else "")
    )
    if sqlite:
        # The aggregate takes the rows in the subquery's (ID) order.
        array = f"json_group_array(json_object({pairs}))"
    else:
        array = f"COALESCE(json_agg(json_build_object({pairs}) ORDER BY page.id), '[]')::text"
    return f"SELECT {array}, COUNT(*), MAX(page.id) FROM ({page}) AS page"


def _p(sqlite: bool, n: int) -> str:
    return f"?{n}" if sqlite else f"${n}"


def _admin(sqlite: bool) -> str:
    """Whether the viewer (parameter 1) is a site admin: evaluated once, not per row."""
    return f"EXISTS (SELECT 1 FROM users WHERE id = {_p(sqlite, 1)} AND is_admin)"


async def rooms_json(keys: Sequence[str], viewer: int, after: int, limit: int | None) -> RoomsJson:
    """Live rooms `viewer` may see with an ID above `after`, by ID, at most `limit`,
    as JSON objects with `keys` (see _page_sql)."""
    conn = _connection()
    sqlite = conn.capabilities.dialect == "sqlite"
    params = [viewer, after] + ([] if limit is None else [limit])
    with storage_errors():
        _, rows = await conn.execute_query(
            _page_sql(sqlite, keys, limit is not None), bind(sqlite, params)
        )
    array, count, last_id = rows[0]
    return RoomsJson(str(array), int(count), None if last_id is None else int(last_id))


async def any_room_after(viewer: int, room_id: int) -> bool:
    """Whether a live room `viewer` may see has an ID above this one."""
    conn = _connection()
    sqlite = conn.capabilities.dialect == "sqlite"
    sql = (
        "SELECT 1 FROM rooms r LEFT JOIN room_members m"
        f" ON m.room_id = r.id AND m.user_id = {_p(sqlite, 1)}"
        f" WHERE r.deleted_at IS NULL AND r.id > {_p(sqlite, 2)}"
        f" AND (r.visibility = 'public' OR m.role IS NOT NULL OR {_admin(sqlite)}) LIMIT 1"
    )
    with storage_errors():
        _, rows = await conn.execute_query(sql, bind(sqlite, [viewer, room_id]))
    return bool(rows)
