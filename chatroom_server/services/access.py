"""Who may do what in a room: the one place that decides (SPEC 10).

Every room endpoint and the websocket ask `authorize` (and `authorize_over` when
the action names another user). A room the caller may not see does not exist for
them: they get the very NotFound an ID never used gets.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import timezone

from ..db.access import StandingRow, room_and_standing, standing_row
from ..db.errors import storage_errors
from ..db.models import RoomBanRow, RoomMemberRow, RoomMuteRow, RoomRow, UserRow
from ..domain import DIRECT, EDIT, MODERATOR, OWNER, PUBLIC, Identity, Message, Room
from ..errors import BadRequest, Forbidden
from .rooms import MAX_ID, room_not_found, to_room


class Action(enum.Enum):
    READ = "read"  # the room, its history, presence, members, a websocket
    EDIT = "edit"  # rename, change visibility
    DELETE = "delete"
    INVITE = "invite"
    SET_ROLE = "set_role"
    KICK = "kick"
    BAN = "ban"
    MUTE = "mute"
    LEAVE = "leave"


# Who may, besides a site admin, and what a refusal says is missing.
_STAFF = (OWNER, MODERATOR)
_NEEDS: dict[Action, tuple[tuple[str, ...], str]] = {
    Action.EDIT: (_STAFF, "Only the room's owner or a moderator may change the room."),
    Action.DELETE: ((OWNER,), "Only the room's owner may delete the room."),
    Action.INVITE: (_STAFF, "Only the room's owner or a moderator may add members."),
    Action.SET_ROLE: ((OWNER,), "Only the room's owner may change roles."),
    Action.KICK: (_STAFF, "Only the room's owner or a moderator may remove members."),
    Action.BAN: (_STAFF, "Only the room's owner or a moderator may ban users."),
    Action.MUTE: (_STAFF, "Only the room's owner or a moderator may mute users."),
}

# What a direct room refuses, whoever asks.
_NOT_IN_DIRECT = {
    Action.EDIT: "A direct room cannot be renamed or changed.",
    Action.INVITE: "A direct room has exactly its two users; nobody can be added.",
    Action.SET_ROLE: "A direct room has no roles.",
    Action.KICK: "Nobody can be removed from a direct room.",
    Action.BAN: "Nobody can be banned from a direct room.",
    Action.MUTE: "Nobody can be muted in a direct room.",
    Action.LEAVE: "A direct room cannot be left.",
}


def _active(present: bool, until: datetime | None, now: datetime) -> bool:
    return present and (until is None or until > now)


@dataclass(frozen=True, slots=True)
class Standing:
    """What `user_id` is in `room` right now."""

    room: Room
    user_id: int
    role: str | None
    admin: bool
    banned: bool
    muted: bool
    mute_until: datetime | None

    @classmethod
    def of(cls, room: Room, user_id: int, row: StandingRow) -> Standing:
        now = timezone.now()
        return cls(
            room,
            user_id,
            row.role,
            row.admin,
            _active(row.banned, row.ban_until, now),
            _active(row.muted, row.mute_until, now),
            row.mute_until,
        )

    @property
    def sees(self) -> bool:
        return self.room.visibility == PUBLIC or self.role is not None or self.admin

    @property
    def staff(self) -> bool:
        return self.admin or self.role in _STAFF


async def load_room(room_id: int) -> Room:
    if not 1 <= room_id <= MAX_ID:
        raise room_not_found(room_id)
    with storage_errors():
        row = await RoomRow.get_or_none(id=room_id, deleted_at=None)
    if row is None:
        raise room_not_found(room_id)
    return to_room(row)


async def standing(room: Room, user_id: int) -> Standing:
    return Standing.of(room, user_id, await standing_row(room.id, user_id))


async def authorize(room_id: int, identity: Identity, action: Action) -> Standing:
    """The caller's standing in the room if they may do `action` there; otherwise
    NotFound (they may not see it), or Forbidden saying what is missing."""
    if not 1 <= room_id <= MAX_ID:
        raise room_not_found(room_id)
    found = await room_and_standing(room_id, identity.user_id)
    if found is None:
        raise room_not_found(room_id)
    record, row = found
    room = Room(
        record.id,
        record.name,
        record.created_at,
        record.updated_at,
        None,
        record.visibility,
        record.owner_id,
    )
    st = Standing.of(room, identity.user_id, row)
    check(st, action)
    return st


def check(st: Standing, action: Action) -> None:
    if not st.sees:
        raise room_not_found(st.room.id)
    if st.banned and not st.admin:
        raise Forbidden("You are banned from this room.")
    if st.room.visibility == DIRECT and action in _NOT_IN_DIRECT:
        raise Forbidden(_NOT_IN_DIRECT[action])
    if action is Action.LEAVE:
        if st.role == OWNER:
            raise Forbidden("The owner cannot leave the room; delete it instead.")
        return
    if action is Action.INVITE and st.room.visibility == PUBLIC:
        raise BadRequest("Only private rooms have members to add; anyone may join a public room.")
    need = _NEEDS.get(action)
    if need is not None and not st.admin and st.role not in need[0]:
        raise Forbidden(need[1])


def check_over(actor: Standing, target: Standing, action: Action) -> None:
    """May `actor` (already checked for `action`) do it to `target`?"""
    if target.user_id == actor.user_id and action in (Action.BAN, Action.MUTE):
        raise BadRequest(f"You cannot {action.value} yourself.")
    if target.role == OWNER:
        raise Forbidden(
            "The room's owner cannot be removed, banned or muted."
            if action is not Action.SET_ROLE
            else "The owner's role cannot change."
        )
    if target.role == MODERATOR and not actor.admin and actor.role != OWNER:
        raise Forbidden("Moderators cannot act on other moderators; only the owner can.")


def check_change(st: Standing, message: Message, kind: int, edit_window: float) -> None:
    """May the user of `st` (who may read the room) edit (`kind` EDIT) or delete this
    message of it? The author edits, within `edit_window` seconds of sending (0: no
    limit), unless muted; the author, the room's owner and moderators, and site
    admins delete (SPEC 12)."""
    own = message.user_id == st.user_id
    if kind == EDIT:
        if not own:
            raise Forbidden("Only its author may edit a message.")
        if st.muted:
            raise Forbidden("You are muted in this room; the message was not changed.")
        age = (timezone.now() - message.created_at).total_seconds()
        if edit_window and age > edit_window:
            raise Forbidden(
                f"A message can be edited for {edit_window:g} seconds after it was sent."
            )
    elif not own and not st.staff:
        raise Forbidden("Only its author, the room's owner or a moderator may delete a message.")


async def seers(room_id: int, user_ids: Iterable[int]) -> set[int]:
    """Those of these users who may see the room: its members, and site admins."""
    wanted = set(user_ids)
    if not wanted:
        return set()
    with storage_errors():
        members = await RoomMemberRow.filter(room_id=room_id, user_id__in=wanted).values_list(
            "user_id", flat=True
        )
        admins = await UserRow.filter(id__in=wanted, is_admin=True).values_list("id", flat=True)
    found: list[Any] = [*members, *admins]
    return {int(u) for u in found}


def mute_deadline(st: Standing) -> float:
    """Unix seconds until which the user is muted there: 0 if not, inf without an end."""
    if not st.muted:
        return 0.0
    return math.inf if st.mute_until is None else st.mute_until.timestamp()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an open socket's user may still do in its room (see room_events.sweep)."""

    stays: bool
    reason: str  # why not: "deleted", "banned", "removed"
    mute_deadline: float


