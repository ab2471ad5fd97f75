"""Rooms with members in detail (SPEC section 10, issue 13): invitations, roles, bans
and their bodies, the member list's order, direct rooms, the room list, and what a
kick, ban, leave, deletion, change to private or mute does to open sockets on one
host (tests/process/test_moderation_hosts.py does it across two).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from chatroom_server.db.models import RoomRow, UserRow

from ..conftest import ChatServer, eventually
from .room_cast import (
    API,
    MEMBERS,
    NEVER_USED,
    ROLES,
    Cast,
    Person,
    Room,
    Soft,
    cast,
    check_forbidden,
    error_body,
    history_texts,
    listed,
    member_roles,
    next_non_presence,
    send_until,
    wait_present,
    ws_connect,
    ws_refusal,
)

__all__ = ["cast"]  # a fixture, used by name


async def test_invitations_roles_and_bans_in_detail(cast: Cast) -> None:
    p = cast.people
    owner, mod, member, target = p["owner"], p["moderator"], p["member"], p["target"]
    room = await cast.room("private")
    r = f"{API}/rooms/{room.id}"
    soft = Soft()
    with soft.cell("invite twice: 201, then 200 with the same body"):
        first = await cast.call(mod, "POST", f"{r}/members", {"userId": target.id})
        assert first.status_code == 201, first.text
        again = await cast.call(owner, "POST", f"{r}/members", {"userName": target.name})
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
    with soft.cell("invite a banned user: 409"):
        res = await cast.call(owner, "POST", f"{r}/members", {"userId": p["banned"].id})
        # The design's sentence; the server may add how to go on ("lift the ban first").
        assert error_body(res, 409)["message"].startswith("That user is banned from this room")
    with soft.cell("invite an unknown user: 404"):
        res = await cast.call(owner, "POST", f"{r}/members", {"userId": NEVER_USED})
        assert "does not exist" in error_body(res, 404)["message"]
    with soft.cell("invite with a bad body: 400 naming the field"):
        res = await cast.call(owner, "POST", f"{r}/members", {"userId": "x"})
        assert "userId" in error_body(res, 400)["message"]
    with soft.cell("public room invitations: 400"):
        pub = await cast.room("public")
        res = await cast.call(owner, "POST", f"{API}/rooms/{pub.id}/members", {"userId": target.id})
        # The design words it "Only private rooms have invitations; anyone may join a
        # public room."; what matters is both halves.
        message = error_body(res, 400)["message"]
        assert message.startswith("Only private rooms have"), message
        assert message.endswith("anyone may join a public room."), message
    with soft.cell("the owner's role cannot change, not even by an admin"):
        for who in (owner, p["admin"]):
            res = await cast.call(who, "PUT", f"{r}/members/{owner.id}", {"role": "member"})
            check_forbidden(res, banned=False)
    with soft.cell("role must be moderator or member"):
        res = await cast.call(owner, "PUT", f"{r}/members/{member.id}", {"role": "owner"})
        assert "role" in error_body(res, 400)["message"]
    with soft.cell("moderators cannot act on the owner"):
        for method, path, body in (
            ("DELETE", f"{r}/members/{owner.id}", None),
            ("POST", f"{r}/bans", {"userId": owner.id}),
            ("POST", f"{r}/mutes", {"userId": owner.id}),
            ("POST", f"{r}/bans", {"userId": p["moderator2"].id}),
            ("POST", f"{r}/mutes", {"userId": p["moderator2"].id}),
        ):
            res = await cast.call(mod, method, path, body)
            check_forbidden(res, banned=False)
    with soft.cell("the owner cannot leave"):
        res = await cast.call(owner, "DELETE", f"{r}/members/{owner.id}")
        assert error_body(res, 403)["message"] == (
            "The owner cannot leave the room; delete it instead."
        )
    with soft.cell("ban bodies: seconds 1..31536000, reason <= 200 characters"):
        for body, name in (
            ({"userId": member.id, "seconds": 0}, "seconds"),
            ({"userId": member.id, "seconds": 31536001}, "seconds"),
            ({"userId": member.id, "seconds": "ten"}, "seconds"),
            ({"userId": member.id, "seconds": 1.5}, "seconds"),
            ({"userId": member.id, "reason": "x" * 201}, "reason"),
            ({}, "userId"),
        ):
            res = await cast.call(owner, "POST", f"{r}/bans", body)
            assert res.status_code == 400, (body, res.status_code, res.text)
            assert name in error_body(res, 400)["message"], body
        res = await cast.call(owner, "POST", f"{r}/bans", {"userId": NEVER_USED})
        error_body(res, 404)
    with soft.cell("unban and unmute without a ban or mute: 204"):
        for kind in ("bans", "mutes"):
            res = await cast.call(owner, "DELETE", f"{r}/{kind}/{target.id}")
            assert res.status_code == 204, res.text
    with soft.cell("a ban with seconds ends by itself"):
        pub = await cast.room("public")
        victim = p["member"]
        await cast.ok(
            owner, "POST", f"{API}/rooms/{pub.id}/bans", {"userId": victim.id, "seconds": 1}
        )
        res = await cast.call(victim, "GET", f"{API}/rooms/{pub.id}")
        check_forbidden(res, banned=True)

        async def lifted() -> bool:
            res = await cast.call(victim, "GET", f"{API}/rooms/{pub.id}")
            return res.status_code == 200

        await eventually(lifted, "the 1 s ban to end", timeout=5, interval=0.1)
    soft.done()


async def test_members_are_listed_owner_moderators_members_by_id(cast: Cast) -> None:
    p = cast.people
    for visibility in ("public", "private"):
        room = await cast.room(visibility)
        res = await cast.call(p["member"], "GET", f"{API}/rooms/{room.id}/members")
        assert res.status_code == 200, res.text
        got = [(m["role"], m["user"]["ID"]) for m in res.json()["members"]]
        mods = sorted(p[r].id for r in ("moderator", "moderator2"))
        members = sorted(p[r].id for r in ("member", "member2", "muted"))
        want = [
            ("owner", p["owner"].id),
            *(("moderator", i) for i in mods),
            *(("member", i) for i in members),
        ]
        assert got == want, (visibility, got)
        for m in res.json()["members"]:
            assert set(m["user"]) == {"ID", "UserName"}, m


async def test_direct_rooms(cast: Cast, server: ChatServer) -> None:
    a, b = await cast.person("alpha"), await cast.person("beta")
    low, high = (a, b) if a.id < b.id else (b, a)
    first = await cast.call(a, "POST", f"{API}/direct", {"userId": b.id})
    assert first.status_code == 200, first.text
    room = first.json()["chatRoom"]
    assert room["visibility"] == "direct" and room["ownerId"] is None, room
    assert room["name"] == f"{low.name}, {high.name}", room
    assert room["role"] == "member", room
    # The same room, from either side, by ID or name.
    for who, body in ((a, {"userId": b.id}), (b, {"userName": a.name}), (b, {"userId": a.id})):
        again = await cast.call(who, "POST", f"{API}/direct", body)
        assert again.status_code == 200, again.text
        assert again.json()["chatRoom"]["ID"] == room["ID"], again.text
    roles = await member_roles(cast, a, room["ID"])
    assert roles == {a.id: "member", b.id: "member"}, roles
    # With oneself: 400; unknown or deactivated users: 404.
    res = await cast.call(a, "POST", f"{API}/direct", {"userId": a.id})
    error_body(res, 400)
    for body in ({"userId": NEVER_USED}, {"userName": f"nobody{uuid.uuid4().hex[:8]}"}):
        res = await cast.call(a, "POST", f"{API}/direct", body)
        assert "does not exist" in error_body(res, 404)["message"], body
    res = await cast.call(a, "POST", f"{API}/direct", {})
    error_body(res, 400)
    gone = await cast.person("gone")
    await UserRow.filter(id=gone.id).update(deactivated_at=datetime.now(UTC))
    for body in ({"userId": gone.id}, {"userName": gone.name}):
        res = await cast.call(a, "POST", f"{API}/direct", body)
        assert "does not exist" in error_body(res, 404)["message"], body
    # Listed for both, for nobody else (but admins).
    assert room["ID"] in await listed(cast, a) and room["ID"] in await listed(cast, b)
    assert room["ID"] not in await listed(cast, cast.people["stranger"])
    assert room["ID"] in await listed(cast, cast.people["admin"])


async def test_room_list_shows_public_rooms_and_ones_own(cast: Cast) -> None:
    p = cast.people
    pub, priv = await cast.room("public"), await cast.room("private")
    for role in ROLES:
        ids = await listed(cast, p[role])
        posted = await cast.call(p[role], "POST", f"{API}/rooms", {})
        assert posted.status_code == 200
        assert [r["ID"] for r in posted.json()["chatRooms"]] == ids
        paged = await listed(cast, p[role], "?limit=1000")
        assert paged == ids
        if role != "banned":  # whether a banned user still sees it listed: not said
            assert pub.id in ids, role
        assert (priv.id in ids) == (role in MEMBERS["private"] or role == "admin"), role


@pytest.mark.every_broker
@pytest.mark.every_ws_path
async def test_live_effects_on_one_host(cast: Cast, server: ChatServer) -> None:
    """Kick, ban, leave, deletion and public->private close the affected sockets with
    the right code and reason within 2 s; a mute makes the next send fail with `muted`
    within 2 s, and a timed one ends by itself."""
    p = cast.people

    async def closed_by(
        visibility: str, victim_role: str, action: Any, code: int, reasons: tuple[str, ...]
    ) -> tuple[Room, Person]:
        room = await cast.room(visibility)
        victim = room.people[victim_role]
        async with ws_connect(server, room.id, victim.token) as ws:
            await wait_present(cast, room.id, victim)
            await action(room, victim)
            await asyncio.wait_for(ws.wait_closed(), 2.0)
            assert ws.close_code == code, (ws.close_code, ws.close_reason)
            assert ws.close_reason in reasons, ws.close_reason
        return room, victim

    async def kick(room: Room, victim: Person) -> None:
        await cast.ok(p["moderator"], "DELETE", f"{API}/rooms/{room.id}/members/{victim.id}")

    async def ban(room: Room, victim: Person) -> None:
        await cast.ok(p["moderator"], "POST", f"{API}/rooms/{room.id}/bans", {"userId": victim.id})

    async def leave(room: Room, victim: Person) -> None:
        await cast.ok(victim, "DELETE", f"{API}/rooms/{room.id}/members/{victim.id}")

    async def delete(room: Room, victim: Person) -> None:
        await cast.ok(p["owner"], "DELETE", f"{API}/rooms/{room.id}")

    async def go_private(room: Room, victim: Person) -> None:
        await cast.ok(p["owner"], "PATCH", f"{API}/rooms/{room.id}", {"visibility": "private"})

    removed = ("removed from the room",)
    # Kicked from a public room: they may come back at once.
    room, victim = await closed_by("public", "member", kick, 1008, removed)
    assert await ws_refusal(server, room.id, victim.token) is None
    await closed_by("public", "stranger", kick, 1008, removed)
    # Kicked from, or leaving, a private room: it no longer exists for them.
    for action in (kick, leave):
        # The design names no reason for a leave; these two say why.
        room, victim = await closed_by(
            "private", "member", action, 1008, (*removed, "left the room")
        )
        refusal = await ws_refusal(server, room.id, victim.token)
        assert refusal is not None and refusal.status_code == 404
        assert (await cast.call(victim, "GET", f"{API}/rooms/{room.id}")).status_code == 404
    room, victim = await closed_by("public", "member", ban, 1008, ("banned from the room",))
    refusal = await ws_refusal(server, room.id, victim.token)
    assert refusal is not None and refusal.status_code == 403
    await closed_by("private", "member", delete, 1001, ("room deleted",))
    await closed_by("public", "stranger", go_private, 1008, ("room is private now",))

    # Public -> private leaves the members' sockets open.
    room = await cast.room("public")
    async with ws_connect(server, room.id, p["member"].token) as ws:
        await wait_present(cast, room.id, p["member"])
        await cast.ok(p["owner"], "PATCH", f"{API}/rooms/{room.id}", {"visibility": "private"})
        text = f"still here {uuid.uuid4().hex[:6]}"
        await ws.send(json.dumps({"chatMessage": text}))
        frame = await next_non_presence(ws)
        assert frame["Event"] == "message" and frame["Body"]["chatMessage"] == text, frame

    room = await cast.room("public")
    async with ws_connect(server, room.id, p["member"].token) as ws:
        await wait_present(cast, room.id, p["member"])
        await cast.ok(
            p["moderator"], "POST", f"{API}/rooms/{room.id}/mutes", {"userId": p["member"].id}
        )
        blocked = await send_until(ws, "muted", 2.0)
        await cast.ok(p["moderator"], "DELETE", f"{API}/rooms/{room.id}/mutes/{p['member'].id}")
        await send_until(ws, "message", 2.0)
        # A timed mute ends by itself.
        await cast.ok(
            p["moderator"],
            "POST",
            f"{API}/rooms/{room.id}/mutes",
            {"userId": p["member"].id, "seconds": 1},
        )
        blocked += await send_until(ws, "muted", 2.0)
        blocked += await send_until(ws, "message", 5.0)
    stored = await history_texts(cast, room.id)
    assert not set(blocked) & set(stored), "a muted send was stored"


async def test_create_and_change_bodies(cast: Cast) -> None:
    """The room JSON's new fields; bad `visibility` and `name` values are 400s naming
    the field; a room made the seed's way is public and its creator owns it."""
    p = cast.people
    owner = p["owner"]
    soft = Soft()
    with soft.cell("seed-style create: public, owned by its creator"):
        body = await cast.ok(owner, "POST", f"{API}/create", {"name": "seedish"})
        room = body["chatRoom"]
        assert room["visibility"] == "public" and room["ownerId"] == owner.id, room
        assert room["role"] == "owner", room
        assert {"ID", "CreatedAt", "UpdatedAt", "DeletedAt", "name"} <= set(room), room
    with soft.cell("private create"):
        body = await cast.ok(owner, "POST", f"{API}/create", {"name": "p", "visibility": "private"})
        assert body["chatRoom"]["visibility"] == "private", body
        assert body["chatRoom"]["role"] == "owner", body
    for bad in ("direct", "secret", "", None, 1, ["public"]):
        with soft.cell(f"create with visibility={bad!r}"):
            res = await cast.call(owner, "POST", f"{API}/create", {"name": "x", "visibility": bad})
            if bad is None:
                # An explicit null may mean "the default"; it must not be a 500.
                assert res.status_code in (200, 400), res.text
                continue
            assert "visibility" in error_body(res, 400)["message"], res.text
    room = await cast.room("public")
    r = f"{API}/rooms/{room.id}"
    for body, field in (
        ({"name": ""}, "name"),
        ({"name": " "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"visibility": "direct"}, "visibility"),
        ({"visibility": "hidden"}, "visibility"),
    ):
        with soft.cell(f"PATCH {body}"):
            res = await cast.call(owner, "PATCH", r, body)
            assert field in error_body(res, 400)["message"], res.text
    with soft.cell("PATCH name and visibility at once"):
        res = await cast.call(owner, "PATCH", r, {"name": " both ", "visibility": "private"})
        assert res.status_code == 200, res.text
        got = res.json()["chatRoom"]
        assert got["name"] == "both" and got["visibility"] == "private", got
    soft.done()


