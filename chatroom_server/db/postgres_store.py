"""The message store on PostgreSQL: group commit through the ORM's connection pool.

A batch is one transaction: lock the batch's rooms (FOR UPDATE, in ID order, so
two hosts cannot deadlock), look up resends, insert the new rows, advance each
room's last_seq, read the new IDs back. The statements that run for every batch
are written out with parameters: built through the ORM they cost more than the
rest of the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from ..domain import EDIT, Change, Message
from .errors import storage_errors
from .models import MessageRow, RoomRow
from .reads import OrmReads
from .store import (
    ChangeDraft,
    Draft,
    NewRow,
    OriginalKey,
    Planner,
    Stored,
    change_of,
    message_gone,
    original_keys,
    room_ids_of,
    to_message,
)

LOCK_ROOMS = (
    "SELECT id, last_seq FROM rooms WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL"
    " ORDER BY id FOR UPDATE"
)
ADVANCE_ROOM = "UPDATE rooms SET last_seq = $1 WHERE id = $2"
NEWEST_IDS = (
    "SELECT room_id, seq, id FROM messages WHERE room_id = ANY($1::bigint[])"
    " ORDER BY id DESC LIMIT $2"
)


class PostgresStore(OrmReads):
    def __init__(self, plan: Planner) -> None:
        self.plan = plan

    async def open(self) -> None:
        pass  # the ORM's pool is all it uses

    async def close(self) -> None:
        pass

    async def store_batch(self, drafts: Sequence[Draft]) -> list[Stored]:
        with storage_errors():
            async with in_transaction() as conn:
                _, locked = await conn.execute_query(LOCK_ROOMS, [room_ids_of(drafts)])
                last = {row["id"]: row["last_seq"] for row in locked}
                originals = await _originals(drafts, conn)
                plan = self.plan(drafts, last, originals, datetime.now(UTC))
                if plan.rows:
                    await MessageRow.bulk_create(
                        [
                            MessageRow(
                                room_id=row.room_id,
                                user_id=row.user_id,
                                user_name=row.user_name,
                                text=row.text,
                                client_message_id=row.client_message_id,
                                seq=row.seq,
                                created_at=row.created_at,
                            )
                            for row in plan.rows
                        ],
                        using_db=conn,
                    )
                    # One statement prepared once and run for every room: the ORM
                    # would build a CASE over every room of the batch instead.
                    await conn.execute_many(
                        ADVANCE_ROOM, [[seq, room] for room, seq in plan.last_seqs().items()]
                    )
                    ids = await new_ids(conn, plan.rows)
                    for row in plan.rows:
                        row.id = ids[(row.room_id, row.seq)]
        return plan.outcome()

    async def store_change(self, draft: ChangeDraft) -> Change:
        """MessageStore.store_change: the room locked, like a batch's (rare: the ORM's road)."""
        room_id = draft.room.id
        with storage_errors():
            async with in_transaction() as conn:
                _, locked = await conn.execute_query(LOCK_ROOMS, [[room_id]])
                found = (
                    await MessageRow.filter(
                        id=draft.target_id, room_id=room_id, kind=0, deleted_at=None
                    )
                    .using_db(conn)
                    .first()
                )
                if not locked or found is None:
                    raise message_gone(draft.target_id)
                target = to_message(found, draft.room.name)
                seq, now, who = locked[0]["last_seq"] + 1, datetime.now(UTC), draft.actor
                row = await MessageRow.create(
                    room_id=room_id,
                    user_id=who.user_id,
                    user_name=who.user_name,
                    text=draft.text,
                    seq=seq,
                    created_at=now,
                    kind=draft.kind,
                    target_id=target.id,
                    using_db=conn,
                )
                update = MessageRow.filter(id=target.id).using_db(conn)
                if draft.kind == EDIT:
                    await update.update(text=draft.text, edited_at=now)
                else:
                    await update.update(deleted_at=now, deleted_by_id=who.user_id)
                await RoomRow.filter(id=room_id).using_db(conn).update(last_seq=seq)
        return change_of(draft, row.id, seq, now, target)


async def new_ids(conn: BaseDBAsyncClient, rows: list[NewRow]) -> dict[tuple[int, int], int]:
    """The IDs of rows just bulk-inserted (which bulk_create does not return), by (room, seq).

    The rooms are locked, so this batch's rows are usually the newest of those rooms.
    """
    rooms = list({row.room_id for row in rows})
    _, found = await conn.execute_query(NEWEST_IDS, [rooms, len(rows)])
    ids = {(r["room_id"], r["seq"]): r["id"] for r in found}
    if all((row.room_id, row.seq) in ids for row in rows):
        return ids
    # IDs not handed out in order (a sequence with a cache): look them up.
    wanted = [Q(room_id=row.room_id, seq=row.seq) for row in rows]
    exact = await (
        MessageRow.filter(Q(*wanted, join_type="OR"))
        .using_db(conn)
        .values_list("room_id", "seq", "id")
    )
    return {(room_id, seq): message_id for room_id, seq, message_id in exact}


async def _originals(
    drafts: Sequence[Draft], conn: BaseDBAsyncClient
) -> dict[OriginalKey, Message]:
    """Messages already stored under the drafts' client message IDs (resends)."""
    keys = original_keys(drafts)
    if not keys:
        return {}
    wanted = [Q(room_id=room, user_id=user, client_message_id=cid) for room, user, cid in keys]
    rows = await MessageRow.filter(Q(*wanted, join_type="OR")).using_db(conn)
    names = {d.room.id: d.room.name for d in drafts}
    return {
        (r.room_id, r.user_id, r.client_message_id or ""): to_message(r, names[r.room_id])
        for r in rows
    }
