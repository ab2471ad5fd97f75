"""Who may do what in a room (SPEC section 10, issue 13): one table, every cell checked.

Roles: the room's owner, a moderator, a member, a stranger (a signed-up user with no
row in the room), a user banned from the room, a muted member, and a site admin
(`users.is_admin`, set here through the ORM as the CLI's `set-admin` would).
Visibilities: public, private, direct (in a direct room only "member", "stranger" and
"admin" exist: it has no owner, no moderators, and bans are not part of it).

Every cell is one call by one role on a room of one visibility, and its expected
answer is derived from the rules of SPEC 10 and the lead's design (briefs/i13-design.md)
by `expected()` below, so the table reads as the rules themselves:

- read (GET room, members, both histories, presence, the websocket): a public room is
  open to everyone but its banned users (403 "...banned..."); a private or direct room
  exists only for its members and admins: anyone else gets the 404 of an ID never used,
  byte for byte (the ID in the sentence aside).
- change (rename, visibility, invite, roles, kick, ban, mute...): whoever may not read
  gets that same answer; a reader without the right gets 403 with a sentence that says
  who may; direct rooms refuse renames, invites, kicks and leaving (403).

A cell that changes the room runs on a room of its own, set up afresh, so the cells
are independent. Cells whose answer the SPEC and the design leave open accept a set
of statuses; each such set says why in `OPEN`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from chatroom_server.db.models import UserRow

from ..conftest import TIMEOUT, ChatServer, auth, eventually, recv_json

API = "/v1/api/chat"
ERROR_KEYS = {"description", "status", "message"}
NEVER_USED = 987654321  # a room ID no test ever reaches

ROLES = ("owner", "moderator", "member", "stranger", "banned", "muted", "admin")
DIRECT_ROLES = ("member", "stranger", "admin")
VISIBILITIES = ("public", "private", "direct")

# Who is a member (has a row in room_members) once a room is set up; a ban removes
# the banned user's row.
MEMBERS = {
    "public": {"owner", "moderator", "member", "muted"},
    "private": {"owner", "moderator", "member", "muted"},
    "direct": {"member"},
}
MODERATORS = {"owner", "moderator", "admin"}  # may kick, ban, mute, rename, invite
OWNERS = {"owner", "admin"}  # may delete, change roles, act on moderators


# --------------------------------------------------------------------------- the cast


@dataclass
class Person:
    user: dict[str, Any]
    token: str

    @property
    def id(self) -> int:
        return int(self.user["ID"])

    @property
    def name(self) -> str:
        return str(self.user["UserName"])


@dataclass
class Room:
    id: int
    visibility: str
    # By role, plus "moderator2" and "member2" (targets of the moderator and member
    # cells, so that nobody acts on themselves), "target" (no row: invited), and in a
    # direct room "partner" (the other one of the pair).
    people: dict[str, Person]


@dataclass
class Cast:
    server: ChatServer
    people: dict[str, Person] = field(default_factory=dict)

    async def call(self, who: Person, method: str, path: str, body: Any = None) -> httpx.Response:
        kwargs: dict[str, Any] = {"headers": auth(who.token)}
        if body is not None:
            kwargs["json"] = body
        return await self.server.http.request(method, path, **kwargs)

    async def ok(self, who: Person, method: str, path: str, body: Any = None) -> Any:
        res = await self.call(who, method, path, body)
        assert res.status_code in (200, 201, 204), f"{method} {path}: {res.status_code} {res.text}"
        return res.json() if res.content else None

    async def person(self, label: str) -> Person:
        user, token = await self.server.signup(f"{label}{uuid.uuid4().hex[:6]}")
        return Person(user, token)

    async def room(self, visibility: str) -> Room:
        """A room of this visibility with every role of the table in place."""
        p = self.people
        if visibility == "direct":
            # One direct room per pair: a fresh pair for every room.
            member, partner = await self.person("dm"), await self.person("pal")
            body = await self.ok(member, "POST", f"{API}/direct", {"userId": partner.id})
            rid = int(body["chatRoom"]["ID"])
            people = {**p, "member": member, "partner": partner}
            return Room(rid, visibility, people)
        body = await self.ok(
            p["owner"],
            "POST",
            f"{API}/create",
            {"name": f"{visibility} {uuid.uuid4().hex[:6]}", "visibility": visibility},
        )
        rid = int(body["chatRoom"]["ID"])
        owner = p["owner"]
        members = f"{API}/rooms/{rid}/members"
        for role in ("moderator", "moderator2", "member", "member2", "muted", "banned"):
            if visibility == "private":
                await self.ok(owner, "POST", members, {"userId": p[role].id})
            if role == "banned":
                await self.ok(owner, "POST", f"{API}/rooms/{rid}/bans", {"userId": p[role].id})
                continue
            want = "moderator" if role.startswith("moderator") else "member"
            if visibility == "public" or want != "member":
                # Public rooms: the owner's PUT upserts the row (design).
                await self.ok(owner, "PUT", f"{members}/{p[role].id}", {"role": want})
        await self.ok(owner, "POST", f"{API}/rooms/{rid}/mutes", {"userId": p["muted"].id})
        return Room(rid, visibility, dict(p))


async def make_admin(server: ChatServer, person: Person) -> Person:
    """Set users.is_admin through the ORM (as `set-admin` does), then log in again so no
    cache of the server holds the old flag."""
    await UserRow.filter(id=person.id).update(is_admin=True)
    res = await server.http.post(
        "/v1/api/auth/login", json={"email": person.user["Email"], "password": "password1"}
    )
    assert res.status_code == 200, res.text
    return Person(res.json()["user"], res.json()["token"])


@pytest.fixture
async def cast(server: ChatServer) -> Cast:
    c = Cast(server)
    for role in (*ROLES, "moderator2", "member2", "target"):
        c.people[role] = await c.person(role)
    c.people["admin"] = await make_admin(server, c.people["admin"])
    return c


# --------------------------------------------------------------------------- checks


class Soft:
    """Collect every failing cell, then fail once listing them all."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.cells = 0

    @contextlib.contextmanager
    def cell(self, label: str) -> Iterator[None]:
        self.cells += 1
        try:
            yield
        except AssertionError as exc:
            self.failures.append(f"[{label}] {exc}")

    def done(self) -> None:
        if self.failures:
            pytest.fail(
                f"{len(self.failures)} of {self.cells} cell(s) failed:\n"
                + "\n".join(self.failures),
                pytrace=False,
            )


