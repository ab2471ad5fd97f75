"""With Redis, the abuse limits hold across hosts (SPEC section 11).

Two real `serve` processes share PostgreSQL and Redis: a user's connections on
one host count against the same cap on the other, and so do login attempts from
one address and a user's messages (rate counters). With Redis gone, a host goes
on counting by itself: nobody is refused for the outage, and nothing fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from ..conftest import TIMEOUT, PrivateRedis, recv_event
from .conftest import ServeProcess
from .test_scaleout import collect, create_room, pg_url, redis_url, signup, start_hosts, ws

__all__ = ["pg_url", "redis_url"]  # fixtures, used by name

LOGIN = "/v1/api/auth/login"


async def refused_upgrade(host: ServeProcess, room_id: int, token: str) -> bytes:
    with pytest.raises(InvalidStatus) as refused:
        async with ws(host, room_id, token):
            pass
    assert refused.value.response.status_code == 429
    return refused.value.response.body


async def send(sock: ClientConnection, text: str) -> None:
    await sock.send(json.dumps({"chatMessage": text}))


async def sees(sock: ClientConnection, text: str) -> None:
    """Skip the room's other messages until `text` arrives."""
    while (await collect(sock, 1))[0]["chatMessage"] != text:
        pass


async def test_connection_cap_and_rates_are_shared(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    # Through the serve flags (their env names are covered by the e2e tests).
    limits = ("--user-connections", "2", "--login-ip-rate", "3")
    limits += ("--user-rate", "0.01", "--user-burst", "3")
    a, b = await start_hosts(processes, tmp_path, pg_url, redis_url, limits, limits)
    _, token = await signup(a.base, "capped")
    _, other = await signup(b.base, "uncapped")
    room_id = await create_room(a.base, token)
    async with ws(a, room_id, token) as on_a, ws(b, room_id, token) as on_b:
        for host in (a, b):
            assert b"limit 2" in await refused_upgrade(host, room_id, token)
        async with ws(b, room_id, other):  # someone else is not affected
            pass
        # Three messages of the user's burst spent on two hosts: the fourth is refused.
        for sock, text in ((on_a, "one"), (on_b, "two"), (on_a, "three")):
            await send(sock, text)
            await sees(sock, text)
        await send(on_b, "four")
        error = await recv_event(on_b, "error")
        assert error["Body"]["code"] == "rate_limited"
        assert "across all connections" in error["Body"]["chatMessage"]

    statuses = []
    for host in (a, b, a, b):
        async with httpx.AsyncClient(base_url=host.base, timeout=TIMEOUT) as http:
            res = await http.post(
                LOGIN, json={"email": f"nobody{len(statuses)}@example.com", "password": "p"}
            )
            statuses.append(res.status_code)
    assert statuses == [401, 401, 401, 429]


async def test_redis_away_counts_per_process_and_refuses_nobody(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, private_redis: PrivateRedis
) -> None:
    limits = ("--user-connections", "2", "--login-ip-rate", "100")
    (host,) = await start_hosts(processes, tmp_path, pg_url, private_redis.url, limits)
    _, token = await signup(host.base, "ann")
    room_id = await create_room(host.base, token)
    await private_redis.kill()
    async with httpx.AsyncClient(base_url=host.base, timeout=TIMEOUT) as http:
        res = await http.post(LOGIN, json={"email": "ann@example.com", "password": "password1"})
        assert res.status_code == 200, res.text
        res = await http.post(LOGIN, json={"email": "ann@example.com", "password": "wrong-one"})
        assert res.status_code == 401, res.text
        res = await http.post(
            "/v1/api/auth/signup",
            json={"user_name": "bob", "email": "bob@example.com", "password": "password1"},
        )
        assert res.status_code == 200, res.text
    # Sockets open and messages flow; the cap still holds, counted by this process.
    async with ws(host, room_id, token) as sock, ws(host, room_id, token):
        await send(sock, "during the outage")
        assert [m["chatMessage"] for m in await collect(sock, 1)] == ["during the outage"]
        assert b"limit 2" in await refused_upgrade(host, room_id, token)
    log = host.output()
    assert log.count("abuse limits are counted per process") == 1, log  # once per outage
    assert "Traceback" not in log, log