async def verdicts(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Verdict]:
    """For (room ID, user ID) pairs of open sockets: may each stay, and is it muted?
    Five queries whatever the number of pairs (a sweep, not the hot path)."""
    wanted = set(pairs)
    if not wanted:
        return {}
    room_ids = {r for r, _ in wanted}
    user_ids = {u for _, u in wanted}
    with storage_errors():
        rooms = {
            row["id"]: row
            for row in await RoomRow.filter(id__in=room_ids).values(
                "id", "visibility", "deleted_at"
            )
        }
        members = set(
            await RoomMemberRow.filter(room_id__in=room_ids, user_id__in=user_ids).values_list(
                "room_id", "user_id"
            )
        )
        bans = {
            (row["room_id"], row["user_id"]): row["until"]
            for row in await RoomBanRow.filter(room_id__in=room_ids, user_id__in=user_ids).values(
                "room_id", "user_id", "until"
            )
        }
        mutes = {
            (row["room_id"], row["user_id"]): row["until"]
            for row in await RoomMuteRow.filter(room_id__in=room_ids, user_id__in=user_ids).values(
                "room_id", "user_id", "until"
            )
        }
        admin_ids: list[Any] = list(
            await UserRow.filter(id__in=user_ids, is_admin=True).values_list("id", flat=True)
        )
        admins = {int(a) for a in admin_ids}
    now = timezone.now()
    found: dict[tuple[int, int], Verdict] = {}
    for pair in wanted:
        room_id, user_id = pair
        room = rooms.get(room_id)
        admin = user_id in admins
        muted = pair in mutes and _active(True, mutes[pair], now)
        until = mutes.get(pair)
        deadline = (math.inf if until is None else until.timestamp()) if muted else 0.0
        if room is None or room["deleted_at"] is not None:
            found[pair] = Verdict(False, "deleted", 0.0)
        elif pair in bans and _active(True, bans[pair], now) and not admin:
            found[pair] = Verdict(False, "banned", 0.0)
        elif room["visibility"] != PUBLIC and pair not in members and not admin:
            found[pair] = Verdict(False, "removed", 0.0)
        else:
            found[pair] = Verdict(True, "", deadline)
    return found