async def test_rooms_without_an_owner_stay_as_they_were(cast: Cast, server: ChatServer) -> None:
    """A room made by the CLI (or before 0005): public, no owner, no members; anyone
    reads and posts; nobody but an admin may delete or moderate it."""
    p = cast.people
    row = await RoomRow.create(name=f"cli {uuid.uuid4().hex[:6]}")
    r = f"{API}/rooms/{row.id}"
    res = await cast.call(p["stranger"], "GET", r)
    assert res.status_code == 200, res.text
    got = res.json()["chatRoom"]
    assert got["visibility"] == "public" and got["ownerId"] is None and got["role"] is None
    members = await cast.call(p["stranger"], "GET", f"{r}/members")
    assert members.status_code == 200 and members.json() == {"members": []}, members.text
    assert await ws_refusal(server, row.id, p["stranger"].token) is None
    for method, path, body in (
        ("PATCH", r, {"name": "mine now"}),
        ("DELETE", r, None),
        ("POST", f"{r}/bans", {"userId": p["member"].id}),
        ("POST", f"{r}/mutes", {"userId": p["member"].id}),
        ("PUT", f"{r}/members/{p['member'].id}", {"role": "moderator"}),
    ):
        res = await cast.call(p["stranger"], method, path, body)
        check_forbidden(res, banned=False)
    res = await cast.call(p["admin"], "PUT", f"{r}/members/{p['member'].id}", {"role": "moderator"})
    assert res.status_code == 200, res.text
    assert await member_roles(cast, p["stranger"], row.id) == {p["member"].id: "moderator"}
    res = await cast.call(p["admin"], "DELETE", r)
    assert res.status_code == 204, res.text
