"""The room list, built as JSON by the database: thousands of rooms, no Python per row.

Through the ORM, 5,000 rooms took 560 ms of the event loop a request here (Tortoise
makes every timestamp a timezone-aware datetime), and every other room's messages
waited behind it; read as plain rows and encoded in Python, 40 ms. Built by the
database, the loop only wraps the text: SQLite steps with the GIL let go, in
aiosqlite's thread; PostgreSQL works in its own process (benchmarks/rooms_list.py,
figures in benchmarks/README.md).

The plan is an index range scan on both databases, never a sort: on SQLite the
(deleted_at) index carries the rowid, so `deleted_at IS NULL AND id > ?` in ID order
is one range of it; on PostgreSQL the primary key's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import storage_errors


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
    """`keys` name, in order: the ID, created, updated, deleted (null) and the name."""
    time = _sqlite_time if sqlite else _postgres_time
    values = ["id", time("created_at"), time("updated_at"), "NULL", "name"]
    pairs = ", ".join(f"'{key}', {value}" for key, value in zip(keys, values, strict=True))
    page = (
        "SELECT id, name, created_at, updated_at FROM rooms WHERE deleted_at IS NULL"
        f" AND id > {'?' if sqlite else '$1'} ORDER BY id"
        + (f" LIMIT {'?' if sqlite else '$2'}" if limited else "")
    )
    if sqlite:
        # The aggregate takes the rows in the subquery's (ID) order.
        array = f"json_group_array(json_object({pairs}))"
    else:
        array = f"COALESCE(json_agg(json_build_object({pairs}) ORDER BY id), '[]')::text"
    return f"SELECT {array}, COUNT(*), MAX(id) FROM ({page}) AS page"


async def rooms_json(keys: Sequence[str], after: int, limit: int | None) -> RoomsJson:
    """Live rooms with an ID above `after`, by ID, at most `limit`, as JSON objects
    with `keys` (see _page_sql)."""
    conn = _connection()
    sqlite = conn.capabilities.dialect == "sqlite"
    params = [after] if limit is None else [after, limit]
    with storage_errors():
        _, rows = await conn.execute_query(_page_sql(sqlite, keys, limit is not None), params)
    array, count, last_id = rows[0]
    return RoomsJson(str(array), int(count), None if last_id is None else int(last_id))


async def any_room_after(room_id: int) -> bool:
    """Whether a live room has an ID above this one (one probe of the same index)."""
    conn = _connection()
    placeholder = "?" if conn.capabilities.dialect == "sqlite" else "$1"
    sql = f"SELECT 1 FROM rooms WHERE deleted_at IS NULL AND id > {placeholder} LIMIT 1"
    with storage_errors():
        _, rows = await conn.execute_query(sql, [room_id])
    return bool(rows)
