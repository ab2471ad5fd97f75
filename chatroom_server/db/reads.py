"""The reads every message store shares, through the ORM (history, recovery, back-fill).

They are indexed lookups on (room, ID) and (room, seq); the ORM's cost there is
small next to the write path, which each backend writes out itself.
"""

from __future__ import annotations

from ..domain import HistoryPage, Message, Room
from .errors import storage_errors
from .models import MessageRow, RoomRow
from .store import to_message


class OrmReads:
    """MessageStore's read methods (see store.py), for every database."""

    async def last_seq(self, room_id: int) -> int:
        with storage_errors():
            row = await RoomRow.get_or_none(id=room_id)
        return int(row.last_seq) if row is not None else 0

    async def after_seq(self, room: Room, seq: int, limit: int) -> list[Message]:
        with storage_errors():
            rows = (
                await MessageRow.filter(room_id=room.id, seq__gt=seq).order_by("seq").limit(limit)
            )
        return [to_message(row, room.name) for row in rows]

    async def after_id(self, room: Room, message_id: int, limit: int) -> list[Message]:
        with storage_errors():
            rows = (
                await MessageRow.filter(room_id=room.id, id__gt=message_id)
                .order_by("id")
                .limit(limit)
            )
        return [to_message(row, room.name) for row in rows]

    async def history(
        self, room: Room, *, before: int | None, after: int | None, limit: int
    ) -> HistoryPage:
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
