"""Rooms: create, list, look up, soft-delete."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tortoise import timezone
from tortoise.transactions import in_transaction

from ..db.errors import storage_errors
from ..db.models import RoomMemberRow, RoomRow
from ..db.room_list import any_room_after, rooms_json
from ..domain import OWNER, PUBLIC, Room
from ..errors import NotFound

log = logging.getLogger("chatroom_server.rooms")


def to_room(row: RoomRow) -> Room:
    return Room(
        row.id,
        row.name,
        row.created_at,
        row.updated_at,
        row.deleted_at,
        row.visibility,
        row.owner_id,
    )


def room_not_found(room_id: int) -> NotFound:
    return NotFound(f"Room {room_id} does not exist.")


async def create_room(name: str, visibility: str = PUBLIC, owner_id: int | None = None) -> Room:
    """A room; with an owner (a user made it), they are its first member."""
    with storage_errors():
        async with in_transaction():
            row = await RoomRow.create(name=name, visibility=visibility, owner_id=owner_id)
            if owner_id is not None:
                await RoomMemberRow.create(room_id=row.id, user_id=owner_id, role=OWNER)
    log.info("room created: id=%s", row.id)
    return to_room(row)


async def list_rooms() -> list[Room]:
    with storage_errors():
        rows = await RoomRow.filter(deleted_at=None).order_by("id")
    return [to_room(row) for row in rows]


@dataclass(frozen=True)
class RoomListing:
    """Rooms as a JSON array (objects with the keys asked for, by ID); for a page, the
    `after` of the next one when there is more."""

    array: str
    paged: bool
    next_after: int | None = None


async def room_listing(
    viewer: int, after: int | None, limit: int | None, page_max: int, keys: Sequence[str]
) -> RoomListing:
    """Every room `viewer` may see, by ID (public ones, theirs, or all for an admin);
    with `after` or `limit`, one page of at most `limit` (`page_max` when only
    `after` is given) and the `after` of the next, if any."""
    if after is None and limit is None:
        return RoomListing((await rooms_json(keys, viewer, 0, None)).array, paged=False)
    size = limit or page_max
    page = await rooms_json(keys, viewer, after or 0, size)
    more = (
        page.count == size
        and page.last_id is not None
        and await any_room_after(viewer, page.last_id)
    )
    return RoomListing(page.array, paged=True, next_after=page.last_id if more else None)


MAX_ID = 2**63 - 1


async def room_exists(room_id: int) -> bool:
    """Whether the room exists and is not deleted (cheaper than get_room)."""
    with storage_errors():
        return bool(await RoomRow.exists(id=room_id, deleted_at=None))


async def get_room(room_id: int) -> Room:
    """The room, or NotFound if it never existed or was deleted."""
    if not 1 <= room_id <= MAX_ID:
        raise room_not_found(room_id)
    with storage_errors():
        row = await RoomRow.get_or_none(id=room_id, deleted_at=None)
    if row is None:
        raise room_not_found(room_id)
    return to_room(row)


async def delete_room(room_id: int) -> Room:
    """Soft delete: the row stays, with DeletedAt set; it leaves every list."""
    if not 1 <= room_id <= MAX_ID:
        raise room_not_found(room_id)
    with storage_errors():
        row = await RoomRow.get_or_none(id=room_id, deleted_at=None)
        if row is None:
            raise room_not_found(room_id)
        row.deleted_at = timezone.now()
        await row.save(update_fields=["deleted_at", "updated_at"])
    log.info("room deleted: id=%s", room_id)
    return to_room(row)


async def deleted_among(room_ids: Iterable[int]) -> set[int]:
    """Which of these rooms are deleted (or gone)."""
    wanted = set(room_ids)
    if not wanted:
        return set()
    with storage_errors():
        alive = await RoomRow.filter(id__in=wanted, deleted_at=None).values_list("id", flat=True)
    return wanted - set(alive)
