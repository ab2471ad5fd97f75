"""Site administration (SPEC 10): the real CLI as a subprocess against a real database.

The commands' answers and errors are checked against a server of the test's own
(signups, logins and tokens as a client sees them); where the live effect is the
point, the server is a real `serve` process: without Redis a single one on SQLite,
which hears nothing from the CLI and must notice through the database; with
Redis two hosts sharing PostgreSQL, which hear the CLI's announcement.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chatroom_server.names import name_key

from ..conftest import TIMEOUT, ChatServer, auth, close_code, eventually, recv_event
from .conftest import ServeProcess
from .test_scaleout import pg_url, presence, redis_url, start_hosts
from .test_serve_process import user_and_room
from .test_sessions_hosts import upgrade_refused

__all__ = ["pg_url", "redis_url"]  # fixtures, used by name

PROPAGATION = 2.0  # seconds: the SPEC's bound for deactivate-user on every host
PASSWORD = "password1"


async def cli(*args: str, stdin: bytes | None = b"", env: dict[str, str] | None = None) -> Any:
    """Run `python -m chatroom_server ARGS` (not blocking the test's own server)."""
    environ = {**os.environ, "CHATROOM_BCRYPT_ROUNDS": "4", **(env or {})}
    for name in ("CHATROOM_REDIS_URL", "CHATROOM_DATABASE_URL"):
        if env is None or name not in env:
            environ.pop(name, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatroom_server",
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode, out.decode(), err.decode()


def one_line_error(code: int, out: str, err: str, expected: str) -> None:
    assert code == 1, (code, out, err)
    assert err.count("\n") == 1 and err.startswith("Error: "), err
    assert expected in err, err
    assert "Traceback" not in out + err


async def rest_status(server: ChatServer, token: str) -> int:
    return (await server.http.get("/v1/api/chat/rooms", headers=auth(token))).status_code


async def login(server: ChatServer, email: str, password: str = PASSWORD) -> int:
    res = await server.http.post("/v1/api/auth/login", json={"email": email, "password": password})
    return res.status_code


async def refused(server: ChatServer, token: str) -> None:
    """Wait (at most the SPEC's bound) until the server refuses the token."""

    async def is_refused() -> bool:
        return await rest_status(server, token) == 401

    await eventually(is_refused, "the token to be refused", timeout=PROPAGATION, interval=0.05)


# ---------------------------------------------------------------- the commands


async def test_list_users_shows_admin_and_deactivated_columns(
    server: ChatServer, database_url: str
) -> None:
    db = ("--database-url", database_url)
    code, out, err = await cli("list-users", *db)
    assert (code, out, err) == (0, "No users.\n", "")
    alice, _ = await server.signup("alice")
    bob, _ = await server.signup("bob")
    code, out, _ = await cli("list-users", *db)
    assert code == 0
    assert out.splitlines() == [
        f"{alice['ID']}\talice\t{alice['Email']}\t-\t-",
        f"{bob['ID']}\tbob\t{bob['Email']}\t-\t-",
    ]
    assert (await cli("set-admin", "alice", *db))[0] == 0
    assert (await cli("deactivate-user", "bob", *db))[0] == 0
    code, out, _ = await cli("list-users", *db)
    first, second = (line.split("\t") for line in out.splitlines())
    assert first == [str(alice["ID"]), "alice", alice["Email"], "admin", "-"]
    assert second[:4] == [str(bob["ID"]), "bob", bob["Email"], "-"]
    assert second[4].endswith("Z") and second[4].startswith("20")


async def test_deactivate_refuses_every_token_and_reactivate_lets_the_user_back(
    server: ChatServer, database_url: str
) -> None:
    db = ("--database-url", database_url)
    alice, token = await server.signup("alice")
    bob, bob_token = await server.signup("bob")
    second = (
        await server.http.post(
            "/v1/api/auth/login", json={"email": alice["Email"], "password": PASSWORD}
        )
    ).json()["token"]
    assert await rest_status(server, token) == 200  # the session is cached now

    code, out, err = await cli("deactivate-user", "alice", *db)
    assert code == 0 and err == "", err
    assert (
        out
        == f"Deactivated user {alice['ID']} (alice): their tokens are refused and sessions ended.\n"
    )
    await refused(server, token)
    assert await rest_status(server, second) == 401
    assert await login(server, alice["Email"]) == 401
    assert await rest_status(server, bob_token) == 200  # nobody else

    code, out, _ = await cli("deactivate-user", str(alice["ID"]), *db)
    assert code == 0 and "already deactivated" in out

    code, out, _ = await cli("reactivate-user", "ALICE", *db)
    assert code == 0 and out == f"Reactivated user {alice['ID']} (alice): they may log in again.\n"
    assert await login(server, alice["Email"]) == 200
    # The sessions ended at deactivation stay ended: a reactivated user logs in again.
    assert await rest_status(server, token) == 401
    code, out, _ = await cli("reactivate-user", "alice", *db)
    assert code == 0 and "is not deactivated" in out
    assert bob["ID"] != alice["ID"]


async def test_set_admin_and_off(server: ChatServer, database_url: str) -> None:
    db = ("--database-url", database_url)
    carol, _ = await server.signup("carol")
    who = f"user {carol['ID']} (carol)"
    assert await cli("set-admin", "carol", *db) == (0, f"The {who} is now a site admin.\n", "")
    assert await cli("set-admin", "carol", *db) == (0, f"The {who} is already a site admin.\n", "")
    assert await cli("set-admin", str(carol["ID"]), "--off", *db) == (
        0,
        f"The {who} is no longer a site admin.\n",
        "",
    )
    assert await cli("set-admin", "carol", "--off", *db) == (
        0,
        f"The {who} is already not a site admin.\n",
        "",
    )


async def test_reset_password_from_stdin_ends_every_session(
    server: ChatServer, database_url: str
) -> None:
    db = ("--database-url", database_url)
    dave, token = await server.signup("dave")
    assert await rest_status(server, token) == 200
    code, out, err = await cli("reset-password", "dave", *db, stdin=b"a new password\n")
    assert code == 0 and err == "", err
    assert out == f"Set a new password for user {dave['ID']} (dave) and ended their sessions.\n"
    await refused(server, token)
    assert await login(server, dave["Email"]) == 401
    assert await login(server, dave["Email"], "a new password") == 200
    # Only the line ending is taken off: spaces are part of the password.
    assert (await cli("reset-password", "dave", *db, stdin=b"  spaced out  \r\n"))[0] == 0
    assert await login(server, dave["Email"], "  spaced out  ") == 200


async def test_reset_password_errors(server: ChatServer, database_url: str) -> None:
    db = ("--database-url", database_url)
    erin, _ = await server.signup("erin")
    cases: list[tuple[tuple[str, ...], bytes, str]] = [
        (("erin",), b"short\n", "Invalid password: must be 8 to 72 bytes long"),
        (("erin",), ("é" * 37 + "\n").encode(), "Invalid password: must be 8 to 72 bytes long"),
        (("erin",), b"", "No password on stdin"),
        (("erin",), b"\n", "The password on stdin is empty"),
        (("erin",), b"\xff\xfe password\n", "not valid UTF-8"),
        (("nobody",), b"a good password\n", 'User "nobody" does not exist.'),
        (("erin", "hunter2-secret"), b"a good password\n", "never taken from the command line"),
        (
            ("erin", "--password", "hunter2-secret"),
            b"a good password\n",
            "never taken from the command line",
        ),
    ]
    for args, stdin, expected in cases:
        code, out, err = await cli("reset-password", *args, *db, stdin=stdin)
        one_line_error(code, out, err, expected)
        assert "hunter2-secret" not in out + err  # a mistyped password is never echoed
    # Nothing changed: the old password still works.
    assert await login(server, erin["Email"]) == 200


async def test_user_lookup_and_its_errors(server: ChatServer, database_url: str) -> None:
    db = ("--database-url", database_url)
    alice, _ = await server.signup("alice")
    # A number is an ID; a name matches exactly, else as signup compares names.
    for ref in (str(alice["ID"]), "alice", "ALICE", "ａｌｉｃｅ", "\u0430lice"):
        code, out, err = await cli("set-admin", ref, *db)
        assert code == 0 and f"user {alice['ID']} (alice)" in out, (ref, err)
    cases = [
        (("set-admin", "0"), "Invalid user ID 0"),
        (("set-admin", "9" * 20), "Invalid user ID"),
        (("set-admin", "424242"), "User 424242 does not exist."),
        (("deactivate-user", "zed"), 'User "zed" does not exist.'),
        (("reactivate-user", "zed"), 'User "zed" does not exist.'),
        (("set-admin",), "Missing argument 'USER'"),
        (("set-admin", "a", "b"), "unexpected extra argument"),
        (("deactivate-user", "alice", "--bogus"), "No such option '--bogus'"),
    ]
    for args, expected in cases:
        one_line_error(*(await cli(*args, *db)), expected)


async def test_duplicate_names_from_before_0003_ask_for_the_id(tmp_path: Path) -> None:
    """Two users whose names now compare equal (kept by migration 0003): no guessing."""
    path = tmp_path / "legacy.sqlite3"
    url = f"sqlite://{path}"
    assert (await cli("migrate", "--database-url", url))[0] == 0
    with sqlite3.connect(path) as db:
        for user_name, key in (("frank", name_key("frank")), ("Frank", None), ("FRANK", None)):
            db.execute(
                "INSERT INTO users (user_name, name_key, email, password_hash, created_at, "
                "updated_at) VALUES (?, ?, ?, 'h', '2024-01-01', '2024-01-01')",
                (user_name, key, f"{user_name}.{uuid.uuid4().hex[:6]}@example.com"),
            )
    # An exact name is that user; a name that only looks like several is ambiguous.
    code, out, _ = await cli("set-admin", "Frank", "--database-url", url)
    assert code == 0 and "user 2 (Frank)" in out
    code, out, _ = await cli("set-admin", "frank", "--database-url", url)
    assert code == 0 and "user 1 (frank)" in out
    code, out, err = await cli("set-admin", "fRANK", "--database-url", url)
    one_line_error(code, out, err, 'Several users are called "fRANK" (IDs 1, 2, 3)')


async def test_commands_on_a_database_that_does_not_answer() -> None:
    missing = "postgres://postgres:s3cret-pass@127.0.0.1:1/none"
    for args in (("list-users",), ("deactivate-user", "x"), ("set-admin", "x")):
        code, out, err = await cli(*args, "--database-url", missing)
        one_line_error(code, out, err, "Cannot use the database")
        assert "s3cret-pass" not in err


async def test_reset_password_asks_twice_without_echo_on_a_terminal(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'tty.sqlite3'}"
    serve = ServeProcess(url, tmp_path)
    try:
        await serve.ready()
        await user_and_room(serve.base, "gina")
        master, slave = os.openpty()

        env = {**os.environ, "CHATROOM_BCRYPT_ROUNDS": "4"}
        # In a session of its own, the pty becomes the CLI's controlling terminal
        # (getpass talks to /dev/tty), then the CLI replaces the wrapper.
        wrapper = (
            "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
            "os.execv(sys.executable, [sys.executable, '-m', 'chatroom_server', *sys.argv[1:]])"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            wrapper,
            "reset-password",
            "gina",
            "--database-url",
            url,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env=env,
        )
        os.close(slave)
        seen = b""

        async def read_until(text: bytes) -> None:
            nonlocal seen

            async def more() -> None:
                nonlocal seen
                while text not in seen:
                    seen += await asyncio.to_thread(os.read, master, 1024)

            await asyncio.wait_for(more(), TIMEOUT)

        await read_until(b"New password: ")
        os.write(master, b"terminal password\n")
        await read_until(b"Repeat for confirmation: ")
        os.write(master, b"terminal password\n")
        await read_until(b"ended their sessions.")
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
        os.close(master)
        assert b"terminal password" not in seen  # never echoed
        async with httpx.AsyncClient(base_url=serve.base, timeout=TIMEOUT) as http:
            res = await http.post(
                "/v1/api/auth/login",
                json={"email": "gina@example.com", "password": "terminal password"},
            )
            assert res.status_code == 200, res.text
    finally:
        serve.kill()


# ---------------------------------------------------------------- the live effect


async def test_deactivate_closes_sockets_within_2s_on_one_server_without_redis(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    """The server cannot hear the CLI: it notices through the database (the accounts mark)."""
    url = f"sqlite://{tmp_path / 'live.sqlite3'}"
    host = ServeProcess(url, tmp_path)  # the defaults: nothing made faster for the test
    processes.append(host)
    await host.ready()
    token, room_id = await user_and_room(host.base, "henry")
    other, _ = await user_and_room(host.base, "iris")
    ws = f"ws://127.0.0.1:{host.port}/v1/ws?room_id={room_id}&jwt="
    async with connect(ws + token) as sock, connect(ws + other) as bystander:
        await recv_event(sock, "join")
        code, out, err = await cli("deactivate-user", "henry", "--database-url", url)
        assert code == 0, err
        started = time.monotonic()  # committed by now (the CLI's start-up is not counted)
        assert await close_code(sock, timeout=PROPAGATION * 2) == 1008
        assert time.monotonic() - started < PROPAGATION
        assert sock.close_reason == "session ended"
        # Refused on REST and before the upgrade from now on.
        async with httpx.AsyncClient(base_url=host.base, timeout=TIMEOUT) as http:
            assert (await http.get("/v1/api/chat/rooms", headers=auth(token))).status_code == 401
        with pytest.raises(InvalidStatus) as upgrade:
            async with connect(ws + token):
                pass
        assert upgrade.value.response.status_code == 401
        # Everyone else goes on.
        await bystander.send(json.dumps({"chatMessage": "still here"}))
        assert (await recv_event(bystander, "message"))["Body"]["chatMessage"] == "still here"

    # reset-password ends the sessions the same way.
    token, room_id = await user_and_room(host.base, "jack")
    async with connect(f"ws://127.0.0.1:{host.port}/v1/ws?room_id={room_id}&jwt={token}") as sock:
        await recv_event(sock, "join")
        code, _, err = await cli(
            "reset-password", "jack", "--database-url", url, stdin=b"brand new password\n"
        )
        assert code == 0, err
        started = time.monotonic()
        assert await close_code(sock, timeout=PROPAGATION * 2) == 1008
        assert time.monotonic() - started < PROPAGATION


async def test_deactivate_reaches_every_host_through_redis(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    """Two hosts share PostgreSQL and Redis: the CLI's announcement closes both sockets."""
    from redis.asyncio import Redis

    prefix = f"test-{uuid.uuid4().hex}"
    a, b = await start_hosts(
        processes, tmp_path, pg_url, redis_url, (), (), env={"CHATROOM_REDIS_PREFIX": prefix}
    )
    token, room_id = await user_and_room(a.base, "kate")
    listener = Redis.from_url(redis_url, decode_responses=True)
    control = listener.pubsub()
    await control.subscribe(f"{prefix}:room:0")  # what the servers hear
    try:
        async with (
            connect(f"ws://127.0.0.1:{a.port}/v1/ws?room_id={room_id}&jwt={token}") as on_a,
            connect(f"ws://127.0.0.1:{b.port}/v1/ws?room_id={room_id}&jwt={token}") as on_b,
        ):
            await recv_event(on_a, "join")  # the user's first socket; not for the second

            async def both_joined() -> bool:
                return (await presence(a.base, token, room_id))["connections"] == 2

            await eventually(both_joined, "both sockets in the room", interval=0.05)
            code, out, err = await cli(
                "deactivate-user",
                "kate",
                "--database-url",
                pg_url,
                env={"CHATROOM_REDIS_URL": redis_url, "CHATROOM_REDIS_PREFIX": prefix},
            )
            assert code == 0 and err == "", err
            started = time.monotonic()
            assert await close_code(on_a, timeout=PROPAGATION * 2) == 1008
            assert await close_code(on_b, timeout=PROPAGATION * 2) == 1008
            assert time.monotonic() - started < PROPAGATION

        async def announced() -> Any:
            while True:  # the subscribe confirmation first (get_message gives None for it)
                message = await control.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    return message["data"]

        user_id = jwt.decode(token, options={"verify_signature": False})["UserID"]
        assert await asyncio.wait_for(announced(), TIMEOUT) == f"r {user_id} - -"
    finally:
        await control.aclose()
        await listener.aclose()
    for host in (a, b):
        async with httpx.AsyncClient(base_url=host.base, timeout=TIMEOUT) as http:
            assert (await http.get("/v1/api/chat/rooms", headers=auth(token))).status_code == 401
        assert await upgrade_refused(host, room_id, token) == 401
