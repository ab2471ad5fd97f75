"""The cast of the room-permission tests (SPEC section 10, issue 13): one user per role,
rooms of each visibility with every role in place, and the checks the tests share.

Roles: the room's owner, a moderator, a member, a stranger (a signed-up user with no
row in the room), a user banned from the room, a muted member, and a site admin
(`users.is_admin`, set through the ORM as the CLI's `set-admin` would). In a direct
room only "member", "stranger" and "admin" exist.
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


MEMBERS = {
    "public": {"owner", "moderator", "member", "muted"},
    "private": {"owner", "moderator", "member", "muted"},
    "direct": {"member"},
}


MODERATORS = {"owner", "moderator", "admin"}  # may kick, ban, mute, rename, invite


OWNERS = {"owner", "admin"}  # may delete, change roles, act on moderators


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


def roles_of(visibility: str) -> tuple[str, ...]:
    return DIRECT_ROLES if visibility == "direct" else ROLES


async def never_used(cast: Cast) -> Hidden:
    res = await cast.call(cast.people["stranger"], "GET", f"{API}/rooms/{NEVER_USED}")
    return Hidden(res)


async def member_roles(cast: Cast, looker: Person, room_id: int) -> dict[int, str]:
    res = await cast.call(looker, "GET", f"{API}/rooms/{room_id}/members")
    assert res.status_code == 200, res.text
    return {m["user"]["ID"]: m["role"] for m in res.json()["members"]}


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


async def send_as(server: ChatServer, room: Room, who: Person, text: str) -> None:
    async with ws_connect(server, room.id, who.token) as ws:
        await ws.send(json.dumps({"chatRoomId": room.id, "chatMessage": text}))
        while True:
            frame = await next_non_presence(ws)
            if frame["Event"] == "message" and frame["Body"]["chatMessage"] == text:
                return


async def listed(cast: Cast, who: Person, query: str = "") -> list[int]:
    res = await cast.call(who, "GET", f"{API}/rooms{query}")
    assert res.status_code == 200, res.text
    return [r["ID"] for r in res.json()["chatRooms"]]


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
        await asyncio.sleep(0.1)  # pacing (the rate limit), not a wait for an event
