"""Read markers on every database: concurrent marks keep the largest, and the unread
count and the room list read indexes only (db/read_markers.py, db/room_list.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from chatroom_server.db.read_markers import advance, read_state, state_sql
from chatroom_server.db.room_list import _page_sql
from chatroom_server.db.store import Draft, MessageStore
from chatroom_server.protocol import ROOM_KEYS
from chatroom_server.services import rooms as room_service

from .conftest import new_author


async def test_concurrent_marks_keep_the_largest(store: MessageStore) -> None:
    writer, reader = await new_author(), await new_author()
    room = await room_service.create_room("busy")
    stored = await store.store_batch([Draft(room, writer, f"m{i}") for i in range(30)])
    ids = [s[0].id for s in stored if isinstance(s, tuple)]
    order = [ids[i] for i in (3, 29, 0, 17, 28, 5, 29, 12)] * 3
    moved = await asyncio.gather(*(advance(reader.user_id, room.id, i) for i in order))
    assert await read_state(reader.user_id, room.id) == (ids[29], 0)
    # Each mark moved it at most once to each row, and to the newest exactly once.
    assert moved.count(ids[29]) == 1
    assert all(m is None or m in ids for m in moved)
    assert await advance(reader.user_id, room.id, ids[10]) is None
    assert await read_state(reader.user_id, room.id) == (ids[29], 0)


async def _plan(sql: str, params: list[Any]) -> str:
    (conn,) = connections.all()
    if conn.capabilities.dialect == "sqlite":
        for n, value in enumerate(params, 1):
            sql = sql.replace(f"?{n}", str(value))
        _, rows = await conn.execute_query(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(str(tuple(row)[-1]) for row in rows)
    # Tiny tables would be scanned: ask whether the indexes can serve at all.
    for n, value in enumerate(params, 1):
        sql = sql.replace(f"${n}::bigint", f"{value}::bigint").replace(f"${n}", str(value))
    async with in_transaction() as tx:
        await tx.execute_script("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        _, rows = await tx.execute_query(f"EXPLAIN {sql}")
    return "\n".join(str(tuple(row)[0]) for row in rows)


async def _index_names() -> dict[str, str]:
    (conn,) = connections.all()
    if conn.capabilities.dialect == "sqlite":
        _, rows = await conn.execute_query(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    else:
        _, rows = await conn.execute_query("SELECT indexname, indexdef FROM pg_indexes")
    found = {str(tuple(r)[1]).replace('"', ""): str(tuple(r)[0]) for r in rows}
    own = next(name for sql, name in found.items() if "(room_id, user_id, seq)" in sql)
    return {"own newest": own, "changes": "messages_changes_idx"}


async def test_unread_counts_read_the_three_indexes(store: MessageStore) -> None:
    author = await new_author()
    room = await room_service.create_room("planned")
    await store.store_batch([Draft(room, author, "m")])
    (conn,) = connections.all()
    sqlite = conn.capabilities.dialect == "sqlite"
    names = await _index_names()
    plans = {
        "one room": await _plan(state_sql(sqlite), [author.user_id, room.id]),
        "a page of rooms": await _plan(
            _page_sql(sqlite, ROOM_KEYS, True), [author.user_id, 0, 100]
        ),
    }
    for what, plan in plans.items():
        for index in names.values():
            assert index in plan, (what, index, plan)
        # The marker: read_markers' (user_id, room_id) unique index, never a scan.
        assert "read_markers" in plan, (what, plan)
        assert "SCAN read_markers" not in plan and "Seq Scan on read_markers" not in plan
        assert "SCAN messages" not in plan and "Seq Scan on messages" not in plan, plan
