"""Shared fixtures: a real server on a free port, real HTTP and websocket clients.

Every test that talks to the server runs once on SQLite and once on PostgreSQL.
PostgreSQL tests skip (with the reason) where no server is reachable, unless
CHATROOM_REQUIRE_SERVICES=1, as in CI, where they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Sanic
from websockets.asyncio.client import ClientConnection, connect

from chatroom_server.app import create_app
from chatroom_server.db import apply_migrations, close_database
from chatroom_server.domain import Identity
from chatroom_server.settings import Settings

Sanic.test_mode = True  # several apps per process, one after the other

ROOT = Path(__file__).resolve().parent.parent  # the repository

PG_ADMIN_DSN = os.environ.get("CHATROOM_TEST_PG", "postgres://postgres@127.0.0.1:5432/postgres")
REQUIRE_SERVICES = os.environ.get("CHATROOM_REQUIRE_SERVICES") == "1"
TIMEOUT = 10.0


def service_missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is not reachable and CHATROOM_REQUIRE_SERVICES=1")
    pytest.skip(f"{what} is not reachable on this machine")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run_in_thread(coro: Any) -> Any:
    """Run a coroutine to completion on a loop of its own (callers may be inside a loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """One migrated PostgreSQL database for the whole run, dropped at the end."""
    name = f"chatroom_test_{uuid.uuid4().hex[:12]}"
    try:
        run_in_thread(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, ConnectionError) as exc:
        service_missing(f"PostgreSQL at {PG_ADMIN_DSN} ({exc})")
    url = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    try:
        run_in_thread(apply_migrations(url))
        yield url
    finally:
        run_in_thread(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_reset(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(
            "TRUNCATE messages, sessions, rooms, users, server_secrets, signing_keys "
            "RESTART IDENTITY CASCADE"
        )
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """A migrated database with no rows, for one test."""
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'chat.sqlite3'}"
        await apply_migrations(url)
        yield url
        return
    url = request.getfixturevalue("postgres_database")
    await _pg_reset(url)
    yield url


@contextlib.asynccontextmanager
async def fresh_pg_database(label: str) -> AsyncIterator[str]:
    """An empty PostgreSQL database of its own, dropped afterwards."""
    name = f"chatroom_{label}_{uuid.uuid4().hex[:10]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, ConnectionError) as exc:
        service_missing(f"PostgreSQL at {PG_ADMIN_DSN} ({exc})")
    try:
        yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def claims_for(user: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The claims the server puts in a token for `user`; an override of None drops one."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user["ID"]),
        "UserID": user["ID"],
        "UserName": user["UserName"],
        "Email": user["Email"],
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def identity(user: dict[str, Any]) -> Identity:
    """The identity a token of `user` (as the REST API shows it) carries."""
    return Identity(user["ID"], user["UserName"], user["Email"], int(time.time()) + 3600)


class ChatServer:
    """A running app and helpers to talk to it like a client would."""

    def __init__(self, app: Sanic, port: int) -> None:
        self.app = app
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.AsyncClient(base_url=self.base, timeout=TIMEOUT)
        self._names = iter(range(1, 1_000_000))

    async def signup(self, name: str | None = None) -> tuple[dict[str, Any], str]:
        n = next(self._names)
        name = name or f"user{n}"
        res = await self.http.post(
            "/v1/api/auth/signup",
            json={"user_name": name, "email": f"{name}.{n}@example.com", "password": "password1"},
        )
        assert res.status_code == 200, res.text
        body = res.json()
        return body["user"], body["token"]

    async def create_room(self, token: str, name: str = "general") -> dict[str, Any]:
        res = await self.http.post("/v1/api/chat/create", json={"name": name}, headers=auth(token))
        assert res.status_code == 200, res.text
        return res.json()["chatRoom"]

    def ws_url(self, query: str, path: str = "/v1/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}?{query}"

    def connect(
        self, room_id: int, token: str, path: str = "/v1/ws", query_extra: str = "", **kwargs: Any
    ) -> Any:
        # Unbounded client buffer: a test socket that does not read every frame must
        # still see the close frame when the test leaves it.
        kwargs.setdefault("max_queue", None)
        return connect(self.ws_url(f"room_id={room_id}&jwt={token}{query_extra}", path), **kwargs)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "bcrypt_rounds": 4,
        "room_check_interval": 0.2,
        "jwt_secret": None,
        # Every test of a module talks from 127.0.0.1, often as one user: the
        # abuse limits of SPEC 11 would refuse the suite itself. Their own tests
        # (tests/e2e/test_abuse_limits*.py, tests/process/test_limits_hosts.py) set
        # them, or the real defaults, explicitly.
        "user_connections": 10_000,
        "ip_connections": 100_000,
        "user_rate": 100_000.0,
        "user_burst": 100_000,
        "login_ip_rate": 100_000,
        "signup_ip_rate": 100_000,
        "room_create_rate": 100_000,
    }
    values.update(overrides)
    return Settings.load({}, **values)


async def start_server(settings: Settings) -> tuple[ChatServer, Callable[[], Any]]:
    app = create_app(settings, name=f"chat_{uuid.uuid4().hex[:8]}")
    port = free_port()
    srv = await app.create_server(
        host="127.0.0.1",
        port=port,
        return_asyncio_server=True,
        access_log=False,
        protocol=app.ctx.http_protocol,
    )
    assert srv is not None
    try:
        await srv.startup()
        await srv.before_start()
        await srv.after_start()
    except BaseException:
        # Whatever opened stays closed for the next test (Tortoise allows one global
        # context: one failed start would fail every test after it).
        with contextlib.suppress(Exception):
            await srv.close()
            await srv.after_stop()
        await close_database()
        raise
    server = ChatServer(app, port)

    async def stop() -> None:
        await server.http.aclose()
        await srv.before_stop()
        await srv.close()
        await srv.after_stop()

    return server, stop


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """Override in a test module to change settings of the `server` fixture."""
    return {}


SHARED_REDIS = os.environ.get("CHATROOM_TEST_REDIS", "redis://127.0.0.1:6379/0")


# Every broker backend: the broker contract runs on each, and so does every test that
# starts a server in a module (or class) marked `pytest.mark.every_broker`.
BROKERS = ("memory", "redis")


# The websocket paths (web/internals): through Sanic's internals, and Sanic's public
# API only (CHATROOM_INTERNALS=off), which a release without those internals falls to.
WS_PATHS = ("fast", "public")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "every_broker: run each test that starts a server once per broker (memory, redis)",
    )
    config.addinivalue_line(
        "markers",
        "every_ws_path: run each test that starts a server once per websocket path"
        " (fast: Sanic's internals; public: its public API only)",
    )
    config.addinivalue_line(
        "markers", "fast_ws_path: this test checks the fast path itself (not run on public)"
    )


@pytest.hookimpl(trylast=True)  # after the fixtures' own params: ids stay [sqlite-memory]
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker
    if "broker" in metafunc.fixturenames and marked("every_broker"):
        metafunc.parametrize("broker", BROKERS, indirect=True)
    if (
        "ws_path" in metafunc.fixturenames
        and marked("every_ws_path")
        and not marked("fast_ws_path")
    ):
        metafunc.parametrize("ws_path", WS_PATHS, indirect=True)


@pytest.fixture
def ws_path(request: pytest.FixtureRequest) -> str:
    """Which websocket path the `server` fixture takes: fast, or each of WS_PATHS in turn
    where the test is marked `every_ws_path`."""
    return str(getattr(request, "param", "fast"))


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> str:
    """Which broker the `server` fixture uses: the in-process one, or each of BROKERS in
    turn where the test is marked `every_broker` (`pytestmark = pytest.mark.every_broker`)."""
    return str(getattr(request, "param", "memory"))


async def redis_answers(url: str) -> bool:
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


class PrivateRedis:
    """A redis-server of this test's own, on a free port, that the test may kill.

    With `password`, it requires it (--requirepass); with `tls` (a certificate and
    its key, self-signed: it is also the CA the client trusts), it speaks only TLS.
    """

    def __init__(self, password: str | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.tls = tls
        auth = f":{password}@" if password else ""
        if tls is None:
            self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        else:
            query = f"ssl_cert_reqs=required&ssl_ca_certs={tls[0]}"
            self.url = f"rediss://{auth}127.0.0.1:{self.port}/0?{query}"
        self._proc: asyncio.subprocess.Process | None = None

    def _options(self) -> list[str]:
        options = ["--requirepass", self.password] if self.password else []
        if self.tls is None:
            return [*options, "--port", str(self.port)]
        cert, key = self.tls
        return [
            *options,
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-auth-clients",
            "no",
        ]

    async def start(self, timeout: float = 5.0) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "redis-server",
            *self._options(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not await redis_answers(self.url):
            assert self._proc.returncode is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer PING"
            await asyncio.sleep(0.02)

    async def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        self._proc = None


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    """For Redis fault tests (the broker's, several hosts'): a Redis the test may kill."""
    if shutil.which("redis-server") is None:
        service_missing("redis-server (the executable)")
    server = PrivateRedis()
    try:
        await server.start()
        yield server
    finally:
        await server.kill()


@pytest.fixture
async def broker_settings(broker: str) -> dict[str, Any]:
    if broker == "memory":
        return {}
    if not await redis_answers(SHARED_REDIS):
        service_missing(f"Redis at {SHARED_REDIS}")
    return {"redis_url": SHARED_REDIS, "redis_prefix": f"test-{uuid.uuid4().hex}"}


@pytest.fixture
async def server(
    database_url: str,
    server_settings: dict[str, Any],
    broker_settings: dict[str, Any],
    ws_path: str,
) -> AsyncIterator[ChatServer]:
    internals = {"internals": "off"} if ws_path == "public" else {}
    settings = make_settings(database_url, **{**broker_settings, **internals, **server_settings})
    srv, stop = await start_server(settings)
    try:
        yield srv
    finally:
        await stop()


async def recv_json(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next frame, decoded; fails the test if none comes in time."""
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(raw)  # type: ignore[no-any-return]


async def recv_event(ws: ClientConnection, event: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Skip frames until one of `event` arrives."""

    async def wait() -> dict[str, Any]:
        while True:
            frame = await recv_json(ws, timeout)
            if frame["Event"] == event:
                return frame

    return await asyncio.wait_for(wait(), timeout)


async def close_code(ws: ClientConnection, timeout: float = TIMEOUT) -> int | None:
    """Wait for the server to close the socket; return its close code."""

    async def drain() -> None:
        async for _ in ws:
            pass

    try:
        await asyncio.wait_for(drain(), timeout)
    except Exception:
        pass
    await asyncio.wait_for(ws.wait_closed(), timeout)
    return ws.close_code


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    timeout: float = TIMEOUT,
    interval: float = 0.01,
) -> None:
    """Poll a server-side condition that has no event to wait on, with a deadline.

    `condition` may be a coroutine function (e.g. one asking an HTTP endpoint; poll
    those with a longer `interval`)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(interval)
