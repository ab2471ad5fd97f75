"""The reads every message store shares, through the ORM (history, recovery, back-fill).

They are indexed lookups on (room, ID) and (room, seq); the ORM's cost there is
small next to the write path, which each backend writes out itself. A room's rows
are its messages and the edits and deletes of them (db/models.py MessageRow.kind):
history and v1 recovery read live messages only; back-fill and v2 recovery read
every row, and the edits are shown with the message they change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..domain import DELETE, EDIT, MESSAGE, Change, HistoryPage, Message, Room
from .errors import storage_errors
from .models import MessageRow, RoomRow
from .store import Entry, to_message

# History and v1 recovery: messages that were not deleted.
_LIVE: dict[str, Any] = {"kind": MESSAGE, "deleted_at": None}


class OrmReads:
    """MessageStore's read methods (see store.py), for every database."""

    async def last_seq(self, room_id: int) -> int:
        with storage_errors():
            row = await RoomRow.get_or_none(id=room_id)
        return int(row.last_seq) if row is not None else 0

    async def live_message(self, message_id: int) -> Message | None:
        with storage_errors():
            row = await MessageRow.get_or_none(id=message_id, **_LIVE)
        return None if row is None else to_message(row, "")

    async def after_seq(self, room: Room, seq: int, limit: int) -> list[tuple[int, Entry | None]]:
        with storage_errors():
            rows = (
                await MessageRow.filter(room_id=room.id, seq__gt=seq).order_by("seq").limit(limit)
            )
            entries = await _entries(rows, room)
        return [(row.seq, entry) for row, entry in zip(rows, entries, strict=True)]

    async def after_id(
        self, room: Room, message_id: int, limit: int, changes: bool
    ) -> tuple[list[Entry], int, bool]:
        query = MessageRow.filter(room_id=room.id, id__gt=message_id)
        if not changes:
            query = query.filter(**_LIVE)
        with storage_errors():
            rows = await query.order_by("id").limit(limit + 1)
            complete = len(rows) <= limit
            rows = rows[:limit]
            entries = await _entries(rows, room)
        last_id = rows[-1].id if rows else message_id
        return [e for e in entries if e is not None], last_id, complete

    async def history(
        self, room: Room, *, before: int | None, after: int | None, limit: int
    ) -> HistoryPage:
        query = MessageRow.filter(room_id=room.id, **_LIVE)
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


async def _entries(rows: Sequence[MessageRow], room: Room) -> list[Entry | None]:
    """Each row as what a client is shown: a message, an edit (with the message it
    changes, unless that was deleted since) or a delete; None for a deleted message."""
    targets: dict[int, MessageRow] = {}
    wanted = {row.target_id for row in rows if row.kind == EDIT and row.target_id is not None}
    if wanted:
        found = await MessageRow.filter(id__in=wanted, deleted_at=None)
        targets = {row.id: row for row in found}
    entries: list[Entry | None] = []
    for row in rows:
        if row.kind == MESSAGE:
            entries.append(None if row.deleted_at is not None else to_message(row, room.name))
            continue
        target_id = row.target_id or 0
        shown: Message | None = None
        if row.kind == EDIT and target_id in targets:
            target = to_message(targets[target_id], room.name)
            shown = replace(target, text=row.text, edited_at=row.created_at)
        kind = DELETE if row.kind == DELETE else EDIT
        entries.append(
            Change(kind, row.id, row.seq, room.id, target_id, row.created_at, row.user_id, shown)
        )
    return entries
