"""Redis with a password (--requirepass) and over TLS (rediss://): two `serve` hosts chat
through it, report ready, and never show the password; a wrong one is a 503 and one
clear log line."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ..conftest import (
    TIMEOUT,
    PrivateRedis,
    auth,
    eventually,
    fresh_pg_database,
    recv_json,
    service_missing,
)
from .conftest import ServeProcess
from .test_scaleout import POLL, WAIT, create_room, signup, ws

PASSWORD = "redis-pw-" + uuid.uuid4().hex[:12]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_pg_database("redisauth") as url:
        yield url


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (the cert is its own CA)."""
    if shutil.which("openssl") is None:
        service_missing("openssl (to make the test's certificate)")
    cert, key = tmp_path / "redis.crt", tmp_path / "redis.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


async def redis_with(password: str, tls: tuple[Path, Path] | None = None) -> PrivateRedis:
    if shutil.which("redis-server") is None:
        service_missing("redis-server (the executable)")
    server = PrivateRedis(password=password, tls=tls)
    await server.start()
    return server


async def start_host(
    processes: list[ServeProcess], tmp_path: Path, db: str, redis_url: str, *extra: str
) -> ServeProcess:
    env = {"CHATROOM_REDIS_PREFIX": "auth-test", "CHATROOM_JWT_SECRET": ""}
    host = ServeProcess(db, tmp_path, "--redis-url", redis_url, *extra, env=env)
    processes.append(host)
    await host.ready()
    return host


async def readyz(host: ServeProcess) -> httpx.Response:
    async with httpx.AsyncClient(base_url=host.base, timeout=TIMEOUT) as http:
        return await http.get("/readyz")


async def chat_across(a: ServeProcess, b: ServeProcess) -> None:
    """A message sent on host A reaches a socket on host B (through Redis)."""
    user_a, token_a = await signup(a.base, f"a{uuid.uuid4().hex[:6]}")
    _, token_b = await signup(b.base, f"b{uuid.uuid4().hex[:6]}")
    room = await create_room(a.base, token_a)
    async with ws(b, room, token_b) as listener, ws(a, room, token_a) as sender:
        # A's join reaching B: B listens on the room, through Redis.
        while True:
            frame = await recv_json(listener, timeout=WAIT)
            if frame["Event"] == "join" and frame["Body"]["user"]["ID"] == user_a["ID"]:
                break

        async def both_present() -> bool:
            async with httpx.AsyncClient(base_url=a.base, timeout=TIMEOUT) as http:
                url = f"/v1/api/chat/rooms/{room}/presence"
                res = await http.get(url, headers=auth(token_a))
                return bool(res.json()["connections"] == 2)

        await eventually(both_present, "presence of both hosts in Redis", WAIT, POLL)
        await sender.send(json.dumps({"chatMessage": "through redis"}))
        while (frame := await recv_json(listener, timeout=WAIT))["Event"] != "message":
            pass
        assert frame["Body"]["chatMessage"] == "through redis"


async def test_a_password_protected_redis(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str
) -> None:
    redis = await redis_with(PASSWORD)
    try:
        a = await start_host(processes, tmp_path, pg_url, redis.url)
        b = await start_host(processes, tmp_path, pg_url, redis.url, "--no-migrate")
        for host in (a, b):
            assert (await readyz(host)).status_code == 200
        await chat_across(a, b)

        wrong = redis.url.replace(PASSWORD, "not-the-password")
        c = await start_host(processes, tmp_path, pg_url, wrong, "--no-migrate")
        res = await readyz(c)
        assert res.status_code == 503 and res.json()["failing"] == ["redis"]
        output = c.output()
        lines = [line for line in output.splitlines() if "Redis pub/sub is unreachable" in line]
        assert lines, output
        assert "invalid username-password pair" in lines[0]  # says what is wrong
        assert "Traceback" not in output
        for host in (a, b):
            assert PASSWORD not in host.output()
        assert "not-the-password" not in output
    finally:
        await redis.kill()


async def test_redis_over_tls_with_a_password(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, tls_files: tuple[Path, Path]
) -> None:
    redis = await redis_with(PASSWORD, tls_files)
    try:
        assert redis.url.startswith("rediss://")
        a = await start_host(processes, tmp_path, pg_url, redis.url)
        b = await start_host(processes, tmp_path, pg_url, redis.url, "--no-migrate")
        for host in (a, b):
            assert (await readyz(host)).status_code == 200
        await chat_across(a, b)
        # The plain protocol on the TLS port gets nowhere: TLS is really in use.
        plain = redis.url.replace("rediss://", "redis://").split("?")[0]
        c = await start_host(processes, tmp_path, pg_url, plain, "--no-migrate")
        assert (await readyz(c)).status_code == 503
        for host in (a, b, c):
            assert PASSWORD not in host.output()
    finally:
        await redis.kill()