def error_body(res: httpx.Response, status: int) -> dict[str, Any]:
    assert res.status_code == status, f"expected {status}, got {res.status_code}: {res.text[:300]}"
    assert res.headers.get("content-type", "").startswith("application/json"), res.text[:300]
    body = res.json()
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, body
    assert body["status"] == status and body["message"], body
    return body  # type: ignore[no-any-return]


# A 403 says what is missing: who may do it, or why not here.
FORBIDDEN_WORDS = ("owner", "moderator", "admin", "direct", "banned", "leave", "role")


def check_forbidden(res: httpx.Response, banned: bool) -> None:
    body = error_body(res, 403)
    message = body["message"].lower()
    if banned:
        assert "banned" in message, body
    else:
        assert any(w in message for w in FORBIDDEN_WORDS), f"403 says nothing useful: {body}"


class Hidden:
    """The answer for a room ID never used, to compare hidden rooms' 404s with."""

    def __init__(self, res: httpx.Response, never: int = NEVER_USED) -> None:
        assert res.status_code == 404, res.text
        self.content = res.content
        self.ctype = res.headers.get("content-type")
        self.never = never

    def check(self, res: httpx.Response, room_id: int) -> None:
        error_body(res, 404)
        want = self.content.replace(str(self.never).encode(), str(room_id).encode())
        assert res.content == want, f"404 differs from a never-used ID's: {res.content!r}"
        assert res.headers.get("content-type") == self.ctype


def check_status(
    res: httpx.Response, want: int | frozenset[int], room: Room, role: str, hidden: Hidden
) -> None:
    wanted = want if isinstance(want, frozenset) else frozenset({want})
    assert res.status_code in wanted, (
        f"expected {sorted(wanted)}, got {res.status_code}: {res.text[:300]}"
    )
    if res.status_code == 404:
        hidden.check(res, room.id)
    elif res.status_code == 403:
        check_forbidden(res, banned=role == "banned" and room.visibility == "public")
    elif res.status_code >= 400:
        error_body(res, res.status_code)


# --------------------------------------------------------------------------- the rules


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


READS = ("view", "members", "history", "room-messages", "presence")


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


def roles_of(visibility: str) -> tuple[str, ...]:
    return DIRECT_ROLES if visibility == "direct" else ROLES


async def never_used(cast: Cast) -> Hidden:
    res = await cast.call(cast.people["stranger"], "GET", f"{API}/rooms/{NEVER_USED}")
    return Hidden(res)


# --------------------------------------------------------------------------- REST table


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


async def member_roles(cast: Cast, looker: Person, room_id: int) -> dict[int, str]:
    res = await cast.call(looker, "GET", f"{API}/rooms/{room_id}/members")
    assert res.status_code == 200, res.text
    return {m["user"]["ID"]: m["role"] for m in res.json()["members"]}


# --------------------------------------------------------------------------- websocket


def ws_connect(server: ChatServer, room_id: int, token: str) -> Any:
    return connect(
        server.ws_url(f"room_id={room_id}&jwt={token}"), open_timeout=TIMEOUT, max_queue=None
    )


async def ws_refusal(server: ChatServer, room_id: int, token: str) -> httpx.Response | None:
    """None if the socket opened; else the HTTP refusal, as an httpx.Response."""
    try:
        async with ws_connect(server, room_id, token):
            return None
    except InvalidStatus as exc:
        r = exc.response
        return httpx.Response(
            r.status_code, headers=dict(r.headers.raw_items()), content=bytes(r.body)
        )


