"""`rotate-secret` (SPEC 14): a new signing key, the old ones kept for a grace period,
picked up by every worker and host within 10 s without a restart.

The CLI runs as a real subprocess against a real database; the servers are the
test's own (in-process) where the point is one server's behaviour, and real
`serve` processes sharing PostgreSQL (with and without Redis) for the hosts.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import InvalidStatus

from ..conftest import (
    TIMEOUT,
    ChatServer,
    auth,
    claims_for,
    close_code,
    eventually,
    free_port,
    recv_event,
)
from .conftest import ServeProcess
from .test_admin_cli import cli, one_line_error
from .test_scaleout import pg_url, redis_url, start_hosts, ws
from .test_sessions_hosts import upgrade_refused

__all__ = ["pg_url", "redis_url"]  # fixtures, used by name

PICKUP = 10.0  # seconds: the SPEC's bound for every worker and host
LINE = re.compile(
    r"New signing key (?P<kid>[0-9a-f]{16}): tokens signed with the previous keys stop "
    r"working at (?P<ends>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) \(in (?P<grace>\d+) s\)\.\n"
)
SECRET = "an-environment-secret-0123456789"


def kid_of(token: str) -> str | None:
    kid = jwt.get_unverified_header(token).get("kid")
    return None if kid is None else str(kid)


async def rotate(database_url: str, *flags: str, env: dict[str, str] | None = None) -> Any:
    """Run rotate-secret; return (new kid, when the old keys end, as unix seconds)."""
    code, out, err = await cli("rotate-secret", "--database-url", database_url, *flags, env=env)
    assert code == 0 and err == "", (code, out, err)
    line = LINE.fullmatch(out)
    assert line is not None, out
    ends = datetime.strptime(line["ends"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return line["kid"], ends.timestamp()


async def login(base: str, email: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        res = await http.post("/v1/api/auth/login", json={"email": email, "password": "password1"})
        assert res.status_code == 200, res.text
        return str(res.json()["token"])


async def status(base: str, token: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        return (await http.get("/v1/api/chat/rooms", headers=auth(token))).status_code


async def signs_with(base: str, email: str, kid: str, logins: int = 1) -> str:
    """Wait (at most the SPEC's bound) until `logins` logins in a row at `base` (several,
    to reach each of its workers) get tokens with `kid`; return the last token."""
    token = ""

    async def all_new() -> bool:
        nonlocal token
        for _ in range(logins):
            token = await login(base, email)
            if kid_of(token) != kid:
                return False
        return True

    await eventually(all_new, f"logins at {base} signed with {kid}", PICKUP, interval=0.05)
    return token


# ---------------------------------------------------------------- one server


async def test_old_tokens_work_for_the_grace_then_get_401_and_their_sockets_close(
    server: ChatServer, database_url: str
) -> None:
    user, old = await server.signup("alice")
    room_id = (await server.create_room(old))["ID"]
    assert kid_of(old) is None  # before any rotation: signed as before keys had IDs
    async with server.connect(room_id, old) as sock:
        await recv_event(sock, "join")
        kid, ends = await rotate(database_url, "--grace", "6")
        fresh = await signs_with(server.base, user["Email"], kid)
        # During the grace the old token works on REST and opens sockets; so does the new.
        assert time.time() < ends - 1, "the grace ended before the test could use it"
        assert await status(server.base, old) == 200
        assert await status(server.base, fresh) == 200
        async with server.connect(room_id, old) as second:
            await second.send(json.dumps({"chatMessage": "during the grace"}))
            assert (await recv_event(second, "message"))["Body"][
                "chatMessage"
            ] == "during the grace"
            # When the grace ends, the sockets the old key's token opened close (1008).
            assert await close_code(sock, timeout=ends - time.time() + 5) == 1008
            assert time.time() >= ends - 0.5  # not before
            assert sock.close_reason == "signing key retired"
            assert await close_code(second) == 1008
    assert await status(server.base, old) == 401
    with pytest.raises(InvalidStatus) as refused:
        async with server.connect(room_id, old):
            pass
    assert refused.value.response.status_code == 401
    assert await status(server.base, fresh) == 200
    async with server.connect(room_id, fresh) as sock:
        await recv_event(sock, "join")


class TestEnvironmentSecret:
    """CHATROOM_JWT_SECRET set: it is the legacy key, retired by the first rotation."""

    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"jwt_secret": SECRET}

    async def test_rotations_retire_the_environment_secret_and_earlier_keys(
        self, server: ChatServer, database_url: str
    ) -> None:
        user, _ = await server.signup("bob")
        handmade = jwt.encode(claims_for(user), SECRET, algorithm="HS256")
        assert await status(server.base, handmade) == 200
        env = {"CHATROOM_JWT_SECRET": SECRET}  # the CLI does not refuse: it needs no secret

        first, _ = await rotate(database_url, "--grace", "0", env=env)
        k1 = await signs_with(server.base, user["Email"], first)
        assert await status(server.base, handmade) == 401  # its end was the rotation
        assert await status(server.base, k1) == 200

        second, _ = await rotate(database_url, "--grace", "3600")
        k2 = await signs_with(server.base, user["Email"], second)
        assert await status(server.base, k1) == 200  # in its grace
        # A rotation with a shorter grace ends the earlier keys sooner: at once here.
        third, _ = await rotate(database_url, "--grace", "0")
        k3 = await signs_with(server.base, user["Email"], third)
        assert [await status(server.base, t) for t in (handmade, k1, k2, k3)] == [
            401,
            401,
            401,
            200,
        ]


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
async def test_with_redis_the_announcement_alone_brings_the_new_key(
    server: ChatServer, database_url: str
) -> None:
    """The poll stopped: only the CLI's announcement through Redis can bring the key."""
    await server.app.ctx.keys.stop()
    user, _ = await server.signup("carol")
    settings = server.app.ctx.settings
    assert settings.redis_url is not None
    env = {"CHATROOM_REDIS_URL": settings.redis_url, "CHATROOM_REDIS_PREFIX": settings.redis_prefix}
    kid, _ = await rotate(database_url, env=env)
    token = await signs_with(server.base, user["Email"], kid)
    assert await status(server.base, token) == 200


