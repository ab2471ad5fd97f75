"""Who may do what in a room (SPEC section 10, issue 13): one table, every cell checked.

Roles (their cast is in tests/e2e/room_cast.py): the room's owner, a moderator, a
member, a stranger (a signed-up user with no row in the room), a user banned from
the room, a muted member, and a site admin (`users.is_admin`, set through the ORM as
the CLI's `set-admin` would). Visibilities: public, private, direct (in a direct room
only "member", "stranger" and "admin" exist: it has no owner and no moderators).

Every cell is one call by one role on a room of one visibility, and its expected
answer is derived from the rules of SPEC 10 and the lead's design (briefs/i13-design.md)
by `expected()` below, so the table reads as the rules themselves:

- read (GET room, members, both histories, presence, marking it read, the websocket):
  a public room is open to everyone but its banned users (403 "...banned..."); a
  private or direct room exists only for its members and admins: anyone else gets the
  404 of an ID never used, byte for byte (the ID in the sentence aside).
- change (rename, visibility, invite, roles, kick, ban, mute...): whoever may not read
  gets that same answer; a reader without the right gets 403 with a sentence that says
  who may; direct rooms refuse renames, invites, kicks and leaving (403).

A cell that changes the room runs on a room of its own, set up afresh, so the cells
are independent. Cells whose answer the SPEC and the design leave open accept a set
of statuses; each such set says why in `OPEN`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from ..conftest import ChatServer
from .room_cast import (
    API,
    MEMBERS,
    MODERATORS,
    NEVER_USED,
    OWNERS,
    VISIBILITIES,
    Cast,
    Hidden,
    Person,
    Room,
    Soft,
    cast,
    check_forbidden,
    check_status,
    history_texts,
    member_roles,
    never_used,
    next_non_presence,
    roles_of,
    send_as,
    ws_connect,
    ws_refusal,
)

__all__ = ["cast"]  # a fixture, used by name


def read_status(visibility: str, role: str) -> int:
    """GET room, members, history, presence, and the websocket before the upgrade."""
    if visibility == "public":
        return 403 if role == "banned" else 200
    return 200 if role in MEMBERS[visibility] or role == "admin" else 404


# Cells the SPEC and the design leave open, and why; each accepts the statuses listed.
OPEN: dict[tuple[str, str, str], tuple[frozenset[int], str]] = {
    ("kick owner", "public", "admin"): (
        frozenset({204, 403}),
        "admins 'may do what an owner may, on anyone', but the owner cannot be removed",
    ),
    ("kick owner", "private", "admin"): (
        frozenset({204, 403}),
        "admins 'may do what an owner may, on anyone', but the owner cannot be removed",
    ),
    ("leave", "public", "stranger"): (
        frozenset({204, 404}),
        "leaving a public room one has no row in: a no-op or 'not a member'",
    ),
    ("leave", "public", "admin"): (
        frozenset({204, 404}),
        "leaving a public room one has no row in: a no-op or 'not a member'",
    ),
    ("leave", "private", "admin"): (
        frozenset({204, 404}),
        "an admin who is not a member leaving: a no-op or 'not a member'",
    ),
    ("leave", "direct", "admin"): (
        frozenset({403, 404}),
        "direct rooms cannot be left; the admin is not a member either",
    ),
    ("ban", "direct", "admin"): (
        frozenset({204, 403}),
        "the design lists no direct-room rule for bans",
    ),
    ("unban", "direct", "admin"): (
        frozenset({204, 403}),
        "the design lists no direct-room rule for bans",
    ),
    ("mute", "direct", "admin"): (
        frozenset({204, 403}),
        "the design lists no direct-room rule for mutes",
    ),
    ("unmute", "direct", "admin"): (
        frozenset({204, 403}),
        "the design lists no direct-room rule for mutes",
    ),
}


def expected(action: str, visibility: str, role: str) -> int | frozenset[int]:
    if (action, visibility, role) in OPEN:
        return OPEN[(action, visibility, role)][0]
    read = read_status(visibility, role)
    if action in READS:
        return read
    if read != 200:
        return read  # hidden (404) or banned (403) before anything else
    direct = visibility == "direct"
    if action in ("rename", "visibility"):
        return 403 if direct else (200 if role in MODERATORS else 403)
    if action == "delete":
        return 204 if role in OWNERS else 403
    if action == "invite":
        if direct:
            return 403
        if visibility == "public":
            # "public room -> 400" for those who could invite; for the others the
            # design does not say which comes first.
            return 400 if role in MODERATORS else frozenset({400, 403})
        return 201 if role in MODERATORS else 403
    if action == "set role":
        return 403 if direct else (200 if role in OWNERS else 403)
    if action == "kick member":
        return 403 if direct else (204 if role in MODERATORS else 403)
    if action == "kick moderator":
        return 204 if role in OWNERS else 403
    if action == "kick owner":
        return 403  # the owner's own DELETE is a leave: "the owner cannot leave"
    if action in ("ban", "unban", "mute", "unmute"):
        return 403 if direct else (204 if role in MODERATORS else 403)
    if action == "leave":
        if direct or role == "owner":
            return 403
        return 204
    raise AssertionError(f"no rule for {action}")


READS = ("view", "members", "history", "room-messages", "presence", "mark read")


def target_of(action: str, room: Room) -> Person | None:
    p = room.people
    if room.visibility == "direct":
        if action in ("kick moderator", "kick owner"):
            return None  # a direct room has neither
        return p["target"] if action == "invite" else p["partner"]
    return {
        "set role": p["member2"],
        "kick member": p["member2"],
        "kick moderator": p["moderator2"],
        "kick owner": p["owner"],
        "ban": p["member2"],
        "unban": p["banned"],
        "mute": p["member2"],
        "unmute": p["muted"],
        "invite": p["target"],
    }.get(action)


def request_for(action: str, room: Room, actor: Person) -> tuple[str, str, Any] | None:
    """The call a cell makes; None where the cell does not exist (no owner in a DM)."""
    r = f"{API}/rooms/{room.id}"
    target = target_of(action, room)
    if action in ("kick moderator", "kick owner") and target is None:
        return None
    other = {"public": "private", "private": "public", "direct": "public"}[room.visibility]
    calls: dict[str, tuple[str, str, Any]] = {
        "view": ("GET", r, None),
        "members": ("GET", f"{r}/members", None),
        "history": ("GET", f"{r}/messages", None),
        "room-messages": ("POST", f"{API}/room-messages", {"roomId": room.id}),
        "presence": ("GET", f"{r}/presence", None),
        "mark read": ("POST", f"{r}/read", {"lastReadId": 0}),
        "rename": ("PATCH", r, {"name": "renamed"}),
        "visibility": ("PATCH", r, {"visibility": other}),
        "delete": ("DELETE", r, None),
        "leave": ("DELETE", f"{r}/members/{actor.id}", None),
    }
    if action in calls:
        return calls[action]
    assert target is not None
    if action == "invite":
        return ("POST", f"{r}/members", {"userId": target.id})
    if action == "set role":
        return ("PUT", f"{r}/members/{target.id}", {"role": "moderator"})
    if action.startswith("kick"):
        return ("DELETE", f"{r}/members/{target.id}", None)
    if action in ("ban", "mute"):
        return ("POST", f"{r}/{action}s", {"userId": target.id})
    if action in ("unban", "unmute"):
        return ("DELETE", f"{r}/{action[2:]}s/{target.id}", None)
    raise AssertionError(action)


CHANGES = (
    "rename",
    "visibility",
    "delete",
    "invite",
    "set role",
    "kick member",
    "kick moderator",
    "kick owner",
    "ban",
    "unban",
    "mute",
    "unmute",
    "leave",
)


@pytest.mark.parametrize("visibility", VISIBILITIES)
async def test_reads_by_role(cast: Cast, visibility: str) -> None:
    soft = Soft()
    hidden = await never_used(cast)
    room = await cast.room(visibility)
    for role in roles_of(visibility):
        actor = room.people[role]
        for action in READS:
            want = expected(action, visibility, role)
            with soft.cell(f"{visibility} {role} {action}"):
                call = request_for(action, room, actor)
                assert call is not None
                res = await cast.call(actor, *call)
                if action == "room-messages" and res.status_code == 404:
                    # Its 404 names the roomId of the body: compare with a never-used one.
                    never = await cast.call(
                        actor, "POST", f"{API}/room-messages", {"roomId": NEVER_USED}
                    )
                    Hidden(never).check(res, room.id)
                    assert want == 404, f"expected {want}, got 404"
                    continue
                check_status(res, want, room, role, hidden)
                if action == "view" and res.status_code == 200:
                    check_room_json(res.json()["chatRoom"], room, role)
    soft.done()


def check_room_json(got: dict[str, Any], room: Room, role: str) -> None:
    assert got["ID"] == room.id and got["visibility"] == room.visibility, got
    if room.visibility == "direct":
        assert got["ownerId"] is None, got
        assert got["role"] == ("member" if role == "member" else None), got
        return
    assert got["ownerId"] == room.people["owner"].id, got
    want_role = {"owner": "owner", "moderator": "moderator", "member": "member", "muted": "member"}
    assert got["role"] == want_role.get(role), got


@pytest.mark.parametrize("visibility", VISIBILITIES)
async def test_changes_by_role(cast: Cast, visibility: str) -> None:
    """Every change, by every role, each on a room of its own."""
    soft = Soft()
    hidden = await never_used(cast)
    for action in CHANGES:
        for role in roles_of(visibility):
            room = await cast.room(visibility)
            actor = room.people[role]
            call = request_for(action, room, actor)
            if call is None:
                continue
            want = expected(action, visibility, role)
            with soft.cell(f"{visibility} {role} {action}"):
                res = await cast.call(actor, *call)
                check_status(res, want, room, role, hidden)
                if res.status_code < 300:
                    await check_effect(cast, action, room, actor, res)
    soft.done()


async def check_effect(
    cast: Cast, action: str, room: Room, actor: Person, res: httpx.Response
) -> None:
    """A change that was allowed did what it says."""
    owner = room.people.get("owner")
    looker = cast.people["admin"]
    r = f"{API}/rooms/{room.id}"
    if action in ("rename", "visibility"):
        got = res.json()["chatRoom"]
        if action == "rename":
            assert got["name"] == "renamed", got
        else:
            assert got["visibility"] != room.visibility, got
        return
    if action == "delete":
        assert res.status_code == 204
        after = await cast.call(looker, "GET", r)
        assert after.status_code == 404, after.text
        return
    if room.visibility == "direct":
        return  # only an admin's bans and mutes get here, which the design leaves open
    roles = await member_roles(cast, looker, room.id)
    target = target_of(action, room)
    if action == "invite":
        assert target is not None
        assert res.status_code == 201, res.text
        assert res.json() == {
            "member": {"user": {"ID": target.id, "UserName": target.name}, "role": "member"}
        }, res.text
        assert roles.get(target.id) == "member", roles
    elif action == "set role":
        assert target is not None
        assert res.json()["member"]["role"] == "moderator", res.text
        assert roles.get(target.id) == "moderator", roles
    elif action.startswith("kick") or action == "ban":
        assert target is not None
        assert target.id not in roles, roles
    elif action == "leave":
        assert actor.id not in roles, roles
    if action == "ban" and target is not None and room.visibility == "public":
        banned = await cast.call(target, "GET", r)
        check_forbidden(banned, banned=True)
    if action == "unban" and target is not None and room.visibility == "public":
        assert (await cast.call(target, "GET", r)).status_code == 200
    if owner is not None and action != "kick owner":
        assert roles.get(owner.id) == "owner", roles


@pytest.mark.every_broker
@pytest.mark.every_ws_path
@pytest.mark.parametrize("visibility", VISIBILITIES)
async def test_websocket_by_role(cast: Cast, server: ChatServer, visibility: str) -> None:
    """Opening (refused before the upgrade with the REST answers) and sending: a muted
    user gets a `muted` error frame and nothing is stored."""
    soft = Soft()
    never = await ws_refusal(server, NEVER_USED, cast.people["stranger"].token)
    assert never is not None
    hidden = Hidden(never)
    room = await cast.room(visibility)
    for role in roles_of(visibility):
        actor = room.people[role]
        want = read_status(visibility, role)
        with soft.cell(f"{visibility} {role} websocket"):
            refusal = await ws_refusal(server, room.id, actor.token)
            if want == 200:
                assert refusal is None, f"refused: {refusal and refusal.text}"
            else:
                assert refusal is not None, f"opened; expected HTTP {want}"
                check_status(refusal, want, room, role, hidden)
        if want != 200:
            continue
        with soft.cell(f"{visibility} {role} send"):
            text = f"from {role} {uuid.uuid4().hex[:6]}"
            async with ws_connect(server, room.id, actor.token) as ws:
                await ws.send(json.dumps({"chatRoomId": room.id, "chatMessage": text}))
                frame = await next_non_presence(ws)
                if role == "muted":
                    assert frame["Event"] == "error", frame
                    assert frame["Body"]["code"] == "muted", frame
                    assert frame["Body"]["chatUserId"] == -1 and frame["Body"]["chatMessage"]
                    # Still reads: another user's message arrives.
                    reader_text = f"to the muted {uuid.uuid4().hex[:6]}"
                    await send_as(server, room, room.people["admin"], reader_text)
                    got = await next_non_presence(ws)
                    assert got["Event"] == "message", got
                    assert got["Body"]["chatMessage"] == reader_text, got
                else:
                    assert frame["Event"] == "message", frame
                    assert frame["Body"]["chatMessage"] == text, frame
            stored = await history_texts(cast, room.id)
            assert (text in stored) == (role != "muted"), stored
    soft.done()


async def test_a_private_room_leaks_nothing_to_non_members(cast: Cast, server: ChatServer) -> None:
    """Name, members and messages of a private room: not in any answer a non-member
    gets (room list, GET room, members, presence, both histories, websocket), and not in
    the /metrics labels."""
    p = cast.people
    secret_name = f"secret-{uuid.uuid4().hex}"
    secret_text = f"classified-{uuid.uuid4().hex}"
    body = await cast.ok(
        p["owner"], "POST", f"{API}/create", {"name": secret_name, "visibility": "private"}
    )
    rid = int(body["chatRoom"]["ID"])
    await cast.ok(p["owner"], "POST", f"{API}/rooms/{rid}/members", {"userId": p["member"].id})
    room = Room(rid, "private", p)
    # Someone is connected (presence) and has said something (history).
    async with ws_connect(server, rid, p["member"].token) as ws:
        await ws.send(json.dumps({"chatRoomId": rid, "chatMessage": secret_text}))
        frame = await next_non_presence(ws)
        assert frame["Body"]["chatMessage"] == secret_text
        # A kicked member is a non-member too.
        kicked = await cast.person("kicked")
        await cast.ok(p["owner"], "POST", f"{API}/rooms/{rid}/members", {"userId": kicked.id})
        await cast.ok(p["owner"], "DELETE", f"{API}/rooms/{rid}/members/{kicked.id}")
        hidden = await never_used(cast)
        soft = Soft()
        for who in (p["stranger"], kicked):
            answers: list[tuple[str, httpx.Response]] = []
            for page in ("", "?limit=1000", f"?after={rid - 1}&limit=5"):
                res = await cast.call(who, "GET", f"{API}/rooms{page}")
                assert res.status_code == 200
                answers.append((f"GET rooms{page}", res))
                with soft.cell(f"{who.name} room list{page}"):
                    assert rid not in [r["ID"] for r in res.json()["chatRooms"]]
            res = await cast.call(who, "POST", f"{API}/rooms", {})
            answers.append(("POST rooms", res))
            for action in READS:
                call = request_for(action, room, who)
                assert call is not None
                res = await cast.call(who, *call)
                answers.append((action, res))
                with soft.cell(f"{who.name} {action}"):
                    if action == "room-messages":
                        never = await cast.call(
                            who, "POST", f"{API}/room-messages", {"roomId": NEVER_USED}
                        )
                        Hidden(never).check(res, rid)
                    else:
                        hidden.check(res, rid)
            with soft.cell(f"{who.name} websocket: 404 before the upgrade"):
                refusal = await ws_refusal(server, rid, who.token)
                assert refusal is not None, "the websocket opened"
                never = await ws_refusal(server, NEVER_USED, who.token)
                assert never is not None
                Hidden(never).check(refusal, rid)
                answers.append(("websocket", refusal))
            with soft.cell(f"{who.name}: no answer names the room or its contents"):
                for label, res in answers:
                    for secret in (secret_name, secret_text, p["member"].name):
                        assert secret not in res.text, (label, res.text[:300])
        with soft.cell("/metrics names no room"):
            metrics = (await server.http.get("/metrics")).text
            assert secret_name not in metrics and secret_text not in metrics
            assert f"rooms/{rid}" not in metrics and f'room="{rid}"' not in metrics
        soft.done()
