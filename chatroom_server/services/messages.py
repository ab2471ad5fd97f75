"""Messages: store one (committed before anyone sees it), read history."""

from __future__ import annotations

from ..db.models import MessageRow
from ..domain import HistoryPage, Identity, Message, Room
from ._storage import storage_errors

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
    )


async def store_message(
    room: Room, author: Identity, text: str, client_message_id: str | None = None
) -> Message:
    """Insert and commit one message; it is visible to others only after this returns."""
    with storage_errors():
        row = await MessageRow.create(
            room_id=room.id,
            user_id=author.user_id,
            user_name=author.user_name,
            text=text,
            client_message_id=client_message_id,
        )
    return to_message(row, room.name)


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
