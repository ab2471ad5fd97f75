"""Messages: store one (committed before anyone sees it), read history."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from ..db.models import MessageRow, RoomRow
from ..domain import HistoryPage, Identity, Message, Room
from ._storage import storage_errors
from .rooms import room_not_found

HISTORY_DEFAULT = 50
HISTORY_MAX = 200


def to_message(row: MessageRow, room_name: str) -> Message:
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


async def store_message(
    room: Room, author: Identity, text: str, client_message_id: str | None = None
) -> tuple[Message, bool]:
    """Insert and commit one message; it is visible to others only after this returns.

    Returns the message and whether it is a resend: a `client_message_id` this
    user already used in this room stores nothing new and returns the original.

    The room's row is locked for the transaction, so messages of one room commit
    one at a time in `seq` (and so ID) order, on every host: PostgreSQL hands
    out IDs at insert, and without the lock two inserts could commit out of order.
    """
    with storage_errors():
        async with in_transaction() as conn:
            locked = (
                await RoomRow.filter(id=room.id, deleted_at=None)
                .select_for_update()
                .using_db(conn)
                .first()
            )
            if locked is None:
                raise room_not_found(room.id)
            if client_message_id is not None:
                original = (
                    await MessageRow.filter(
                        room_id=room.id, user_id=author.user_id, client_message_id=client_message_id
                    )
                    .using_db(conn)
                    .first()
                )
                if original is not None:
                    return to_message(original, room.name), True
            seq = locked.last_seq + 1
            await RoomRow.filter(id=room.id).using_db(conn).update(last_seq=seq)
            row = await MessageRow.create(
                room_id=room.id,
                user_id=author.user_id,
                user_name=author.user_name,
                text=text,
                client_message_id=client_message_id,
                seq=seq,
                using_db=conn,
            )
    return to_message(row, room.name), False


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
