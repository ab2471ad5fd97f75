"""Moderation reaches every host within 2 s (SPEC section 10, issue 13).

Two real `serve` processes (the second with two workers) share PostgreSQL and Redis.
A user is connected to a room through host B; a kick, a ban, their own leave, the
room's deletion or its change from public to private, each made through host A,
closes that socket on B with 1008 (1001 for the deletion) and a reason that says why,
within 2 s. A mute made through A makes the user's next send on B fail with a `muted`
error frame within 2 s, and nothing of it is stored; an unmute lets them speak again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from ..conftest import TIMEOUT, auth, eventually, recv_json
from .conftest import ServeProcess
from .test_scaleout import pg_url, redis_url, signup, start_hosts, ws

__all__ = ["pg_url", "redis_url"]  # fixtures, used by name

PROPAGATION = 2.0  # seconds: the SPEC's bound
API = "/v1/api/chat"


class Client:
    """One user talking REST to one host."""

    def __init__(self, host: ServeProcess, user: dict[str, Any], token: str) -> None:
        self.host, self.user, self.token = host, user, token

    @property
    def id(self) -> int:
        return int(self.user["ID"])

    def on(self, host: ServeProcess) -> Client:
        return Client(host, self.user, self.token)

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.host.base, timeout=TIMEOUT) as http:
            kwargs: dict[str, Any] = {"headers": auth(self.token)}
            if body is not None:
                kwargs["json"] = body
            return await http.request(method, f"{API}{path}", **kwargs)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        res = await self.call(method, path, body)
        assert res.status_code in (200, 201, 204), f"{method} {path}: {res.status_code} {res.text}"
        return res.json() if res.content else None


async def new_room(owner: Client, visibility: str, *members: Client) -> int:
    body = await owner.ok(
        "POST",
        "/create",
        {"name": f"{visibility} {uuid.uuid4().hex[:6]}", "visibility": visibility},
    )
    rid = int(body["chatRoom"]["ID"])
    for member in members:
        if visibility == "private":
            await owner.ok("POST", f"/rooms/{rid}/members", {"userId": member.id})
        else:
            await owner.ok("PUT", f"/rooms/{rid}/members/{member.id}", {"role": "member"})
    return rid


async def joined(watcher: Client, rid: int, who: Client) -> None:
    """Until host A's presence lists `who`: their socket on B is in B's hub, not only
    upgraded, so a control event published now cannot miss it."""

    async def listed() -> bool:
        res = await watcher.call("GET", f"/rooms/{rid}/presence")
        return res.status_code == 200 and who.id in [u["ID"] for u in res.json()["users"]]

    await eventually(listed, "the user on host B in presence", timeout=15, interval=0.05)


async def closed_within(sock: ClientConnection, bound: float) -> tuple[int | None, str | None]:
    await asyncio.wait_for(sock.wait_closed(), bound)
    return sock.close_code, sock.close_reason


Action = Callable[[int], Awaitable[Any]]


async def test_kick_ban_leave_delete_and_private_close_sockets_on_the_other_host(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    a, b = await start_hosts(processes, tmp_path, pg_url, redis_url, (), ("--workers", "2"))
    owner = Client(a, *await signup(a.base, "owner"))
    mod = Client(a, *await signup(a.base, "moder"))
    victim = Client(a, *await signup(a.base, "victim"))
    bystander = Client(a, *await signup(a.base, "stander"))

    async def case(visibility: str, action: Action, code: int, reasons: tuple[str, ...]) -> None:
        rid = await new_room(owner, visibility, mod, victim, bystander)
        await owner.ok("PUT", f"/rooms/{rid}/members/{mod.id}", {"role": "moderator"})
        async with ws(b, rid, victim.token) as sock, ws(b, rid, bystander.token) as other:
            await joined(owner, rid, victim)
            await joined(owner, rid, bystander)
            started = time.monotonic()
            await action(rid)
            got = await closed_within(sock, PROPAGATION + 1)
            elapsed = time.monotonic() - started
            assert got[0] == code and got[1] in reasons, (visibility, got)
            assert elapsed < PROPAGATION, f"closed after {elapsed:.2f} s"
            if code == 1008:
                # Only the victim: the bystander on the same host still talks.
                text = f"still here {uuid.uuid4().hex[:6]}"
                await other.send(json.dumps({"chatMessage": text}))
                while True:
                    frame = await recv_json(other)
                    if frame["Event"] == "message" and frame["Body"]["chatMessage"] == text:
                        break

    async def kick(rid: int) -> None:
        await mod.ok("DELETE", f"/rooms/{rid}/members/{victim.id}")

    async def ban(rid: int) -> None:
        await mod.ok("POST", f"/rooms/{rid}/bans", {"userId": victim.id, "reason": "spam"})

    async def leave(rid: int) -> None:
        await victim.ok("DELETE", f"/rooms/{rid}/members/{victim.id}")

    async def delete(rid: int) -> None:
        await owner.ok("DELETE", f"/rooms/{rid}")

    removed = ("removed from the room",)
    await case("public", kick, 1008, removed)
    await case("private", kick, 1008, removed)

    # A ban: closed, and refused before the upgrade on B afterwards (403).
    rid_holder: list[int] = []

    async def ban_and_remember(rid: int) -> None:
        rid_holder.append(rid)
        await ban(rid)

    await case("public", ban_and_remember, 1008, ("banned from the room",))
    with pytest.raises(InvalidStatus) as refused:
        async with ws(b, rid_holder[0], victim.token):
            pass
    assert refused.value.response.status_code == 403

    # Leaving a private room, through A, closes one's own socket on B. The design
    # names no reason for a leave; these are the ones that say why.
    await case("private", leave, 1008, (*removed, "left the room"))
    await case("private", delete, 1001, ("room deleted",))
    await case("public", delete, 1001, ("room deleted",))

    # Public -> private: the non-member's socket closes; the members' stay open.
    rid = await new_room(owner, "public", bystander)
    async with ws(b, rid, victim.token) as sock, ws(b, rid, bystander.token) as member_sock:
        await joined(owner, rid, victim)
        await joined(owner, rid, bystander)
        started = time.monotonic()
        await owner.ok("PATCH", f"/rooms/{rid}", {"visibility": "private"})
        code, reason = await closed_within(sock, PROPAGATION + 1)
        assert (code, reason) == (1008, "room is private now")
        assert time.monotonic() - started < PROPAGATION
        text = f"members stay {uuid.uuid4().hex[:6]}"
        await member_sock.send(json.dumps({"chatMessage": text}))
        while True:
            frame = await recv_json(member_sock)
            if frame["Event"] == "message" and frame["Body"]["chatMessage"] == text:
                break
    # And the room is gone for the non-member on B too.
    res = await victim.on(b).call("GET", f"/rooms/{rid}")
    assert res.status_code == 404, res.text


async def send_until(sock: ClientConnection, want: str, bound: float) -> tuple[float, list[str]]:
    """Send probes until one is answered with `want` ("muted": an error frame with that
    code; "message": the message itself). Returns how long it took and the probes that
    were refused as muted."""
    started = time.monotonic()
    muted: list[str] = []
    while True:
        text = f"probe {uuid.uuid4().hex[:8]}"
        await sock.send(json.dumps({"chatMessage": text}))
        while True:
            frame = await recv_json(sock)
            if frame["Event"] in ("error", "message"):
                break
        if frame["Event"] == "error":
            assert frame["Body"]["code"] == "muted", frame
            muted.append(text)
            if want == "muted":
                return time.monotonic() - started, muted
        else:
            assert frame["Body"]["chatMessage"] == text, frame
            if want == "message":
                return time.monotonic() - started, muted
        assert time.monotonic() - started < bound, f"no {want} answer within {bound} s"
        await asyncio.sleep(0.1)  # pacing (the rate limit), not a wait for an event


async def test_mute_and_unmute_reach_the_other_host(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    a, b = await start_hosts(processes, tmp_path, pg_url, redis_url, (), ("--workers", "2"))
    owner = Client(a, *await signup(a.base, "owner"))
    talker = Client(a, *await signup(a.base, "talker"))
    rid = await new_room(owner, "public", talker)
    async with ws(b, rid, talker.token) as sock, ws(a, rid, owner.token) as watcher:
        await joined(owner, rid, talker)
        await send_until(sock, "message", PROPAGATION)  # speaks before

        await owner.ok("POST", f"/rooms/{rid}/mutes", {"userId": talker.id})
        elapsed, muted = await send_until(sock, "muted", PROPAGATION)
        assert elapsed < PROPAGATION
        # Still reads: the owner's message through host A reaches the muted user on B.
        text = f"you can read {uuid.uuid4().hex[:6]}"
        await watcher.send(json.dumps({"chatMessage": text}))
        while True:
            frame = await recv_json(sock)
            if frame["Event"] == "message":
                assert frame["Body"]["chatMessage"] == text, frame
                break

        await owner.ok("DELETE", f"/rooms/{rid}/mutes/{talker.id}")
        elapsed, more = await send_until(sock, "message", PROPAGATION)
        assert elapsed < PROPAGATION
    res = await owner.call("GET", f"/rooms/{rid}/messages?limit=200")
    assert res.status_code == 200, res.text
    stored = {m["chatMessage"] for m in res.json()["messages"]}
    assert not stored & {*muted, *more}, "a send refused as muted was stored"
