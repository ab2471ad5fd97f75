"""The message store on PostgreSQL: a group commit in one statement, one round trip.

A batch is one SQL statement (so one implicit transaction): lock the batch's
rooms (FOR UPDATE, in ID order, so two hosts cannot deadlock), number the new
rows from each room's last_seq in the order given, insert them, advance the
rooms, and return the new IDs with the rooms' seq before the batch. IDs are
taken after the room's lock, and the lock is held until the statement commits,
so a room's IDs and seqs commit in the same order on every host (PITFALLS:
IDs are taken at INSERT, not at COMMIT).

The rules stay services.messages.plan_batch's: it is given what the statement
saw (each room's last seq; a room not returned is gone) and must arrive at the
very rows the statement numbered. What one statement cannot decide is a resend
(a client message ID already stored, or twice in the batch): a batch with a
repeated ID, or whose insert hits the (room, user, client ID) unique key, takes
the transaction road instead (BEGIN, lock, look up the originals, insert,
COMMIT: five round trips after the failed one), which is rare: a client resends
after a reconnect.

The ORM road this replaces (BEGIN, lock, bulk_create, a prepared UPDATE per
room, reading the IDs back, COMMIT) cost this process 2.5 to 7 times the CPU per
message, and several times the wall time (benchmarks/store_cost.py; the figures
are in benchmarks/README.md, "Production path").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from ..domain import EDIT, Change, Message
from ..errors import StorageError
from .errors import UNAVAILABLE, storage_errors
from .models import MessageRow, RoomRow
from .reads import OrmReads
from .store import (
    BatchPlan,
    ChangeDraft,
    Draft,
    OriginalKey,
    Planner,
    Stored,
    change_of,
    message_gone,
    original_keys,
    room_ids_of,
    to_message,
)

log = logging.getLogger("chatroom_server.storage")

# The ORM's connection name for PostgreSQL (db.tortoise_config).
CONNECTION = "postgres"

LOCK_ROOMS = (
    "SELECT id, last_seq FROM rooms WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL"
    " ORDER BY id FOR UPDATE"
)

# The whole batch in one statement. $1-$5: the drafts' columns, in order; $6: their
# rooms; $7: now. Returns (ID, room, seq) per new row, then (0, room, last seq before
# the batch) per room locked (a room not returned is gone). The window function
# needs every locked room before it numbers a row: no ID is taken before its room's
# lock. A CTE that modifies runs once whether or not the final SELECT reads it.
STORE_BATCH = """
WITH d AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[])
        WITH ORDINALITY AS d(room_id, user_id, user_name, text, client_message_id, ord)
), locked AS (
    SELECT id, last_seq FROM rooms
    WHERE id = ANY($6::bigint[]) AND deleted_at IS NULL
    ORDER BY id FOR UPDATE
), numbered AS (
    SELECT d.*, l.last_seq + row_number() OVER (PARTITION BY d.room_id ORDER BY d.ord) AS seq
    FROM d JOIN locked AS l ON l.id = d.room_id
), ins AS (
    INSERT INTO messages (room_id, user_id, user_name, text, client_message_id, seq, created_at)
    SELECT room_id, user_id, user_name, text, client_message_id, seq, $7
    FROM numbered ORDER BY ord
    RETURNING id, room_id, seq
), advanced AS (
    UPDATE rooms SET last_seq = n.seq
    FROM (SELECT room_id, max(seq) AS seq FROM numbered GROUP BY room_id) AS n
    WHERE rooms.id = n.room_id
)
SELECT id, room_id, seq FROM ins
UNION ALL
SELECT 0, id, last_seq FROM locked
"""

# The transaction road's insert, rows planned already: $1-$6 the rows' columns, $7
# now, $8/$9 each room's new last seq. Returns (ID, room, seq) per row.
INSERT_PLANNED = """
WITH ins AS (
    INSERT INTO messages (room_id, user_id, user_name, text, client_message_id, seq, created_at)
    SELECT room_id, user_id, user_name, text, client_message_id, seq, $7
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[])
        WITH ORDINALITY AS r(room_id, user_id, user_name, text, client_message_id, seq, ord)
    ORDER BY ord
    RETURNING id, room_id, seq
), advanced AS (
    UPDATE rooms SET last_seq = v.seq
    FROM unnest($8::bigint[], $9::bigint[]) AS v(id, seq)
    WHERE rooms.id = v.id
)
SELECT id, room_id, seq FROM ins
"""


class PostgresStore(OrmReads):
    def __init__(self, plan: Planner) -> None:
        self.plan = plan

    async def open(self) -> None:
        pass  # the ORM's pool is all it uses

    async def close(self) -> None:
        pass

    async def store_batch(self, drafts: Sequence[Draft]) -> list[Stored]:
        keys = original_keys(drafts)
        if len(set(keys)) == len(keys):
            try:
                return await self._in_one_statement(drafts)
            except IntegrityError:
                if not keys:
                    raise  # an unknown author: the writer stores the others one by one
                # A client message ID stored before (a resend): the planner decides.
        return await self._in_a_transaction(drafts)

    async def _in_one_statement(self, drafts: Sequence[Draft]) -> list[Stored]:
        now = datetime.now(UTC)
        values: list[Any] = [
            [d.room.id for d in drafts],
            [d.author.user_id for d in drafts],
            [d.author.user_name for d in drafts],
            [d.text for d in drafts],
            [d.client_message_id for d in drafts],
            room_ids_of(drafts),
            now,
        ]
        with storage_errors():
            _, found = await connections.get(CONNECTION).execute_query(STORE_BATCH, values)
        last: dict[int, int] = {}
        ids: dict[tuple[int, int], int] = {}
        for message_id, room_id, seq in found:
            if message_id:
                ids[(room_id, seq)] = message_id
            else:
                last[room_id] = seq
        # No originals: a stored client ID would have failed the insert.
        plan = self.plan(drafts, last, {}, now)
        _set_ids(plan, ids)
        return plan.outcome()

    async def _in_a_transaction(self, drafts: Sequence[Draft]) -> list[Stored]:
        with storage_errors():
            async with in_transaction(CONNECTION) as conn:
                _, locked = await conn.execute_query(LOCK_ROOMS, [room_ids_of(drafts)])
                last = {row["id"]: row["last_seq"] for row in locked}
                originals = await _originals(drafts, conn)
                now = datetime.now(UTC)
                plan = self.plan(drafts, last, originals, now)
                if plan.rows:
                    rows = plan.rows
                    advance = plan.last_seqs()
                    values: list[Any] = [
                        [r.room_id for r in rows],
                        [r.user_id for r in rows],
                        [r.user_name for r in rows],
                        [r.text for r in rows],
                        [r.client_message_id for r in rows],
                        [r.seq for r in rows],
                        now,
                        list(advance),
                        list(advance.values()),
                    ]
                    _, found = await conn.execute_query(INSERT_PLANNED, values)
                    _set_ids(plan, {(room_id, seq): mid for mid, room_id, seq in found})
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


def _set_ids(plan: BatchPlan, ids: dict[tuple[int, int], int]) -> None:
    """Give the planned rows the IDs the database returned, by (room, seq)."""
    for row in plan.rows:
        found = ids.get((row.room_id, row.seq))
        if found is None:  # the planner and the statement disagree: a bug, loudly
            log.error("stored rows do not match the plan (room %s, seq %s)", row.room_id, row.seq)
            raise StorageError(UNAVAILABLE)
        row.id = found


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