async def next_non_presence(ws: ClientConnection) -> dict[str, Any]:
    while True:
        frame = await recv_json(ws)
        if frame["Event"] not in ("join", "leave"):
            return frame


async def history_texts(cast: Cast, room_id: int) -> list[str]:
    res = await cast.call(cast.people["admin"], "GET", f"{API}/rooms/{room_id}/messages")
    assert res.status_code == 200, res.text
    return [m["chatMessage"] for m in res.json()["messages"]]


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


async def send_as(server: ChatServer, room: Room, who: Person, text: str) -> None:
    async with ws_connect(server, room.id, who.token) as ws:
        await ws.send(json.dumps({"chatRoomId": room.id, "chatMessage": text}))
        while True:
            frame = await next_non_presence(ws)
            if frame["Event"] == "message" and frame["Body"]["chatMessage"] == text:
                return


# --------------------------------------------------------------------------- details


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
        assert error_body(res, 409)["message"] == "That user is banned from this room."
    with soft.cell("invite an unknown user: 404"):
        res = await cast.call(owner, "POST", f"{r}/members", {"userId": NEVER_USED})
        assert "does not exist" in error_body(res, 404)["message"]
    with soft.cell("invite with a bad body: 400 naming the field"):
        res = await cast.call(owner, "POST", f"{r}/members", {"userId": "x"})
        assert "userId" in error_body(res, 400)["message"]
    with soft.cell("public room invitations: 400"):
        pub = await cast.room("public")
        res = await cast.call(owner, "POST", f"{API}/rooms/{pub.id}/members", {"userId": target.id})
        assert error_body(res, 400)["message"] == (
            "Only private rooms have invitations; anyone may join a public room."
        )
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
    # Listed for both, for nobody else (but admins).
    assert room["ID"] in await listed(cast, a) and room["ID"] in await listed(cast, b)
    assert room["ID"] not in await listed(cast, cast.people["stranger"])
    assert room["ID"] in await listed(cast, cast.people["admin"])


async def listed(cast: Cast, who: Person, query: str = "") -> list[int]:
    res = await cast.call(who, "GET", f"{API}/rooms{query}")
    assert res.status_code == 200, res.text
    return [r["ID"] for r in res.json()["chatRooms"]]


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


# --------------------------------------------------------------------------- leaks


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


# --------------------------------------------------------------------------- live effects


async def test_live_effects_on_one_host(cast: Cast, server: ChatServer) -> None:
    """Kick, ban, leave, deletion and public->private close the affected sockets with
    the right code and reason; a mute makes the next send fail with `muted`."""
    p = cast.people

    async def closed_by(
        visibility: str, victim_role: str, action: Any, code: int, reasons: tuple[str, ...]
    ) -> None:
        room = await cast.room(visibility)
        victim = room.people[victim_role]
        async with ws_connect(server, room.id, victim.token) as ws:
            await wait_present(cast, room.id, victim)
            await action(room, victim)
            await asyncio.wait_for(ws.wait_closed(), 2.0)
            assert ws.close_code == code, (ws.close_code, ws.close_reason)
            assert ws.close_reason in reasons, ws.close_reason

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
    await closed_by("public", "member", kick, 1008, removed)
    await closed_by("public", "stranger", kick, 1008, removed)
    await closed_by("private", "member", kick, 1008, removed)
    await closed_by("public", "member", ban, 1008, ("banned from the room",))
    await closed_by("private", "member", leave, 1008, (*removed, "left the room"))
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
    stored = await history_texts(cast, room.id)
    assert not set(blocked) & set(stored), "a muted send was stored"


async def wait_present(cast: Cast, room_id: int, who: Person) -> None:
    """Until the room's presence lists `who` (the socket is joined, not just upgraded)."""
    admin = cast.people["admin"]

    async def present() -> bool:
        res = await cast.call(admin, "GET", f"{API}/rooms/{room_id}/presence")
        return res.status_code == 200 and who.id in [u["ID"] for u in res.json()["users"]]

    await eventually(present, f"{who.name} in presence", interval=0.05)


async def send_until(ws: ClientConnection, event: str, bound: float) -> list[str]:
    """Send until a send is answered with `event` ("muted" or "message"), within `bound`
    seconds; returns the texts answered with a `muted` error."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    muted: list[str] = []
    while True:
        text = f"probe {uuid.uuid4().hex[:8]}"
        await ws.send(json.dumps({"chatMessage": text}))
        frame = await next_non_presence(ws)
        if frame["Event"] == "error":
            assert frame["Body"]["code"] == "muted", frame
            muted.append(text)
            if event == "muted":
                return muted
        else:
            assert frame["Event"] == "message" and frame["Body"]["chatMessage"] == text, frame
            if event == "message":
                return muted
        assert loop.time() - started < bound, f"no {event} within {bound} s"
        await asyncio.sleep(0.05)  # pacing between probes, not a wait for an event
