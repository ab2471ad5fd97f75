"""Ending a session on one host ends it on every host within 2 s (SPEC section 11).

Two real `serve` processes (one of them with two workers) share PostgreSQL and
Redis; a session ended through one host closes its sockets on the others with
1008 and its token is refused there at once: the other hosts' caches heard
the revocation through Redis.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from ..conftest import TIMEOUT, PrivateRedis, auth, close_code, eventually
from .conftest import ServeProcess
from .test_scaleout import create_room, pg_url, redis_url, signup, start_hosts, ws

__all__ = ["pg_url", "redis_url"]  # fixtures, used by name

PROPAGATION = 2.0  # seconds: the SPEC's bound


async def login(base: str, email: str, password: str = "password1") -> str:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        res = await http.post("/v1/api/auth/login", json={"email": email, "password": password})
        assert res.status_code == 200, res.text
        return str(res.json()["token"])


async def status(base: str, token: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        return (await http.get("/v1/api/chat/rooms", headers=auth(token))).status_code


async def post(base: str, path: str, token: str, body: dict[str, str] | None = None) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        return (await http.post(path, json=body, headers=auth(token))).status_code


async def upgrade_refused(host: ServeProcess, room_id: int, token: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with ws(host, room_id, token):
            pass
    return refused.value.response.status_code


async def test_logout_and_password_change_reach_every_host(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    a, b = await start_hosts(processes, tmp_path, pg_url, redis_url, (), ("--workers", "2"))
    user, first = await signup(a.base, "roaming")
    second = await login(b.base, user["Email"])
    third = await login(b.base, user["Email"])
    room_id = await create_room(a.base, first)
    # Every host (and both of b's workers) has checked and cached the sessions.
    for token in (first, second, third):
        for host in (a, b, b):
            assert await status(host.base, token) == 200

    # Logout through host a: the session's socket on host b closes within 2 s.
    async with ws(b, room_id, first) as on_b, ws(b, room_id, second) as kept:
        started = time.monotonic()
        assert await post(a.base, "/v1/api/auth/logout", first) == 204
        assert await close_code(on_b) == 1008
        assert time.monotonic() - started < PROPAGATION
        assert on_b.close_reason == "session ended"
        for host in (a, b, b):
            assert await status(host.base, first) == 401
        assert await upgrade_refused(b, room_id, first) == 401
        # The other session of the same user is untouched.
        await kept.send('{"chatMessage": "still on"}')
        assert await status(b.base, second) == 200

    # A password change through host b ends the other sessions on host a.
    async with ws(a, room_id, second) as on_a:
        started = time.monotonic()
        body = {"oldPassword": "password1", "newPassword": "another password"}
        assert await post(b.base, "/v1/api/auth/password", third, body) == 204
        assert await close_code(on_a) == 1008
        assert time.monotonic() - started < PROPAGATION
    for host in (a, b, b):
        assert await status(host.base, second) == 401
        assert await status(host.base, third) == 200

    # Logout-all through host a: host b refuses the last one too.
    async with ws(b, room_id, third) as last:
        assert await post(a.base, "/v1/api/auth/logout-all", third) == 204
        assert await close_code(last) == 1008
    assert await status(b.base, third) == 401
    assert await upgrade_refused(a, room_id, third) == 401


async def test_with_redis_down_other_hosts_notice_within_the_recheck_bound(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, private_redis: PrivateRedis
) -> None:
    """No announcement can cross: host b re-reads sessions every CHATROOM_SESSION_RECHECK."""
    recheck = 1.0
    a, b = await start_hosts(
        processes,
        tmp_path,
        pg_url,
        private_redis.url,
        (),
        (),
        env={"CHATROOM_SESSION_RECHECK": str(recheck)},
    )
    user, token = await signup(a.base, "offline")
    room_id = await create_room(a.base, token)
    assert await status(b.base, token) == 200  # cached on b
    async with ws(b, room_id, token) as on_b:
        await private_redis.kill()

        async def b_unready() -> bool:
            async with httpx.AsyncClient(base_url=b.base, timeout=TIMEOUT) as http:
                return (await http.get("/readyz")).status_code == 503

        await eventually(b_unready, "host b reports Redis down", timeout=15, interval=0.1)
        started = time.monotonic()
        assert await post(a.base, "/v1/api/auth/logout", token) == 204
        # Open sockets on b are re-checked against the database every `recheck` s.
        assert await close_code(on_b, timeout=recheck * 5) == 1008
        assert time.monotonic() - started < recheck * 5
    assert await status(b.base, token) == 401
