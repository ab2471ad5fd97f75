"""Edits and deletes across real `serve` processes (SPEC 12, issue 14).

An edit or delete is a row of the room's order with an ID of its own (`eventId` in
its v2 frame), so what orders and recovers messages carries them too:

- a v2 client on host B sees the edits and deletes made through host A (by websocket
  frame and by REST), in the room's order with the messages; a v1 client on B sees
  the messages only; several authors on both hosts at once: every v2 client sees the
  same sequence, each event once, its cursors (a message's ID, a change's eventId)
  increasing;
- recovery: a v2 client on B that reconnects with `since` = the last ID or eventId it
  saw gets exactly what it missed while away (in order; history's rules: current text,
  deleted messages left out), then `recovered`, then live events, with no gap and no
  duplicate at the seam while another client keeps writing; on PostgreSQL with two
  hosts and Redis, and on SQLite with one host and the in-process broker;
- with Redis down, the changes made on A reach B's v2 client once Redis is back
  (B's sequencer back-fills the room by seq), and its v1 client gets the messages,
  as SPEC 5's frames exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from ..conftest import TIMEOUT, PrivateRedis, auth, eventually, recv_json
from .conftest import ServeProcess
from .test_scaleout import (
    POLL,
    WAIT,
    host_env,
    pg_url,
    presence,
    redis_url,
    signup,
    start_hosts,
    ws,
)

__all__ = ["pg_url", "redis_url"]  # fixtures, used by name

V2 = "&v=2"
# Frames across hosts take longer than in one process; a test fails, not hangs.
CROSS = 30.0
V1_EVENTS = {"message", "join", "leave", "recovered", "error"}
MSG_KEYS = {
    "ID",
    "chatRoomId",
    "chatRoomName",
    "chatMessage",
    "chatUser",
    "chatUserId",
    "ChatMessageTs",
}
# Writers send bursts: the abuse limits of SPEC 11 are not what is tested here.
LIMITS = {
    "CHATROOM_USER_RATE": "100000",
    "CHATROOM_USER_BURST": "100000",
    "CHATROOM_WS_RATE": "100000",
    "CHATROOM_WS_BURST": "100000",
}

# An event as a client sees it: (Event, cursor), the cursor being a message's ID or a
# change's eventId.
Seen = tuple[str, int]


def cursor(frame: dict[str, Any]) -> int:
    body = frame["Body"]
    return int(body["eventId"] if frame["Event"] in ("edit", "delete") else body["ID"])


def seen(frame: dict[str, Any]) -> Seen:
    return frame["Event"], cursor(frame)


async def next_event(sock: ClientConnection, timeout: float = CROSS) -> dict[str, Any]:
    """The next frame that is not presence or typing."""

    async def wait() -> dict[str, Any]:
        while True:
            frame = await recv_json(sock, timeout)
            if frame["Event"] not in ("join", "leave", "typing"):
                return frame

    return await asyncio.wait_for(wait(), timeout)


async def frames_until(
    sock: ClientConnection, last: Callable[[dict[str, Any]], bool], timeout: float = CROSS
) -> list[dict[str, Any]]:
    """Every event up to and including the one `last` picks."""
    got: list[dict[str, Any]] = []
    while not got or not last(got[-1]):
        got.append(await next_event(sock, timeout))
    return got


def is_message(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["Event"] == "message" and f["Body"]["chatMessage"] == text


def is_recovered(frame: dict[str, Any]) -> bool:
    return bool(frame["Event"] == "recovered")


class Author:
    """A user who writes through one host: a v2 socket of the room, and REST."""

    def __init__(self, host: ServeProcess, user: dict[str, Any], token: str, room_id: int):
        self.host, self.user, self.token, self.room_id = host, user, token, room_id
        self.sock: ClientConnection | None = None

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[Author]:
        async with ws(self.host, self.room_id, self.token, V2) as sock:
            self.sock = sock
            try:
                yield self
            finally:
                self.sock = None

    async def _own(self, event: str, message_id: int | None, text: str | None) -> dict[str, Any]:
        """Its socket's frame for what it just did (other writers' frames skipped)."""
        assert self.sock is not None
        while True:
            frame = await next_event(self.sock)
            assert frame["Event"] != "error", frame
            body = frame["Body"]
            if frame["Event"] != event or (message_id is not None and body["ID"] != message_id):
                continue
            if text is None or body.get("chatMessage") == text:
                return frame

    async def post(self, text: str) -> dict[str, Any]:
        assert self.sock is not None
        await self.sock.send(json.dumps({"chatMessage": text}))
        return await self._own("message", None, text)

    async def edit(self, message_id: int, text: str, rest: bool = False) -> dict[str, Any]:
        if rest:
            res = await self._rest("PATCH", message_id, {"chatMessage": text})
            assert res.status_code == 200, res.text
        else:
            assert self.sock is not None
            frame = {"type": "edit", "id": message_id, "chatMessage": text}
            await self.sock.send(json.dumps(frame))
        return await self._own("edit", message_id, text)

    async def delete(self, message_id: int, rest: bool = False) -> dict[str, Any]:
        if rest:
            res = await self._rest("DELETE", message_id)
            assert res.status_code == 204, res.text
        else:
            assert self.sock is not None
            await self.sock.send(json.dumps({"type": "delete", "id": message_id}))
        return await self._own("delete", message_id, None)

    async def _rest(self, method: str, message_id: int, body: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.host.base, timeout=TIMEOUT) as http:
            kwargs: dict[str, Any] = {"headers": auth(self.token)}
            if body is not None:
                kwargs["json"] = body
            return await http.request(method, f"/v1/api/chat/messages/{message_id}", **kwargs)


async def room_of(host: ServeProcess, token: str) -> int:
    async with httpx.AsyncClient(base_url=host.base, timeout=TIMEOUT) as http:
        res = await http.post("/v1/api/chat/create", json={"name": "edits"}, headers=auth(token))
        assert res.status_code == 200, res.text
        return int(res.json()["chatRoom"]["ID"])


async def all_joined(host: ServeProcess, token: str, room_id: int, connections: int) -> None:
    """Until presence counts the room's sockets on every host: each is in its host's
    hub, subscribed, so nothing published from now on can pass it by."""

    async def counted() -> bool:
        return bool((await presence(host.base, token, room_id))["connections"] == connections)

    await eventually(counted, f"{connections} sockets joined", timeout=WAIT, interval=POLL)


def check_sequence(events: list[Seen]) -> None:
    cursors = [c for _, c in events]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors), events


# --------------------------------------------------------------------------- (a)


async def test_v2_client_on_b_sees_changes_made_on_a_in_order_and_v1_only_messages(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    a, b = await start_hosts(
        processes, tmp_path, pg_url, redis_url, (), ("--workers", "2"), env=LIMITS
    )
    ann, ann_token = await signup(a.base, "ann")
    _, bob_token = await signup(a.base, "bob")
    _, carl_token = await signup(a.base, "carl")
    dan, dan_token = await signup(a.base, "dan")
    rid = await room_of(a, ann_token)
    author = Author(a, ann, ann_token, rid)
    other = Author(b, dan, dan_token, rid)  # writes through host B
    async with (
        author.connected(),
        other.connected(),
        ws(b, rid, bob_token, V2) as bob2,
        ws(b, rid, carl_token) as carl1,
        ws(a, rid, bob_token, V2) as watcher_a,
    ):
        await all_joined(a, ann_token, rid, 5)
        # msg, edit, msg, delete, msg, by websocket and by REST, one after the other.
        m1 = (await author.post("one"))["Body"]
        e1 = (await author.edit(m1["ID"], "one, edited"))["Body"]
        m2 = (await author.post("two"))["Body"]
        d1 = (await author.delete(m1["ID"], rest=True))["Body"]
        m3 = (await author.post("three"))["Body"]
        e2 = (await author.edit(m3["ID"], "three, edited", rest=True))["Body"]
        d2 = (await author.delete(m2["ID"]))["Body"]
        m4 = (await author.post("four"))["Body"]
        want = [
            ("message", m1["ID"]),
            ("edit", e1["eventId"]),
            ("message", m2["ID"]),
            ("delete", d1["eventId"]),
            ("message", m3["ID"]),
            ("edit", e2["eventId"]),
            ("delete", d2["eventId"]),
            ("message", m4["ID"]),
        ]
        check_sequence(want)
        got = await frames_until(bob2, is_message("four"))
        assert [seen(f) for f in got] == want, got
        assert [f["Body"] for f in got] == [m1, e1, m2, d1, m3, e2, d2, m4]
        v1 = await frames_until(carl1, is_message("four"))
        assert {f["Event"] for f in v1} <= V1_EVENTS, v1
        assert [(f["Event"], f["Body"]["ID"], f["Body"]["chatMessage"]) for f in v1] == [
            ("message", m1["ID"], "one"),
            ("message", m2["ID"], "two"),
            ("message", m3["ID"], "three"),
            ("message", m4["ID"], "four"),
        ]
        assert all(set(f["Body"]) == MSG_KEYS for f in v1), v1
        await frames_until(watcher_a, is_message("four"))

        # Both hosts at once: two authors post, edit and delete concurrently.
        async def write(w: Author, tag: str) -> list[Seen]:
            mine: list[Seen] = []
            for i in range(12):
                msg = await w.post(f"{tag}{i}")
                mine.append(seen(msg))
                mid = msg["Body"]["ID"]
                mine.append(seen(await w.edit(mid, f"{tag}{i}!", rest=i % 2 == 0)))
                if i % 3 == 0:
                    mine.append(seen(await w.delete(mid, rest=i % 2 == 1)))
            return mine

        made = await asyncio.gather(write(author, "a"), write(other, "b"))
        end = seen(await author.post("the end"))
        everything = sorted([*made[0], *made[1], end], key=lambda s: s[1])
        for sock in (bob2, watcher_a):
            got = [seen(f) for f in await frames_until(sock, is_message("the end"))]
            assert got == everything, f"{len(got)} events, {len(everything)} made"
        v1 = await frames_until(carl1, is_message("the end"))
        assert [seen(f) for f in v1] == [s for s in everything if s[0] == "message"]


# --------------------------------------------------------------------------- (b), (c)


async def test_recovery_across_hosts_on_postgres(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    a, b = await start_hosts(processes, tmp_path, pg_url, redis_url, (), (), env=LIMITS)
    await recovery_scenario(a, b)


async def test_recovery_on_sqlite_with_the_in_process_broker(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    env = {**host_env(f"test-{uuid.uuid4().hex}"), **LIMITS}
    host = ServeProcess(f"sqlite://{tmp_path / 'changes.sqlite3'}", tmp_path, env=env)
    processes.append(host)
    await host.ready()
    await recovery_scenario(host, host)


async def reconnect(
    host: ServeProcess, room_id: int, token: str, since: int
) -> tuple[ClientConnection, list[dict[str, Any]]]:
    """A v2 socket with `since`: the socket, and the frames of its replay (`recovered`
    last)."""
    sock = await ws(host, room_id, token, f"{V2}&since={since}")
    return sock, await frames_until(sock, is_recovered)


async def recovery_scenario(a: ServeProcess, b: ServeProcess) -> None:
    """Bob's v2 client on B (on one host: A itself) misses changes made through A, then
    reconnects with `since`."""
    ann, ann_token = await signup(a.base, "ann")
    _, bob_token = await signup(a.base, "bob")
    _, eve_token = await signup(a.base, "eve")
    rid = await room_of(a, ann_token)
    author = Author(a, ann, ann_token, rid)
    async with author.connected(), ws(a, rid, eve_token, V2) as observer:
        # Seen by bob on B: two messages and an edit; his cursor is the edit's eventId.
        async with ws(b, rid, bob_token, V2) as bob:
            await all_joined(a, ann_token, rid, 3)
            m1 = (await author.post("one"))["Body"]
            m2 = (await author.post("two"))["Body"]
            e1 = (await author.edit(m1["ID"], "one, edited"))["Body"]
            before = await frames_until(bob, lambda f: f["Event"] == "edit")
            assert [seen(f) for f in before] == [
                ("message", m1["ID"]),
                ("message", m2["ID"]),
                ("edit", e1["eventId"]),
            ]
        since = e1["eventId"]
        # While bob is away: messages, edits and deletes, by websocket and REST.
        m3 = (await author.post("three"))["Body"]
        e2 = (await author.edit(m2["ID"], "two, edited", rest=True))["Body"]
        d1 = (await author.delete(m1["ID"]))["Body"]
        m4 = (await author.post("four"))["Body"]
        e3 = (await author.edit(m4["ID"], "four, edited"))["Body"]
        m5 = (await author.post("five"))["Body"]
        await author.edit(m5["ID"], "five, edited")
        d2 = (await author.delete(m5["ID"], rest=True))["Body"]
        e4 = (await author.edit(m3["ID"], "three, edited", rest=True))["Body"]
        m6 = (await author.post("six"))["Body"]
        sock, replay = await reconnect(b, rid, bob_token, since)
        async with sock as bob:
            # Missed, in order; as history shows them: current text, m5 (deleted since)
            # and its edit left out, and its delete still told.
            assert [seen(f) for f in replay[:-1]] == [
                ("message", m3["ID"]),
                ("edit", e2["eventId"]),
                ("delete", d1["eventId"]),
                ("message", m4["ID"]),
                ("edit", e3["eventId"]),
                ("delete", d2["eventId"]),
                ("edit", e4["eventId"]),
                ("message", m6["ID"]),
            ], replay
            assert replay[-1]["Body"]["count"] == 8 and replay[-1]["Body"]["complete"] is True
            shown = {f["Body"]["ID"]: f["Body"] for f in replay if f["Event"] == "message"}
            assert shown[m3["ID"]]["chatMessage"] == "three, edited"
            assert shown[m3["ID"]]["EditedAt"] and shown[m6["ID"]]["chatMessage"] == "six"
            assert "EditedAt" not in shown[m6["ID"]]
            assert [f["Body"] for f in replay if f["Event"] in ("edit", "delete")] == [
                e2,
                d1,
                e3,
                d2,
                e4,
            ]
            # Then live: nothing again, nothing lost.
            m7 = (await author.post("seven"))["Body"]
            e5 = (await author.edit(m6["ID"], "six, edited"))["Body"]
            d3 = (await author.delete(m3["ID"], rest=True))["Body"]
            m8 = (await author.post("eight"))["Body"]
            live = await frames_until(bob, is_message("eight"))
            assert [f["Body"] for f in live] == [m7, e5, d3, m8]
            last = cursor(live[-1])

        # The seam under load: bob reconnects while another client keeps posting and
        # editing; replay + live is exactly what an observer saw live, in order.
        started, stop = asyncio.Event(), asyncio.Event()

        async def keep_writing() -> int:
            n = 0
            while not stop.is_set() or n < 10:
                msg = await author.post(f"busy {n}")
                started.set()
                await author.edit(msg["Body"]["ID"], f"busy {n}!", rest=n % 2 == 1)
                n += 1
            return n

        writer = asyncio.create_task(keep_writing())
        try:
            await asyncio.wait_for(started.wait(), CROSS)
            sock, replay = await reconnect(b, rid, bob_token, last)
            stop.set()
            await asyncio.wait_for(asyncio.shield(writer), CROSS * 2)
        finally:
            stop.set()
            if not writer.done():
                writer.cancel()
        async with sock as bob:
            await author.post("sentinel")
            live = await frames_until(bob, is_message("sentinel"))
        watched = await frames_until(observer, is_message("sentinel"))
        after = [seen(f) for f in watched if cursor(f) > last]
        got = [seen(f) for f in replay[:-1]] + [seen(f) for f in live]
        check_sequence(got)
        assert got == after, (len(got), len(after))
        # The writer had posted before the reconnect: the seam is inside its stream.
        assert replay[-1]["Body"]["count"] == len(replay) - 1 >= 1


# --------------------------------------------------------------------------- (d)


async def test_changes_made_while_redis_is_down_reach_the_other_host_after(
    tmp_path: Path,
    processes: list[ServeProcess],
    pg_url: str,
    private_redis: PrivateRedis,
) -> None:
    a, b = await start_hosts(processes, tmp_path, pg_url, private_redis.url, (), (), env=LIMITS)
    ann, ann_token = await signup(a.base, "ann")
    _, bob_token = await signup(a.base, "bob")
    _, carl_token = await signup(a.base, "carl")
    rid = await room_of(a, ann_token)
    author = Author(a, ann, ann_token, rid)

    async def readyz(host: ServeProcess) -> int:
        async with httpx.AsyncClient(base_url=host.base, timeout=TIMEOUT) as http:
            return (await http.get("/readyz")).status_code

    async with (
        author.connected(),
        ws(b, rid, bob_token, V2) as bob2,
        ws(b, rid, carl_token) as carl1,
    ):
        await all_joined(a, ann_token, rid, 3)
        m0 = (await author.post("before"))["Body"]
        assert [seen(f) for f in await frames_until(bob2, is_message("before"))] == [
            ("message", m0["ID"])
        ]
        await private_redis.kill()

        async def both_down() -> bool:
            return await readyz(a) == 503 and await readyz(b) == 503

        await eventually(both_down, "both hosts report the Redis outage", WAIT, POLL)
        # Stored and shown on A (local delivery); B cannot hear of them now.
        m1 = (await author.post("during one"))["Body"]
        e1 = (await author.edit(m1["ID"], "during one, edited"))["Body"]
        m2 = (await author.post("during two"))["Body"]
        d0 = (await author.delete(m0["ID"]))["Body"]
        e2 = (await author.edit(m2["ID"], "during two, edited", rest=True))["Body"]
        await private_redis.start()

        async def both_up() -> bool:
            return await readyz(a) == 200 and await readyz(b) == 200

        await eventually(both_up, "both hosts see Redis again", WAIT, POLL)
        # B's sequencer back-fills the room by seq: nothing new needs to be posted.
        got = await frames_until(bob2, lambda f: seen(f) == ("edit", e2["eventId"]))
        assert [seen(f) for f in got] == [
            ("message", m1["ID"]),
            ("edit", e1["eventId"]),
            ("message", m2["ID"]),
            ("delete", d0["eventId"]),
            ("edit", e2["eventId"]),
        ], got
        # Back-filled rows show what the database holds now (current text).
        assert got[2]["Body"]["chatMessage"] == "during two, edited"
        assert got[4]["Body"] == e2
        m3 = (await author.post("after"))["Body"]
        assert [seen(f) for f in await frames_until(bob2, is_message("after"))] == [
            ("message", m3["ID"])
        ]
        v1 = await frames_until(carl1, is_message("after"))
        assert [seen(f) for f in v1] == [
            ("message", m0["ID"]),
            ("message", m1["ID"]),
            ("message", m2["ID"]),
            ("message", m3["ID"]),
        ], v1
        assert {f["Event"] for f in v1} <= V1_EVENTS
        # SPEC 12: a v1 connection gets exactly SPEC 5's frames, back-filled ones too.
        extra = [(f["Body"]["ID"], sorted(set(f["Body"]) - MSG_KEYS)) for f in v1]
        assert all(not keys for _, keys in extra), f"not SPEC 5's MSG: {extra}"
