"""Rooms with members: create, change, delete; members, roles, bans, mutes; direct rooms.

Every action asks services/access.py first. What must reach open sockets (a kick,
a ban, a mute, a room gone private or deleted) is announced as a RoomEvent: this
process applies it at once and the broker carries it to every other
(realtime/room_events.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from tortoise import timezone
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from ..db.errors import storage_errors
from ..db.models import RoomBanRow, RoomMemberRow, RoomMuteRow, RoomRow, UserRow
from ..domain import (
    DIRECT,
    MEMBER,
    MODERATOR,
    OWNER,
    PRIVATE,
    PUBLIC,
    Identity,
    Member,
    Room,
    RoomEvent,
)
from ..errors import BadRequest, Conflict, NotFound
from ..names import name_key
from . import rooms as room_service
from .access import Action, Standing, authorize, check_over, load_room, standing

log = logging.getLogger("chatroom_server.rooms")

Announce = Callable[[RoomEvent], Awaitable[None]]

_ROLE_ORDER = {OWNER: 0, MODERATOR: 1, MEMBER: 2}


@dataclass(frozen=True, slots=True)
class UserRef:
    """A user named in a request: by ID or by user name."""

    user_id: int | None = None
    user_name: str | None = None


async def find_user(ref: UserRef) -> tuple[int, str]:
    """(ID, user name) of an active user, or NotFound."""
    with storage_errors():
        if ref.user_id is not None:
            row = await UserRow.get_or_none(id=ref.user_id, deactivated_at=None)
            label = str(ref.user_id)
        else:
            name = ref.user_name or ""
            label = f'"{name}"'
            row = await UserRow.get_or_none(user_name=name, deactivated_at=None)
            if row is None:
                row = await UserRow.get_or_none(name_key=name_key(name), deactivated_at=None)
    if row is None:
        raise NotFound(f"User {label} does not exist.")
    return row.id, row.user_name


async def _user_name(user_id: int) -> str:
    with storage_errors():
        row = await UserRow.get_or_none(id=user_id)
    if row is None:
        raise NotFound(f"User {user_id} does not exist.")
    return row.user_name


def _until(seconds: int | None) -> tuple[object, float]:
    """The row's `until` and the event's (unix seconds, 0 = no end)."""
    if seconds is None:
        return None, 0.0
    return timezone.now() + timedelta(seconds=seconds), time.time() + seconds


class RoomAdmin:
    def __init__(self) -> None:
        self._announce: Announce | None = None

    def announce_with(self, announce: Announce) -> None:
        self._announce = announce

    async def _tell(self, event: RoomEvent) -> None:
        if self._announce is not None:
            await self._announce(event)

    # ------------------------------------------------------------------ rooms

    async def create(self, identity: Identity, name: str, visibility: str) -> Standing:
        room = await room_service.create_room(name, visibility, identity.user_id)
        return await standing(room, identity.user_id)

    async def get(self, identity: Identity, room_id: int) -> Standing:
        return await authorize(room_id, identity, Action.READ)

    async def update(
        self, identity: Identity, room_id: int, name: str | None, visibility: str | None
    ) -> Standing:
        st = await authorize(room_id, identity, Action.EDIT)
        changes: dict[str, object] = {}
        if name is not None and name != st.room.name:
            changes["name"] = name
        if visibility is not None and visibility != st.room.visibility:
            changes["visibility"] = visibility
        if changes:
            with storage_errors():
                await RoomRow.filter(id=room_id, deleted_at=None).update(
                    **changes, updated_at=timezone.now()
                )
            log.info("room changed: id=%s fields=%s", room_id, ",".join(sorted(changes)))
            if changes.get("visibility") == PRIVATE:
                await self._tell(RoomEvent("private", room_id))
            if "name" in changes:
                await self._tell(RoomEvent("renamed", room_id))
        return await standing(await load_room(room_id), identity.user_id)

    async def delete(self, identity: Identity, room_id: int) -> None:
        await authorize(room_id, identity, Action.DELETE)
        await room_service.delete_room(room_id)
        await self._tell(RoomEvent("deleted", room_id))

    # ------------------------------------------------------------------ members

    async def members(self, identity: Identity, room_id: int) -> list[Member]:
        await authorize(room_id, identity, Action.READ)
        with storage_errors():
            rows = await RoomMemberRow.filter(room_id=room_id).values_list(
                "user_id", "user__user_name", "role"
            )
        members = [Member(uid, str(name), str(role)) for uid, name, role in rows]
        members.sort(key=lambda m: (_ROLE_ORDER.get(m.role, 3), m.user_id))
        return members

    async def add_member(
        self, identity: Identity, room_id: int, ref: UserRef
    ) -> tuple[Member, bool]:
        """The member, and whether they were added now (not there already)."""
        st = await authorize(room_id, identity, Action.INVITE)
        user_id, user_name = await find_user(ref)
        target = await standing(st.room, user_id)
        if target.role is not None:
            return Member(user_id, user_name, target.role), False
        if target.banned:
            raise Conflict("That user is banned from this room; lift the ban first.")
        with storage_errors():
            try:
                await RoomMemberRow.create(room_id=room_id, user_id=user_id, role=MEMBER)
            except IntegrityError:  # added meanwhile
                return Member(user_id, user_name, MEMBER), False
        log.info("member added: room=%s user=%s", room_id, user_id)
        return Member(user_id, user_name, MEMBER), True

    async def set_role(self, identity: Identity, room_id: int, user_id: int, role: str) -> Member:
        st = await authorize(room_id, identity, Action.SET_ROLE)
        user_name = await _user_name(user_id)
        target = await standing(st.room, user_id)
        check_over(st, target, Action.SET_ROLE)
        if target.role is None and st.room.visibility != PUBLIC:
            raise NotFound(f"User {user_id} is not a member of this room.")
        with storage_errors():
            updated = await RoomMemberRow.filter(room_id=room_id, user_id=user_id).update(role=role)
            if not updated:
                await RoomMemberRow.create(room_id=room_id, user_id=user_id, role=role)
        log.info("role changed: room=%s user=%s role=%s", room_id, user_id, role)
        return Member(user_id, user_name, role)

    async def remove(self, identity: Identity, room_id: int, user_id: int) -> None:
        """Leave (the caller themself) or kick."""
        if user_id == identity.user_id:
            await authorize(room_id, identity, Action.LEAVE)
            kind = "left"
        else:
            st = await authorize(room_id, identity, Action.KICK)
            await _user_name(user_id)
            target = await standing(st.room, user_id)
            if target.role is None and st.room.visibility != PUBLIC:
                raise NotFound(f"User {user_id} is not a member of this room.")
            check_over(st, target, Action.KICK)
            kind = "removed"
        with storage_errors():
            await RoomMemberRow.filter(room_id=room_id, user_id=user_id).delete()
        log.info("member removed: room=%s user=%s", room_id, user_id)
        await self._tell(RoomEvent(kind, room_id, user_id))

    # ------------------------------------------------------------------ bans, mutes

    async def _target(
        self, identity: Identity, room_id: int, user_id: int, action: Action
    ) -> Standing:
        st = await authorize(room_id, identity, action)
        await _user_name(user_id)
        target = await standing(st.room, user_id)
        check_over(st, target, action)
        return target

    async def ban(
        self,
        identity: Identity,
        room_id: int,
        user_id: int,
        seconds: int | None,
        reason: str | None,
    ) -> None:
        await self._target(identity, room_id, user_id, Action.BAN)
        until, _ = _until(seconds)
        with storage_errors():
            async with in_transaction():
                await RoomBanRow.filter(room_id=room_id, user_id=user_id).delete()
                await RoomBanRow.create(
                    room_id=room_id, user_id=user_id, until=until, reason=reason
                )
                await RoomMemberRow.filter(room_id=room_id, user_id=user_id).delete()
        log.info("user banned: room=%s user=%s seconds=%s", room_id, user_id, seconds)
        await self._tell(RoomEvent("banned", room_id, user_id))

    async def unban(self, identity: Identity, room_id: int, user_id: int) -> None:
        await authorize(room_id, identity, Action.BAN)
        with storage_errors():
            await RoomBanRow.filter(room_id=room_id, user_id=user_id).delete()
        log.info("ban lifted: room=%s user=%s", room_id, user_id)

    async def mute(
        self, identity: Identity, room_id: int, user_id: int, seconds: int | None
    ) -> None:
        await self._target(identity, room_id, user_id, Action.MUTE)
        until, until_unix = _until(seconds)
        with storage_errors():
            async with in_transaction():
                await RoomMuteRow.filter(room_id=room_id, user_id=user_id).delete()
                await RoomMuteRow.create(room_id=room_id, user_id=user_id, until=until)
        log.info("user muted: room=%s user=%s seconds=%s", room_id, user_id, seconds)
        await self._tell(RoomEvent("muted", room_id, user_id, until_unix))

    async def unmute(self, identity: Identity, room_id: int, user_id: int) -> None:
        await authorize(room_id, identity, Action.MUTE)
        with storage_errors():
            await RoomMuteRow.filter(room_id=room_id, user_id=user_id).delete()
        log.info("user unmuted: room=%s user=%s", room_id, user_id)
        await self._tell(RoomEvent("unmuted", room_id, user_id))

    # ------------------------------------------------------------------ direct rooms

    async def direct(self, identity: Identity, ref: UserRef) -> Standing:
        """The one direct room of the caller and that user, made on first ask."""
        other_id, other_name = await find_user(ref)
        if other_id == identity.user_id:
            raise BadRequest("A direct room needs another user; you named yourself.")
        low, high = sorted((identity.user_id, other_id))
        key = f"{low}:{high}"
        room = await _direct_room(key)
        if room is None:
            names = {identity.user_id: identity.user_name, other_id: other_name}
            name = f"{names[low][:48]}, {names[high][:48]}"
            with storage_errors():
                try:
                    async with in_transaction():
                        row = await RoomRow.create(name=name, visibility=DIRECT, direct_key=key)
                        for uid in (low, high):
                            await RoomMemberRow.create(room_id=row.id, user_id=uid, role=MEMBER)
                    room = room_service.to_room(row)
                    log.info("direct room created: id=%s", row.id)
                except IntegrityError:  # the other side asked at the same moment
                    room = await _direct_room(key)
            if room is None:
                raise NotFound("The direct room could not be found; try again.")
        return await standing(room, identity.user_id)


async def _direct_room(key: str) -> Room | None:
    with storage_errors():
        row = await RoomRow.get_or_none(direct_key=key)
        if row is not None and row.deleted_at is not None:
            # Deleted by an admin: the pair starts afresh.
            row.direct_key = None
            await row.save(update_fields=["direct_key"])
            return None
    return None if row is None else room_service.to_room(row)
