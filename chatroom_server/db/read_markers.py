"""Read markers: how far a user has read a room, and how much of it is left unread.

A marker names a row of the room (`last_read_id`) and that row's seq
(`last_read_seq`); it only ever moves forward. The room's rows are numbered
1, 2, 3... by seq with no holes (messages, edits and deletes alike), so what
follows seq `e` is `rooms.last_seq - e` rows, and the unread messages are those
minus the rows that are not live messages:

    e      = max(marker seq, seq of the user's own newest message in the room)
    unread = last_seq - e - COUNT(rows with seq > e AND (kind <> 0 OR deleted_at IS NOT NULL))

Their own messages never count (nothing of theirs follows their newest one), nor
deleted messages, nor edits and deletes. Each term is one index probe: the
marker by the (user_id, room_id) unique index, the user's newest message by
(room_id, user_id, seq) read backwards, and the count by the small partial index
messages_changes_idx, whose predicate the count repeats word for word so that
both databases use it (a partial index is only chosen when the query implies
its WHERE; SQLite already misses it with the two sides of the OR swapped:
tests/contract/test_read_markers.py checks the plans). A room read to its end
takes no probe but the marker's. The room list (room_list.py) puts the same
expressions beside every room of a page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .errors import storage_errors
from .params import bind


def _connection() -> Any:
    from tortoise import connections

    (conn,) = connections.all()
    return conn


def _p(sqlite: bool, n: int) -> str:
    return f"?{n}" if sqlite else f"${n}::bigint"


def seen_seq_sql(sqlite: bool, user: str, room: str, last_seq: str, marker_seq: str) -> str:
    """`e`: the seq up to which `user` has seen `room` (SQL expressions, all four).

    A room read to its end (most rooms of a list, most of the time) needs no probe.
    """
    greatest = "MAX" if sqlite else "GREATEST"
    marker = f"COALESCE({marker_seq}, 0)"
    own = f"SELECT MAX(o.seq) FROM messages o WHERE o.room_id = {room} AND o.user_id = {user}"
    return (
        f"CASE WHEN {marker} >= {last_seq} THEN {marker}"
        f" ELSE {greatest}({marker}, COALESCE(({own}), 0)) END"
    )


def unread_sql(sqlite: bool, room: str, last_seq: str, seen: str) -> str:
    """The live messages of `room` after seq `seen` (see the module's docstring);
    no probe when nothing follows it."""
    greatest = "MAX" if sqlite else "GREATEST"
    changes = (
        f"SELECT COUNT(*) FROM messages c WHERE c.room_id = {room} AND c.seq > {seen}"
        " AND (c.kind <> 0 OR c.deleted_at IS NOT NULL)"
    )
    # Never below 0, whatever a hand-edited database holds.
    return (
        f"CASE WHEN {seen} >= {last_seq} THEN 0"
        f" ELSE {greatest}(0, {last_seq} - {seen} - ({changes})) END"
    )


def state_sql(sqlite: bool) -> str:
    """The marker's ID (or NULL) and the unread count. Parameters: the user, the room."""
    user, room = _p(sqlite, 1), _p(sqlite, 2)
    seen = seen_seq_sql(sqlite, user, "r.id", "r.last_seq", "k.last_read_seq")
    # The OFFSET keeps the inner query apart (neither database merges it into the
    # outer one then), so that `seen` is worked out once, not once per use.
    fence = "LIMIT -1 OFFSET 0" if sqlite else "OFFSET 0"
    return (
        f"SELECT s.last_read_id, {unread_sql(sqlite, 's.id', 's.last_seq', 's.seen')}"
        f" FROM (SELECT r.id, r.last_seq, k.last_read_id, {seen} AS seen"
        " FROM rooms r LEFT JOIN read_markers k"
        f" ON k.user_id = {user} AND k.room_id = r.id WHERE r.id = {room} {fence}) AS s"
    )


def advance_sql(sqlite: bool) -> str:
    """Move the marker to the room's row with the largest ID at most the one named,
    if that row is later than the marker; return the new marker's ID if it moved.

    Parameters: the user, the room, the ID named, the time (SQLite only).
    """
    user, room, named = _p(sqlite, 1), _p(sqlite, 2), _p(sqlite, 3)
    now = "?4" if sqlite else "now()"
    # The row: one step backwards on the (room_id, id) index.
    target = (
        f"SELECT id, seq FROM messages WHERE room_id = {room} AND id <= {named}"
        " ORDER BY id DESC LIMIT 1"
    )
    upsert = (
        "INSERT INTO read_markers (user_id, room_id, last_read_id, last_read_seq, updated_at)"
        f" SELECT {user}, {room}, t.id, t.seq, {now} FROM ({target}) AS t"
        # "WHERE true": SQLite would read ON CONFLICT as a join's ON otherwise.
        " WHERE true ON CONFLICT (user_id, room_id) DO UPDATE SET"
        " last_read_id = excluded.last_read_id, last_read_seq = excluded.last_read_seq,"
        " updated_at = excluded.updated_at"
        " WHERE excluded.last_read_seq > read_markers.last_read_seq"
        " RETURNING last_read_id"
    )
    if sqlite:
        return upsert
    # Tortoise's asyncpg client runs a statement that starts with INSERT without
    # fetching its rows: RETURNING would come back empty.
    return f"WITH moved AS ({upsert}) SELECT last_read_id FROM moved"


async def advance(user_id: int, room_id: int, last_read_id: int) -> int | None:
    """The marker's new row ID if it moved forward, else None (see advance_sql)."""
    conn = _connection()
    sqlite = conn.capabilities.dialect == "sqlite"
    params: list[Any] = [user_id, room_id, last_read_id]
    if sqlite:
        params.append(datetime.now(UTC).isoformat(" "))  # as the ORM writes it
    with storage_errors():
        _, rows = await conn.execute_query(advance_sql(sqlite), bind(sqlite, params))
    return int(rows[0][0]) if rows else None


async def read_state(user_id: int, room_id: int) -> tuple[int | None, int]:
    """(the marker's row ID or None, unread messages) of the user in the room."""
    conn = _connection()
    sqlite = conn.capabilities.dialect == "sqlite"
    with storage_errors():
        _, rows = await conn.execute_query(state_sql(sqlite), bind(sqlite, [user_id, room_id]))
    if not rows:
        return None, 0
    marker, unread = tuple(rows[0])
    return (None if marker is None else int(marker)), int(unread)
