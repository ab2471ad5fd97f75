"""Messages: store one (committed before anyone sees it), read history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from ..db.models import MessageRow
from ..domain import HistoryPage, Identity, Message, Room
from ..errors import ChatError
from ._storage import storage_errors
from .rooms import room_not_found

HISTORY_DEFAULT = 50
HISTORY_MAX = 200


def to_message(row: MessageRow | NewRow, room_name: str) -> Message:
    return Message(
        id=row.id,
        room_id=row.room_id,
        room_name=room_name,
        text=row.text,
        user_id=row.user_id,
        user_name=row.user_name,
        created_at=row.created_at,
        client_message_id=row.client_message_id,
        seq=row.seq,
    )


@dataclass(frozen=True, slots=True)
class Draft:
    """A message to store: its room, author, text and the sender's own ID for it."""

    room: Room
    author: Identity
    text: str
    client_message_id: str | None = None


# For each draft: the message and whether it is a resend, or why it was not stored.
Stored = tuple[Message, bool] | ChatError

# (room, author, client message ID): what makes a send idempotent.
OriginalKey = tuple[int, int, str]


@dataclass(slots=True)
class NewRow:
    """A message row to insert for drafts[index]; `id` is set once it is inserted."""

    index: int
    room_id: int
    user_id: int
    user_name: str
    text: str
    client_message_id: str | None
    seq: int
    created_at: datetime
    id: int = 0


@dataclass(slots=True)
class BatchPlan:
    """What one commit does: the rows to insert, and every draft's outcome.

    Made by plan_batch inside the transaction, once the rooms are locked; the
    storage code inserts `rows`, sets their IDs, advances the rooms to `last_seqs`
    and asks for `outcome()`. Shared by both ways of storing (the ORM, and
    SQLite's own writer connection in sqlite_batches.py).
    """

    drafts: Sequence[Draft]
    results: list[Stored | None]
    rows: list[NewRow]
    repeats: list[tuple[int, int]]  # (draft, earlier draft with the same client ID)

    def last_seqs(self) -> dict[int, int]:
        return {row.room_id: row.seq for row in self.rows}

    def outcome(self) -> list[Stored]:
        results = self.results
        for row in self.rows:
            results[row.index] = (to_message(row, self.drafts[row.index].room.name), False)
        for i, first in self.repeats:
            earlier = results[first]
            assert isinstance(earlier, tuple)
            results[i] = (earlier[0], True)
        assert all(r is not None for r in results)
        return cast(list[Stored], results)


def room_ids_of(drafts: Sequence[Draft]) -> list[int]:
    """The rooms of a batch in ID order: the order they are locked in."""
    return sorted({d.room.id for d in drafts})


def original_keys(drafts: Sequence[Draft]) -> list[OriginalKey]:
    """The drafts' idempotency keys, to look up messages they already stored."""
    return [
        (d.room.id, d.author.user_id, d.client_message_id)
        for d in drafts
        if d.client_message_id is not None
    ]


def plan_batch(
    drafts: Sequence[Draft],
    last_seqs: dict[int, int],
    originals: dict[OriginalKey, Message],
    now: datetime,
) -> BatchPlan:
    """Decide each draft's fate, given its rooms' last seq (locked) and earlier sends.

    A room missing from `last_seqs` is gone. A client message ID found in
    `originals`, or used earlier in the same batch, is a resend: nothing new.
    """
    plan = BatchPlan(drafts, [None] * len(drafts), [], [])
    last = dict(last_seqs)
    first_of: dict[OriginalKey, int] = {}
    for i, draft in enumerate(drafts):
        room_id = draft.room.id
        if room_id not in last:
            plan.results[i] = room_not_found(room_id)
            continue
        cid = draft.client_message_id
        if cid is not None:
            key = (room_id, draft.author.user_id, cid)
            if key in originals:
                plan.results[i] = (originals[key], True)
                continue
            if key in first_of:
                plan.repeats.append((i, first_of[key]))
                continue
            first_of[key] = i
        last[room_id] += 1
        who = draft.author
        plan.rows.append(
            NewRow(i, room_id, who.user_id, who.user_name, draft.text, cid, last[room_id], now)
        )
    return plan


async def store_message(
    room: Room, author: Identity, text: str, client_message_id: str | None = None
) -> tuple[Message, bool]:
    """Insert and commit one message; see store_batch."""
    (result,) = await store_batch([Draft(room, author, text, client_message_id)])
    if isinstance(result, ChatError):
        raise result
    return result


async def store_batch(drafts: Sequence[Draft]) -> list[Stored]:
    """Insert and commit several messages in one transaction (group commit).

    A message is visible to others only after this returns. Each draft gets the
    stored message and whether it is a resend (a `client_message_id` this user
    already used in this room stores nothing new and returns the original), or
    the error that kept it out (its room is gone).

    The rooms' rows are locked for the transaction, so the messages of a room
    commit in `seq` (and so ID) order on every host: PostgreSQL hands out IDs
    at insert, and without the lock two inserts could commit out of order.

    This is the ORM's way, for every database; a SQLite server stores through
    SqliteBatches (sqlite_batches.py), the same plan in one trip to a thread.
    """
    with storage_errors():
        async with in_transaction() as conn:
            last = await _lock_rooms(conn, room_ids_of(drafts))
            originals = await _originals(drafts, conn)
            plan = plan_batch(drafts, last, originals, datetime.now(UTC))
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
                await _advance_rooms(conn, plan.last_seqs())
                ids = await _new_ids(conn, plan.rows)
                for row in plan.rows:
                    row.id = ids[(row.room_id, row.seq)]
    return plan.outcome()