async def test_a_key_this_host_has_not_read_yet_is_read_once_not_refused(
    server: ChatServer, database_url: str
) -> None:
    """Another host signs with the new key as soon as it has read it; this one, whose
    poll has not come round yet (stopped here, and no Redis), reads the keys once on
    seeing the unknown kid instead of answering 401. A kid no rotation made stays 401."""
    from chatroom_server.db.models import SigningKeyRow

    await server.app.ctx.keys.stop()
    _, token = await server.signup("dave")
    kid, _ = await rotate(database_url)
    assert server.app.ctx.tokens.ring.get(kid) is None  # not read yet
    secret = (await SigningKeyRow.get(kid=kid)).secret
    claims = jwt.decode(token, options={"verify_signature": False})
    # What a host that already reads the new key hands out for the same session.
    elsewhere = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
    assert await status(server.base, elsewhere) == 200
    assert server.app.ctx.tokens.ring.get(kid) is not None
    forged = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "f" * 16})
    assert await status(server.base, forged) == 401


# ---------------------------------------------------------------- the command itself


async def test_the_command_prints_one_line_and_never_a_secret(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'keys.sqlite3'}"
    code, _, err = await cli("migrate", "--database-url", url)
    assert code == 0, err
    # The default grace is the token lifetime.
    kid, ends = await rotate(url, env={"CHATROOM_TOKEN_TTL": "1234"})
    assert abs(ends - (time.time() + 1234)) < 30
    code, out, err = await cli("rotate-secret", "--database-url", url, "--grace", "60")
    line = LINE.fullmatch(out)
    assert code == 0 and line is not None and line["grace"] == "60", (out, err)
    with sqlite3.connect(tmp_path / "keys.sqlite3") as db:
        rows = db.execute("SELECT kid, secret, retires_at FROM signing_keys").fetchall()
    secrets = [secret for _, secret, _ in rows if secret]
    assert len(secrets) == 2 and all(len(s) >= 32 for s in secrets)
    assert not any(s in out + err for s in secrets)
    assert sorted(k for k, _, _ in rows) == sorted(["legacy", kid, line["kid"]])
    # One current key (no end): the newest; the first and the legacy one retiring.
    assert [k for k, _, ends in rows if ends is None] == [line["kid"]]

    # Redis away: the key is in the database all the same; one warning, exit 0.
    dead = f"redis://127.0.0.1:{free_port()}/0"
    code, out, err = await cli(
        "rotate-secret", "--database-url", url, "--redis-url", dead, "--grace", "5"
    )
    assert code == 0 and LINE.fullmatch(out), (out, err)
    assert err.count("\n") == 1 and err.startswith("Warning: could not tell the servers"), err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--grace", "-1"), "--grace"),
        (("--grace", "soon"), "--grace"),
        (("--grace", str(400 * 86400)), "--grace"),
    ],
)
async def test_bad_grace_is_one_line(tmp_path: Path, flags: tuple[str, ...], expected: str) -> None:
    url = f"sqlite://{tmp_path / 'g.sqlite3'}"
    one_line_error(*await cli("rotate-secret", "--database-url", url, *flags), expected)


