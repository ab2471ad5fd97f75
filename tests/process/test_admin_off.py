"""`set-admin --off` reaches open sockets within 2 s (SPEC 10, issue 13).

A site admin who is no member of a private or direct room may still open its
websocket. Taking the right away with the real CLI closes those sockets (1008, "no
longer a site admin") within 2 s of the command's exit; their sockets to a public
room and to a private room they are a member of stay open and keep talking. Without
Redis a single server on SQLite notices through the accounts mark it polls; with
Redis two hosts on PostgreSQL hear the CLI's announcement as well.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from ..conftest import TIMEOUT, recv_event, recv_json
from .conftest import ServeProcess
from .test_admin_cli import cli
from .test_moderation_hosts import Client, closed_within, joined, new_room
from .test_scaleout import pg_url, redis_url, signup, start_hosts, ws
from .test_sessions_hosts import upgrade_refused

__all__ = ["pg_url", "redis_url"]  # fixtures, used by name

PROPAGATION = 2.0  # seconds: the SPEC's bound
REASON = "no longer a site admin"


async def talks(sock: Any) -> None:
    """The socket is open both ways: a message sent on it comes back on it."""
    text = f"still here {uuid.uuid4().hex[:6]}"
    await sock.send(json.dumps({"chatMessage": text}))
    while True:
        frame = await recv_json(sock)
        if frame["Event"] == "message" and frame["Body"]["chatMessage"] == text:
            return


async def admin_off_scenario(
    hosts: tuple[ServeProcess, ServeProcess],
    db: str,
    env: dict[str, str] | None = None,
) -> int:
    """The admin's unseen rooms on hosts[1], the rooms they keep on hosts[0] (one host
    may be both). Returns the admin's ID."""
    first, second = hosts
    owner = Client(first, *await signup(first.base, "olive"))
    friend = Client(first, *await signup(first.base, "fred"))
    admin = Client(first, *await signup(first.base, "zoe"))
    code, out, err = await cli("set-admin", "zoe", "--database-url", db, env=env)
    assert code == 0 and "now a site admin" in out, err

    secret = await new_room(owner, "private")
    club = await new_room(owner, "private", admin)  # a member there: stays
    lobby = await new_room(owner, "public")
    direct = int((await owner.ok("POST", "/direct", {"userId": friend.id}))["chatRoom"]["ID"])
    for rid in (secret, direct):  # an admin sees them
        assert (await admin.call("GET", f"/rooms/{rid}")).status_code == 200

    async with (
        ws(second, secret, admin.token) as on_secret,
        ws(second, direct, admin.token) as on_direct,
        ws(first, club, admin.token) as on_club,
        ws(first, lobby, admin.token) as on_lobby,
    ):
        for sock in (on_secret, on_direct, on_club, on_lobby):
            await recv_event(sock, "join")  # the user's first socket in each room
        for rid in (secret, direct, club, lobby):
            await joined(owner, rid, admin)  # in the hub of their host, not only upgraded
        await talks(on_secret)  # reads what is said there, before

        code, out, err = await cli("set-admin", "zoe", "--off", "--database-url", db, env=env)
        started = time.monotonic()  # committed by now (the CLI's start-up is not counted)
        assert code == 0 and err == "", err
        assert out == f"The user {admin.id} (zoe) is no longer a site admin.\n"
        closed = await asyncio.gather(
            closed_within(on_secret, PROPAGATION + 1), closed_within(on_direct, PROPAGATION + 1)
        )
        elapsed = time.monotonic() - started
        assert closed == [(1008, REASON), (1008, REASON)]
        assert elapsed < PROPAGATION, f"closed after {elapsed:.2f} s"
        # The public room and the one they are a member of go on, both ways.
        await talks(on_lobby)
        await talks(on_club)

    # No answer cached anywhere: the rooms are gone for them on every host at once.
    for host in {first.port: first, second.port: second}.values():
        for rid in (secret, direct):
            assert (await admin.on(host).call("GET", f"/rooms/{rid}")).status_code == 404
            assert await upgrade_refused(host, rid, admin.token) == 404
        listed = (await admin.on(host).ok("GET", "/rooms"))["chatRooms"]
        assert {int(r["ID"]) for r in listed} >= {club, lobby}
        assert not {int(r["ID"]) for r in listed} & {secret, direct}
    return admin.id


async def test_admin_off_closes_unseen_rooms_on_one_server_without_redis(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    """The server cannot hear the CLI: it notices through the database (the accounts mark)."""
    url = f"sqlite://{tmp_path / 'admin-off.sqlite3'}"
    host = ServeProcess(url, tmp_path)  # the defaults: nothing made faster for the test
    processes.append(host)
    await host.ready()
    await admin_off_scenario((host, host), url)


async def test_admin_off_reaches_every_host_through_redis(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    """Two hosts share PostgreSQL and Redis (the second with two workers): the CLI
    announces the change in the control room, and both hosts act on it."""
    from redis.asyncio import Redis

    prefix = f"test-{uuid.uuid4().hex}"
    env = {"CHATROOM_REDIS_PREFIX": prefix}
    a, b = await start_hosts(
        processes, tmp_path, pg_url, redis_url, (), ("--workers", "2"), env=env
    )
    listener = Redis.from_url(redis_url, decode_responses=True)
    control = listener.pubsub()
    await control.subscribe(f"{prefix}:room:0")  # what the servers hear
    try:
        admin_id = await admin_off_scenario(
            (a, b), pg_url, env={"CHATROOM_REDIS_URL": redis_url, **env}
        )

        async def announced() -> Any:
            while True:  # the subscribe confirmation first (get_message gives None for it)
                message = await control.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None and message["data"].startswith("e "):
                    return message["data"]

        assert await asyncio.wait_for(announced(), TIMEOUT) == f"e admin_off 0 {admin_id} 0.0"
    finally:
        await control.aclose()
        await listener.aclose()
