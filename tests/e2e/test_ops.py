"""Operations endpoints: /metrics after a short chat, /readyz when the database is gone."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from chatroom_server.db import apply_migrations
from chatroom_server.db.sqlite_store import SqliteStore

from ..conftest import (
    ChatServer,
    _pg_admin,
    auth,
    eventually,
    fresh_pg_database,
    make_settings,
    recv_event,
    start_server,
)


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + labels + r"\}" if labels else "") + r" ([0-9.e+-]+)"
    found = re.search(pattern, text)
    assert found, f"{name} {labels} missing from /metrics"
    return float(found.group(1))


async def test_metrics_count_a_short_chat(server: ChatServer) -> None:
    before = (await server.http.get("/metrics")).text
    _, token = await server.signup()
    rid = (await server.create_room(token))["ID"]
    async with server.connect(rid, token) as a, server.connect(rid, token) as b:
        await a.send(json.dumps({"chatMessage": "hello"}))
        await recv_event(a, "message")
        await recv_event(b, "message")
        await a.send("not json")
        await recv_event(a, "error")
        res = await server.http.get("/metrics")
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/plain")
        text = res.text
        assert metric(text, "chatroom_connections") >= 2
        assert metric(text, "chatroom_rooms_local") >= 1
    received = "chatroom_messages_received_total"
    delivered = "chatroom_messages_delivered_total"
    assert metric(text, received) - metric(before, received) == 1
    assert metric(text, delivered) - metric(before, delivered) == 2
    invalid = metric(text, "chatroom_messages_dropped_total", 'reason="invalid"')
    assert invalid >= 1
    assert metric(text, "chatroom_broadcast_latency_seconds_count") >= 1
    assert (
        metric(text, "chatroom_http_requests_total", 'route="v1/api/chat/create",status="200"') >= 1
    )
    # Bad requests are counted by route pattern, not by raw URL.
    await server.http.get(f"/v1/api/chat/rooms/{rid}/messages?limit=0", headers=auth(token))
    text = (await server.http.get("/metrics")).text
    pattern = 'route="v1/api/chat/rooms/<room_id:int>/messages",status="400"'
    assert metric(text, "chatroom_http_requests_total", pattern) >= 1
    assert "jwt" not in text and token not in text


class TestGroupCommit:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"ws_rate": 1000.0, "ws_burst": 1000}

    async def test_one_senders_burst_shares_commits(self, server: ChatServer) -> None:
        """The next frame is read while earlier ones are committed: they share commits."""
        before = (await server.http.get("/metrics")).text
        _, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        async with server.connect(rid, token) as ws:
            texts = [f"burst {i}" for i in range(60)]
            for text in texts:  # written without waiting for the echoes
                await ws.send(json.dumps({"chatMessage": text}))
            echoed = [(await recv_event(ws, "message"))["Body"] for _ in texts]
        assert [m["chatMessage"] for m in echoed] == texts  # in the order sent
        ids = [m["ID"] for m in echoed]
        assert ids == sorted(ids)
        text = (await server.http.get("/metrics")).text
        count = "chatroom_message_commit_batch_size_count"
        total = "chatroom_message_commit_batch_size_sum"
        assert metric(text, total) - metric(before, total) == 60
        assert metric(text, count) - metric(before, count) < 60, "every message had its own commit"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
class TestSqliteCheckpoints:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"ws_rate": 1000.0, "ws_burst": 1000}

    async def test_sqlite_wal_is_checkpointed_off_the_commit_path(self, server: ChatServer) -> None:
        """The serving connection never checkpoints; the checkpointer copies the WAL in."""
        import os

        from chatroom_server.db.checkpoint import sqlite_path

        path = sqlite_path(server.app.ctx.settings.database_url)
        assert path is not None
        from tortoise import connections

        (conn,) = connections.all()
        _, rows = await conn.execute_query("PRAGMA wal_autocheckpoint")
        assert list(rows[0]) == [0]  # SQLite's own checkpoint, inside a commit, is off
        batches = server.app.ctx.store
        assert isinstance(batches, SqliteStore)  # and on the connection that commits messages
        assert await batches.pragma("wal_autocheckpoint") == 0
        checkpointer = batches.checkpointer
        size_before = await asyncio.to_thread(os.path.getsize, path)
        _, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        async with server.connect(rid, token) as ws:
            for i in range(100):
                await ws.send(json.dumps({"chatMessage": f"{i} " + "x" * 2000}))
                await recv_event(ws, "message")
        # Far below SQLite's 1,000-page threshold: only the checkpointer moves the
        # messages from the WAL into the database file itself.
        done = checkpointer.checkpoints
        await eventually(lambda: checkpointer.checkpoints >= done + 2, "two more checkpoints")
        # Copying pages takes turns with the event loop only when the CPU is idle.
        policy = await asyncio.get_running_loop().run_in_executor(
            checkpointer._thread, os.sched_getscheduler, 0
        )
        assert policy == os.SCHED_IDLE
        assert await asyncio.to_thread(os.path.getsize, path) >= size_before + 100 * 2000

    async def test_messages_commit_on_the_writers_own_connection(self, server: ChatServer) -> None:
        """Group commits go through SqliteStore's own connection, set up like the ORM's."""
        batches = server.app.ctx.store
        assert isinstance(batches, SqliteStore)
        assert server.app.ctx.relay.writer.store == batches.store_batch
        assert await batches.pragma("journal_mode") == "wal"
        assert await batches.pragma("foreign_keys") == 1
        assert await batches.pragma("busy_timeout") == 5000
        assert await batches.pragma("synchronous") == 1  # NORMAL
        assert await batches.pragma("journal_size_limit") == 64 * 1024 * 1024
        _, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        async with server.connect(rid, token) as ws:
            await ws.send(
                json.dumps({"chatMessage": "stored by the writer", "clientMessageId": "w1"})
            )
            echo = (await recv_event(ws, "message"))["Body"]
            await ws.send(
                json.dumps({"chatMessage": "stored by the writer", "clientMessageId": "w1"})
            )
            again = (await recv_event(ws, "message"))["Body"]
        assert again == echo  # the resend, read back through the writer's connection
        res = await server.http.get(f"/v1/api/chat/rooms/{rid}/messages", headers=auth(token))
        # Read back through the ORM: the same row, timestamp and all.
        assert res.json()["messages"] == [echo]


async def test_readyz_names_the_database_when_it_is_gone() -> None:
    async with fresh_pg_database("ready") as url:
        await apply_migrations(url)
        server, stop = await start_server(make_settings(url))
        try:
            assert (await server.http.get("/readyz")).json() == {"status": "ok"}
            name = url.rsplit("/", 1)[1]
            await _pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')  # the database is gone
            res = await server.http.get("/readyz")
            assert (res.status_code, res.json()["failing"]) == (503, ["database"])
        finally:
            await stop()


class TestCors:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"cors_origins": "http://app.example"}

    async def test_preflight_follows_cors_origins(self, server: ChatServer) -> None:
        headers = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        ok = await server.http.options(
            "/v1/api/chat/rooms", headers={**headers, "Origin": "http://app.example"}
        )
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == "http://app.example"
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        other = await server.http.options(
            "/v1/api/chat/rooms", headers={**headers, "Origin": "http://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
