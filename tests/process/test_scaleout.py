"""Several real `serve` processes sharing one PostgreSQL and one Redis (SPEC section 6)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from ..conftest import (
    SHARED_REDIS,
    TIMEOUT,
    PrivateRedis,
    auth,
    eventually,
    fresh_pg_database,
    recv_json,
    redis_answers,
    service_missing,
)
from .conftest import ServeProcess

PRESENCE_TTL = 2
# For eventually(): several processes take longer than one in-process server, and
# the conditions ask HTTP endpoints (there is no event to wait on), so not too often.
WAIT = 15.0
POLL = 0.1


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_pg_database("scale") as url:
        yield url


@pytest.fixture
async def redis_url() -> str:
    if not await redis_answers(SHARED_REDIS):
        service_missing(f"Redis at {SHARED_REDIS}")
    return SHARED_REDIS


def host_env(prefix: str) -> dict[str, str]:
    return {
        "CHATROOM_REDIS_PREFIX": prefix,
        "CHATROOM_PRESENCE_TTL": str(PRESENCE_TTL),
        "CHATROOM_WS_RATE": "1000",
        "CHATROOM_WS_BURST": "1000",
        "CHATROOM_JWT_SECRET": "",
    }


async def start_hosts(
    hosts: list[ServeProcess],
    tmp_path: Path,
    db: str,
    redis: str,
    *extras: tuple[str, ...],
    env: dict[str, str] | None = None,
) -> list[ServeProcess]:
    prefix = f"test-{uuid.uuid4().hex}"
    started = []
    for i, extra in enumerate(extras):
        # The first host migrates; the others start after it, without racing it.
        flags = ("--redis-url", redis, *extra) + (() if i == 0 else ("--no-migrate",))
        host = ServeProcess(db, tmp_path, *flags, env={**host_env(prefix), **(env or {})})
        hosts.append(host)
        await host.ready()
        started.append(host)
    return started


async def signup(base: str, name: str) -> tuple[dict[str, Any], str]:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        res = await http.post(
            "/v1/api/auth/signup",
            json={"user_name": name, "email": f"{name}@example.com", "password": "password1"},
        )
        assert res.status_code == 200, res.text
        return res.json()["user"], res.json()["token"]


async def create_room(base: str, token: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        res = await http.post("/v1/api/chat/create", json={"name": "shared"}, headers=auth(token))
        return int(res.json()["chatRoom"]["ID"])


async def presence(base: str, token: str, room_id: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        res = await http.get(f"/v1/api/chat/rooms/{room_id}/presence", headers=auth(token))
        assert res.status_code == 200, res.text
        return res.json()  # type: ignore[no-any-return]


def ws(host: ServeProcess, room_id: int, token: str, extra: str = "") -> Any:
    return connect(
        f"ws://127.0.0.1:{host.port}/v1/ws?room_id={room_id}&jwt={token}{extra}", max_queue=None
    )


async def collect(sock: ClientConnection, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await recv_json(sock, timeout=30)
        if frame["Event"] == "message":
            got.append(frame["Body"])
    return got


async def test_three_hosts_one_room_ordered_exactly_once_and_presence(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    a, b, c = await start_hosts(processes, tmp_path, pg_url, redis_url, (), (), ("--workers", "2"))
    users = [await signup(a.base, f"u{i}") for i in range(4)]
    tokens = [t for _, t in users]
    rid = await create_room(a.base, tokens[0])
    per_sender = 20
    async with (
        ws(a, rid, tokens[0]) as s_a,
        ws(b, rid, tokens[1]) as s_b,
        ws(c, rid, tokens[2]) as s_c,
        ws(c, rid, tokens[3]) as listener_c,
        ws(b, rid, tokens[3]) as listener_b,
    ):
        # Everyone is in: presence on host A lists the users connected to B and C.
        want = sorted(u["ID"] for u, _ in users)

        async def all_present() -> bool:
            p = await presence(a.base, tokens[0], rid)
            return sorted(u["ID"] for u in p["users"]) == want and p["connections"] == 5

        await eventually(
            all_present, "every user in presence on host A", timeout=WAIT, interval=POLL
        )

        async def send(sock: ClientConnection, tag: str) -> None:
            for i in range(per_sender):
                await sock.send(json.dumps({"chatRoomId": rid, "chatMessage": f"{tag}{i}"}))

        await asyncio.gather(send(s_a, "a"), send(s_b, "b"), send(s_c, "c"))
        received = await asyncio.gather(
            *(collect(sock, 3 * per_sender) for sock in (s_a, s_b, s_c, listener_c, listener_b))
        )
    ids = [m["ID"] for m in received[0]]
    assert ids == sorted(ids) and len(set(ids)) == 3 * per_sender
    for got in received[1:]:
        assert [m["ID"] for m in got] == ids  # same order everywhere, exactly once
    for tag in "abc":
        mine = [m["chatMessage"] for m in received[0] if m["chatMessage"].startswith(tag)]
        assert mine == [f"{tag}{i}" for i in range(per_sender)]


async def test_leave_crosses_hosts_and_a_killed_host_drops_out_of_presence(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    a, b = await start_hosts(processes, tmp_path, pg_url, redis_url, (), ())
    ann, ann_token = await signup(a.base, "ann")
    bob, bob_token = await signup(a.base, "bob")
    rid = await create_room(a.base, ann_token)
    async with ws(a, rid, ann_token) as watcher:
        async with ws(b, rid, bob_token):

            async def joined() -> bool:
                frame = await recv_json(watcher)
                return bool(frame["Event"] == "join" and frame["Body"]["user"]["ID"] == bob["ID"])

            while not await joined():
                pass
        while True:
            frame = await recv_json(watcher)
            if frame["Event"] == "leave":
                assert frame["Body"]["user"] == {"ID": bob["ID"], "UserName": "bob"}
                break

        # Bob again on B, then B dies without closing anything.
        bob_sock = await ws(b, rid, bob_token)

        async def bob_listed() -> bool:
            users = (await presence(a.base, ann_token, rid))["users"]
            return bob["ID"] in [u["ID"] for u in users]

        await eventually(bob_listed, "bob in presence", timeout=WAIT, interval=POLL)
        b.kill()
        killed_at = time.monotonic()

        async def bob_gone() -> bool:
            return not await bob_listed()

        await eventually(
            bob_gone, "bob to drop out of presence", timeout=PRESENCE_TTL * 3, interval=POLL
        )
        assert time.monotonic() - killed_at <= PRESENCE_TTL * 3
        await bob_sock.close()
        listed = await presence(a.base, ann_token, rid)
        assert listed["users"] == [{"ID": ann["ID"], "UserName": "ann"}]


async def test_redis_outage_keeps_local_delivery_and_loses_nothing(
    tmp_path: Path,
    processes: list[ServeProcess],
    pg_url: str,
    private_redis: PrivateRedis,
) -> None:
    (a,) = await start_hosts(processes, tmp_path, pg_url, private_redis.url, ())
    _, token = await signup(a.base, "ann")
    _, other = await signup(a.base, "bob")
    rid = await create_room(a.base, token)
    async with httpx.AsyncClient(base_url=a.base, timeout=TIMEOUT) as http:
        assert (await http.get("/readyz")).status_code == 200
        async with ws(a, rid, token) as sender, ws(a, rid, other) as reader:
            await sender.send(json.dumps({"chatMessage": "before"}))
            last_seen = (await collect(reader, 1))[0]["ID"]
        async with ws(a, rid, token) as sender:
            await private_redis.kill()

            async def not_ready() -> bool:
                res = await http.get("/readyz")
                return res.status_code == 503 and "redis" in res.json()["failing"]

            await eventually(
                not_ready, "/readyz to report the Redis outage", timeout=WAIT, interval=POLL
            )
            # Same-process delivery goes on while Redis is away.
            for i in range(3):
                await sender.send(json.dumps({"chatMessage": f"during {i}"}))
            during = await collect(sender, 3)
            assert [m["chatMessage"] for m in during] == [f"during {i}" for i in range(3)]

            await private_redis.start()

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await eventually(ready, "/readyz to recover", timeout=WAIT, interval=POLL)
            await sender.send(json.dumps({"chatMessage": "after"}))
            assert (await collect(sender, 1))[0]["chatMessage"] == "after"
        # Bob missed all of it; reconnecting with since gets exactly that, nothing lost.
        async with ws(a, rid, other, f"&since={last_seen}") as reader:
            replay = []
            while True:
                frame = await recv_json(reader)
                if frame["Event"] == "recovered":
                    break
                if frame["Event"] == "message":
                    replay.append(frame["Body"]["chatMessage"])
        assert replay == ["during 0", "during 1", "during 2", "after"]


async def test_resend_on_another_host_stores_one_row(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    a, b = await start_hosts(processes, tmp_path, pg_url, redis_url, (), ())
    _, token = await signup(a.base, "ann")
    rid = await create_room(a.base, token)
    frame = json.dumps({"chatRoomId": rid, "chatMessage": "once", "clientMessageId": "x-1"})
    async with ws(a, rid, token) as first:
        await first.send(frame)
        (original,) = await collect(first, 1)
    async with ws(b, rid, token) as second:
        await second.send(frame)
        (again,) = await collect(second, 1)
    assert again == original
    async with httpx.AsyncClient(base_url=b.base, timeout=TIMEOUT) as http:
        res = await http.get(f"/v1/api/chat/rooms/{rid}/messages", headers=auth(token))
    assert [m["ID"] for m in res.json()["messages"]] == [original["ID"]]


async def test_sigterm_right_after_start_with_two_workers_exits_cleanly(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    # /healthz answers once one worker serves; the other may still be starting.
    (host,) = await start_hosts(processes, tmp_path, pg_url, redis_url, ("--workers", "2"))
    assert await asyncio.to_thread(host.terminate) == 0
    log = host.output()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log


async def test_sigterm_with_two_workers_closes_sockets_with_1001(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    (host,) = await start_hosts(processes, tmp_path, pg_url, redis_url, ("--workers", "2"))
    _, token = await signup(host.base, "ann")
    rid = await create_room(host.base, token)
    socks = [await ws(host, rid, token) for _ in range(4)]  # spread over both workers

    async def all_joined() -> bool:
        # A socket is counted in presence once its worker is subscribed to the room:
        # a message sent before that would be one it legitimately never sees.
        return bool((await presence(host.base, token, rid))["connections"] == 4)

    await eventually(all_joined, "all four sockets joined", timeout=WAIT, interval=POLL)
    await socks[0].send(json.dumps({"chatMessage": "live"}))
    for sock in socks:
        await collect(sock, 1)  # every socket, on either worker, is live
    # /metrics adds up both workers, whichever one answers.
    async with httpx.AsyncClient(base_url=host.base, timeout=TIMEOUT) as http:
        for _ in range(4):
            text = (await http.get("/metrics")).text
            assert "\nchatroom_connections 4.0\n" in text, text
    assert await asyncio.to_thread(host.terminate) == 0
    for sock in socks:
        await asyncio.wait_for(sock.wait_closed(), TIMEOUT)
        assert sock.close_code == 1001
    assert "Traceback" not in host.output()
