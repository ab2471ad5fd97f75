"""`serve --redis-cluster` on a real Redis Cluster (SPEC section 13): two hosts chat
and share presence through it, a room's master fails over and delivery resumes
with nothing lost, and a cluster without the flag (or the flag without a
cluster) is refused at start with one line, or reported by /readyz.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatroom_server.db import apply_migrations

from ..conftest import (
    SHARED_REDIS,
    TIMEOUT,
    auth,
    close_code,
    eventually,
    free_port,
    fresh_pg_database,
    make_settings,
    recv_json,
    redis_answers,
    service_missing,
    start_server,
)
from ..redis_cluster import LocalCluster, own_redis_cluster, redis_cluster  # noqa: F401
from .conftest import ServeProcess
from .test_redis_auth import chat_across, readyz
from .test_scaleout import POLL, WAIT, create_room, host_env, presence, signup, ws


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_pg_database("cluster") as url:
        yield url


async def cluster_hosts(
    processes: list[ServeProcess], tmp_path: Path, db: str, url: str, *extras: tuple[str, ...]
) -> tuple[str, list[ServeProcess]]:
    """One host per item of `extras` (its extra flags), all with --redis-cluster."""
    prefix = f"test-{uuid.uuid4().hex}"
    hosts = []
    for i, extra in enumerate(extras):
        flags = ("--redis-url", url, "--redis-cluster", *extra)
        flags += () if i == 0 else ("--no-migrate",)
        host = ServeProcess(db, tmp_path, *flags, env=host_env(prefix))
        processes.append(host)
        await host.ready()
        hosts.append(host)
    return prefix, hosts


async def test_two_hosts_one_with_two_workers_chat_and_share_presence_on_a_cluster(
    tmp_path: Path,
    processes: list[ServeProcess],
    pg_url: str,
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    _, (a, b) = await cluster_hosts(
        processes, tmp_path, pg_url, redis_cluster.url, (), ("--workers", "2")
    )
    for host in (a, b):
        assert (await readyz(host)).status_code == 200
    await chat_across(a, b)  # a message and presence (2 connections) cross hosts
    for host in (a, b):
        assert "Traceback" not in host.output()


async def test_a_logout_on_one_host_closes_the_socket_on_the_other(
    tmp_path: Path,
    processes: list[ServeProcess],
    pg_url: str,
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    """The control room (revocations, room events, reads) crosses hosts on a cluster too."""
    _, (a, b) = await cluster_hosts(processes, tmp_path, pg_url, redis_cluster.url, (), ())
    _, token = await signup(a.base, "roaming")
    rid = await create_room(a.base, token)
    async with ws(b, rid, token) as on_b:

        async def joined() -> bool:
            return bool((await presence(a.base, token, rid))["connections"] == 1)

        await eventually(joined, "the socket on host b in presence", WAIT, POLL)
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=a.base, timeout=TIMEOUT) as http:
            res = await http.post("/v1/api/auth/logout", headers=auth(token))
            assert res.status_code == 204
        assert await close_code(on_b) == 1008
        # Heard through the cluster, not found by host b's periodic re-check (5 s).
        assert time.monotonic() - started < 2.0


async def bodies(sock: Any, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await recv_json(sock, timeout=30)
        if frame["Event"] == "message":
            got.append(frame["Body"])
    return got


async def test_a_failover_loses_nothing(
    tmp_path: Path,
    processes: list[ServeProcess],
    pg_url: str,
    own_redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    cluster = own_redis_cluster
    prefix, (a, b) = await cluster_hosts(processes, tmp_path, pg_url, cluster.url, (), ())
    _, ann = await signup(a.base, "ann")
    _, bob = await signup(b.base, "bob")
    rid = await create_room(a.base, ann)
    async with ws(b, rid, bob) as listener, ws(a, rid, ann) as sender:
        await sender.send(json.dumps({"chatMessage": "before"}))
        (before,) = await bodies(listener, 1)
        assert before["chatMessage"] == "before"

        # The master of the room's slot dies; the room goes on on host A meanwhile.
        dead = cluster.master_of(f"{prefix}:room:{rid}")
        kill = asyncio.create_task(
            asyncio.to_thread(cluster.kill_master_of, f"{prefix}:room:{rid}")
        )
        for i in range(3):
            await sender.send(json.dumps({"chatMessage": f"during {i}"}))
        assert await asyncio.wait_for(kill, 60) == dead
        assert cluster.master_of(f"{prefix}:room:{rid}") != dead

        async def ready(host: ServeProcess) -> bool:
            return (await readyz(host)).status_code == 200

        for host in (a, b):
            await eventually(lambda h=host: ready(h), "/readyz after the failover", WAIT, POLL)
        for i in range(3):
            await sender.send(json.dumps({"chatMessage": f"after {i}"}))
        expected = [f"during {i}" for i in range(3)] + [f"after {i}" for i in range(3)]
        # Host B's socket: what it missed while its subscription was down is back-filled
        # from the database, then live delivery resumes; in order, no duplicate.
        assert [m["chatMessage"] for m in await bodies(listener, 6)] == expected
    # A client reconnecting with since loses nothing either.
    async with ws(b, rid, bob, f"&since={before['ID']}") as reader:
        replay = []
        while (frame := await recv_json(reader))["Event"] != "recovered":
            if frame["Event"] == "message":
                replay.append(frame["Body"]["chatMessage"])
    assert replay == expected
    for host in (a, b):
        assert "Traceback" not in host.output()


def serve_refused(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatroom_server", "serve", "--port", str(free_port())]
        + ["--database-url", f"sqlite://{tmp_path}/refused.sqlite3", *flags],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )


async def test_serve_refuses_a_cluster_without_the_flag(
    tmp_path: Path,
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    done = await asyncio.to_thread(serve_refused, tmp_path, "--redis-url", redis_cluster.url)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "is a Redis Cluster node" in lines[0] and "--redis-cluster" in lines[0]
    assert not (tmp_path / "refused.sqlite3").exists()  # refused before touching anything


async def test_serve_refuses_the_flag_without_a_cluster(tmp_path: Path) -> None:
    if not await redis_answers(SHARED_REDIS):
        service_missing(f"Redis at {SHARED_REDIS}")
    done = await asyncio.to_thread(
        serve_refused, tmp_path, "--redis-url", SHARED_REDIS, "--redis-cluster"
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "is not a cluster node" in lines[0]
    # The environment variable is the same switch.
    env_done = await asyncio.to_thread(
        lambda: subprocess.run(
            [sys.executable, "-m", "chatroom_server", "serve", "--port", str(free_port())]
            + ["--database-url", f"sqlite://{tmp_path}/refused.sqlite3"]
            + ["--redis-url", SHARED_REDIS],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
            env={**os.environ, "CHATROOM_REDIS_CLUSTER": "1"},
        )
    )
    assert env_done.returncode != 0 and "is not a cluster node" in env_done.stderr


async def test_readyz_is_not_200_on_a_cluster_without_the_flag(
    tmp_path: Path,
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    # An app built directly (not through `serve`, which refuses): readiness tells.
    url = f"sqlite://{tmp_path}/ready.sqlite3"
    await apply_migrations(url)
    settings = make_settings(
        url,
        redis_url=redis_cluster.url,
        redis_prefix=f"test-{uuid.uuid4().hex}",
    )
    srv, stop = await start_server(settings)
    try:
        async with httpx.AsyncClient(base_url=srv.base, timeout=TIMEOUT) as http:
            res = await http.get("/readyz")
        assert res.status_code == 503
        assert res.json()["failing"] == ["redis"]
    finally:
        await stop()