async def test_an_unmigrated_database_is_refused_with_one_line(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'empty.sqlite3'}"
    one_line_error(*await cli("rotate-secret", "--database-url", url), "chatroom-server migrate")


async def test_help_names_the_environment_variables() -> None:
    code, out, _ = await cli("rotate-secret", "--help")
    assert code == 0
    for name in ("CHATROOM_TOKEN_TTL", "CHATROOM_DATABASE_URL", "CHATROOM_REDIS_URL"):
        assert name in out


# ---------------------------------------------------------------- every host


async def test_every_host_and_worker_takes_the_new_key_through_redis(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    a, b = await start_hosts(
        processes,
        tmp_path,
        pg_url,
        redis_url,
        (),
        ("--workers", "2"),
        env={"CHATROOM_REDIS_PREFIX": prefix},
    )
    async with httpx.AsyncClient(base_url=a.base, timeout=TIMEOUT) as http:
        res = await http.post(
            "/v1/api/auth/signup",
            json={"user_name": "dora", "email": "dora@example.com", "password": "password1"},
        )
        old = res.json()["token"]
        room = await http.post("/v1/api/chat/create", json={"name": "r"}, headers=auth(old))
        room_id = int(room.json()["chatRoom"]["ID"])
    async with ws(b, room_id, old) as on_b:
        await recv_event(on_b, "join")
        env = {"CHATROOM_REDIS_URL": redis_url, "CHATROOM_REDIS_PREFIX": prefix}
        kid, ends = await rotate(pg_url, "--grace", "8", env=env)
        started = time.monotonic()
        from_a = await signs_with(a.base, "dora@example.com", kid)
        from_b = await signs_with(b.base, "dora@example.com", kid, logins=6)
        assert time.monotonic() - started < PICKUP
        for host in (a, b):  # each host takes the other's new tokens, and the old one
            for token in (from_a, from_b, old):
                assert await status(host.base, token) == 200
        assert await close_code(on_b, timeout=ends - time.time() + 5) == 1008
        assert on_b.close_reason == "signing key retired"
    for host in (a, b):
        assert await status(host.base, old) == 401
        assert await upgrade_refused(host, room_id, old) == 401
        assert await status(host.base, from_b) == 200


async def test_without_redis_every_host_polls_the_new_key_within_10s(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str
) -> None:
    a = ServeProcess(pg_url, tmp_path)  # the defaults: nothing made faster for the test
    processes.append(a)
    await a.ready()
    b = ServeProcess(pg_url, tmp_path, "--no-migrate")
    processes.append(b)
    await b.ready()
    async with httpx.AsyncClient(base_url=a.base, timeout=TIMEOUT) as http:
        res = await http.post(
            "/v1/api/auth/signup",
            json={"user_name": "eve", "email": "eve@example.com", "password": "password1"},
        )
        old = res.json()["token"]
    kid, _ = await rotate(pg_url, "--grace", "600")
    started = time.monotonic()
    from_a = await signs_with(a.base, "eve@example.com", kid)
    from_b = await signs_with(b.base, "eve@example.com", kid)
    assert time.monotonic() - started < PICKUP
    for host in (a, b):
        for token in (from_a, from_b, old):
            assert await status(host.base, token) == 200