async def _new_ids(conn: BaseDBAsyncClient, rows: list[NewRow]) -> dict[tuple[int, int], int]:
    """The IDs of rows just bulk-inserted (which bulk_create does not return), by (room, seq).

    The rooms are locked, so this batch's rows are the newest of those rooms.
    """
    rooms = list({row.room_id for row in rows})
    marks = _placeholders(conn, len(rooms) + 1)
    _, found = await conn.execute_query(
        f"SELECT room_id, seq, id FROM messages WHERE room_id IN ({', '.join(marks[:-1])})"
        f" ORDER BY id DESC LIMIT {marks[-1]}",
        [*rooms, len(rows)],
    )
    ids = {(r["room_id"], r["seq"]): r["id"] for r in found}
    if all((row.room_id, row.seq) in ids for row in rows):
        return ids
    # IDs not handed out in order (a PostgreSQL sequence with a cache): look them up.
    wanted = [Q(room_id=row.room_id, seq=row.seq) for row in rows]
    exact = await (
        MessageRow.filter(Q(*wanted, join_type="OR"))
        .using_db(conn)
        .values_list("room_id", "seq", "id")
    )
    return {(room_id, seq): message_id for room_id, seq, message_id in exact}


# The statements of a commit that run for every batch are written out here, with
# parameters only: built through the ORM, they cost more than the rest of the commit.
# SQLite's own writer (sqlite_batches.py) runs the same ones; {...} are filled with
# the dialect's placeholders.
LOCK_ROOMS = (
    "SELECT id, last_seq FROM rooms WHERE id IN ({rooms}) AND deleted_at IS NULL ORDER BY id{lock}"
)
ADVANCE_ROOM = "UPDATE rooms SET last_seq = {seq} WHERE id = {room}"


def _placeholders(conn: BaseDBAsyncClient, count: int) -> list[str]:
    if conn.capabilities.dialect == "postgres":
        return [f"${i}" for i in range(1, count + 1)]
    return ["?"] * count


async def _lock_rooms(conn: BaseDBAsyncClient, room_ids: list[int]) -> dict[int, int]:
    """Lock the rooms that exist (not deleted), in ID order: their last_seq by ID.

    One statement locks them all, in ID order, so two hosts cannot deadlock.
    SQLite has no row locks: its write transaction excludes every other writer.
    """
    marks = ", ".join(_placeholders(conn, len(room_ids)))
    lock = " FOR UPDATE" if conn.capabilities.dialect == "postgres" else ""
    _, rows = await conn.execute_query(LOCK_ROOMS.format(rooms=marks, lock=lock), room_ids)
    return {row["id"]: row["last_seq"] for row in rows}


async def _advance_rooms(conn: BaseDBAsyncClient, last_seqs: dict[int, int]) -> None:
    """Set each room's last_seq: one parameterised statement, executed for every room.

    The ORM would build a CASE expression over every room of the batch, which
    costs more than the rest of the commit; this is the same UPDATE, prepared once.
    """
    seq, room = _placeholders(conn, 2)
    await conn.execute_many(
        ADVANCE_ROOM.format(seq=seq, room=room),
        [[seq, room_id] for room_id, seq in last_seqs.items()],
    )


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


async def after_seq(room: Room, seq: int, limit: int) -> list[Message]:
    """Messages of the room with a larger `seq`, in order (gap back-fill)."""
    with storage_errors():
        rows = await MessageRow.filter(room_id=room.id, seq__gt=seq).order_by("seq").limit(limit)
    return [to_message(row, room.name) for row in rows]


async def after_id(room: Room, message_id: int, limit: int) -> list[Message]:
    """Messages of the room with a larger ID, oldest first (recovery after a reconnect)."""
    with storage_errors():
        rows = (
            await MessageRow.filter(room_id=room.id, id__gt=message_id).order_by("id").limit(limit)
        )
    return [to_message(row, room.name) for row in rows]


async def history(
    room: Room,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = HISTORY_DEFAULT,
) -> HistoryPage:
    """A page of messages, oldest first.

    With `after`, the page starts just after that ID and `has_more` says whether
    newer ones follow; otherwise it is the newest `limit` messages (below `before`,
    if given) and `has_more` says whether older ones exist.
    """
    query = MessageRow.filter(room_id=room.id)
    if before is not None:
        query = query.filter(id__lt=before)
    with storage_errors():
        if after is not None:
            rows = await query.filter(id__gt=after).order_by("id").limit(limit + 1)
            has_more = len(rows) > limit
            rows = rows[:limit]
        else:
            rows = await query.order_by("-id").limit(limit + 1)
            has_more = len(rows) > limit
            rows = rows[:limit][::-1]
    return HistoryPage([to_message(row, room.name) for row in rows], has_more)
