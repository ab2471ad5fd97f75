"""An existing database upgrades without data loss when a version adds columns."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bcrypt
import jwt
from tortoise import Tortoise
from tortoise.migrations.api import migrate

from chatroom_server.db import apply_migrations, pending_migrations, tortoise_config
from chatroom_server.names import name_key

from ..conftest import ChatServer, fresh_pg_database, make_settings, start_server

PASSWORD = "password1"


@contextlib.asynccontextmanager
async def running_server(url: str) -> AsyncIterator[ChatServer]:
    server, stop = await start_server(make_settings(url))
    try:
        yield server
    finally:
        await stop()


SEED = (
    "INSERT INTO rooms (name, created_at, updated_at) VALUES "
    "('a', '2024-01-01', '2024-01-01'), ('b', '2024-01-01', '2024-01-01');"
    "INSERT INTO users (user_name, email, password_hash, created_at, updated_at) "
    "VALUES ('u', 'u@example.com', 'h', '2024-01-01', '2024-01-01');"
    "INSERT INTO messages (room_id, user_id, user_name, text, created_at) VALUES "
    "(1, 1, 'u', 'm1', '2024-01-01'), (2, 1, 'u', 'm2', '2024-01-01'), "
    "(1, 1, 'u', 'm3', '2024-01-01');"
)


AFTER_0001 = (
    "chat.0002_message_seq_and_client_ids",
    "chat.0003_user_name_key",
    "chat.0004_sessions",
    "chat.0005_rooms_members",
    "chat.0006_edits_read_markers",
    "chat.0007_signing_keys",
)


async def _upgrade_keeps_rows(url: str) -> None:
    config = tortoise_config(url)
    (name,) = config["connections"]
    await migrate(config=config, target="chat.0001_initial")  # the first released schema
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    await Tortoise.get_connection(name).execute_script(SEED)
    await Tortoise.close_connections()

    assert await pending_migrations(url) == [*AFTER_0001]
    assert await apply_migrations(url) == [*AFTER_0001]
    assert await pending_migrations(url) == []

    await Tortoise.init(config=config)
    try:
        conn = Tortoise.get_connection(name)
        rows = await conn.execute_query_dict(
            "SELECT id, room_id, seq, text FROM messages ORDER BY id"
        )
        assert [(r["id"], r["room_id"], r["seq"], r["text"]) for r in rows] == [
            (1, 1, 1, "m1"),
            (2, 2, 1, "m2"),
            (3, 1, 2, "m3"),
        ]
        rooms = await conn.execute_query_dict("SELECT id, last_seq FROM rooms ORDER BY id")
        assert [(r["id"], r["last_seq"]) for r in rooms] == [(1, 2), (2, 1)]
        # Sessions: an existing account stays usable, with no session yet.
        users = await conn.execute_query_dict(
            "SELECT id, deactivated_at, tokens_valid_after FROM users"
        )
        assert [(u["id"], u["deactivated_at"], u["tokens_valid_after"]) for u in users] == [
            (1, None, None)
        ]
        assert await conn.execute_query_dict("SELECT id FROM sessions") == []
    finally:
        await Tortoise.close_connections()


async def test_sqlite_upgrade_keeps_rows(tmp_path: Path) -> None:
    await _upgrade_keeps_rows(f"sqlite://{tmp_path / 'old.sqlite3'}")


async def test_postgres_upgrade_keeps_rows() -> None:
    async with fresh_pg_database("upgrade") as url:
        await _upgrade_keeps_rows(url)


# ---------------------------------------------------------------- 0003: users.name_key

# Names that 0003 makes one (and one that stays apart), as an older version let them in.
OLD_NAMES = ["alice", "Alice", "ａｌｉｃｅ", "\u0430lice", "bob", "b0b", "carol"]


async def _upgrade_keeps_duplicate_names(url: str) -> None:
    config = tortoise_config(url)
    (name,) = config["connections"]
    await migrate(config=config, target="chat.0002_message_seq_and_client_ids")
    await Tortoise.close_connections()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    await Tortoise.init(config=config)
    try:
        conn = Tortoise.get_connection(name)
        for i, user_name in enumerate(OLD_NAMES):
            await conn.execute_query(
                "INSERT INTO users (user_name, email, password_hash, created_at, updated_at) "
                f"VALUES ('{user_name}', 'u{i}@example.com', '{hashed}', '2024-01-01', "
                "'2024-01-01')"
            )
    finally:
        await Tortoise.close_connections()

    assert await apply_migrations(url) == [
        "chat.0003_user_name_key",
        "chat.0004_sessions",
        "chat.0005_rooms_members",
        "chat.0006_edits_read_markers",
        "chat.0007_signing_keys",
    ]

    await Tortoise.init(config=config)
    try:
        rows = await Tortoise.get_connection(name).execute_query_dict(
            "SELECT id, user_name, email, name_key FROM users ORDER BY id"
        )
    finally:
        await Tortoise.close_connections()
    # Nobody lost or renamed; the first of each look-alike group holds the key.
    assert [r["user_name"] for r in rows] == OLD_NAMES
    keys = [r["name_key"] for r in rows]
    assert keys == [name_key("alice"), None, None, None, name_key("bob"), None, name_key("carol")]

    # Every one of them still logs in, and a new look-alike is refused, on a real server.
    async with running_server(url) as server:
        for i, user_name in enumerate(OLD_NAMES):
            res = await server.http.post(
                "/v1/api/auth/login", json={"email": f"u{i}@example.com", "password": PASSWORD}
            )
            assert res.status_code == 200, res.text
            assert res.json()["user"]["UserName"] == user_name
        for look_alike in ("ALICE", "B0B", "Carol"):
            res = await server.http.post(
                "/v1/api/auth/signup",
                json={
                    "user_name": look_alike,
                    "email": f"{look_alike}@new.example.com",
                    "password": PASSWORD,
                },
            )
            assert res.status_code == 409, res.text
            assert "user_name" in res.json()["message"]
        res = await server.http.post(
            "/v1/api/auth/signup",
            json={"user_name": "dave", "email": "dave@new.example.com", "password": PASSWORD},
        )
        assert res.status_code == 200, res.text


async def test_sqlite_upgrade_keeps_users_whose_names_now_collide(tmp_path: Path) -> None:
    await _upgrade_keeps_duplicate_names(f"sqlite://{tmp_path / 'names.sqlite3'}")


async def test_postgres_upgrade_keeps_users_whose_names_now_collide() -> None:
    async with fresh_pg_database("names") as url:
        await _upgrade_keeps_duplicate_names(url)


# ---------------------------------------------------------------- 0005: rooms with members

SEED_0004 = (
    "INSERT INTO users (user_name, name_key, email, password_hash, created_at, updated_at, "
    "deactivated_at, tokens_valid_after) VALUES "
    "('ann', '{ann}', 'ann@example.com', '{hashed}', '2024-01-01', '2024-01-02', NULL, NULL), "
    "('ben', '{ben}', 'ben@example.com', '{hashed}', '2024-01-01', '2024-01-01', "
    "'2024-02-01', '2024-02-01');"
    "INSERT INTO rooms (name, created_at, updated_at, deleted_at, last_seq) VALUES "
    "('lobby', '2024-01-01', '2024-01-01', NULL, 2), "
    "('gone', '2024-01-01', '2024-01-03', '2024-01-03', 1), "
    "('quiet', '2024-01-01', '2024-01-01', NULL, 0);"
    "INSERT INTO messages (room_id, user_id, user_name, text, created_at, client_message_id, seq) "
    "VALUES (1, 1, 'ann', 'hello', '2024-01-01', 'c1', 1), "
    "(2, 2, 'ben', 'bye', '2024-01-01', NULL, 1), "
    "(1, 2, 'ben', 'hi ann', '2024-01-01', NULL, 2);"
    "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, ended_at, "
    "user_agent) VALUES ('{sid}', 1, '2024-01-01', '2024-01-01', '2099-01-01', NULL, 'curl');"
)


async def _rows(conn: Any, table: str, columns: str) -> list[dict[str, Any]]:
    return list(await conn.execute_query_dict(f"SELECT {columns} FROM {table} ORDER BY id"))


async def _upgrade_0005_leaves_rooms_public_and_rows_alone(url: str) -> None:
    config = tortoise_config(url)
    (name,) = config["connections"]
    await migrate(config=config, target="chat.0004_sessions")
    await Tortoise.close_connections()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    sid = "a" * 32
    seed = SEED_0004.format(ann=name_key("ann"), ben=name_key("ben"), hashed=hashed, sid=sid)
    await Tortoise.init(config=config)
    try:
        conn = Tortoise.get_connection(name)
        await conn.execute_script(seed)
        before = {
            "users": await _rows(conn, "users", "*"),
            "rooms": await _rows(conn, "rooms", "*"),
            "messages": await _rows(conn, "messages", "*"),
            "sessions": await _rows(conn, "sessions", "*"),
        }
    finally:
        await Tortoise.close_connections()

    assert await apply_migrations(url) == [
        "chat.0005_rooms_members",
        "chat.0006_edits_read_markers",
        "chat.0007_signing_keys",
    ]

    await Tortoise.init(config=config)
    try:
        conn = Tortoise.get_connection(name)
        # Every column there was keeps its value, in every table.
        for table, rows in before.items():
            columns = ", ".join(rows[0])
            assert await _rows(conn, table, columns) == rows, table
        # Existing rooms: public, no owner, not direct; nobody a member, banned or muted.
        rooms = await _rows(conn, "rooms", "id, visibility, owner_id, direct_key")
        assert [(r["visibility"], r["owner_id"], r["direct_key"]) for r in rooms] == [
            ("public", None, None)
        ] * 3
        for table in ("room_members", "room_bans", "room_mutes"):
            assert await _rows(conn, table, "id") == [], table
        users = await _rows(conn, "users", "id, is_admin")
        assert [(u["id"], bool(u["is_admin"])) for u in users] == [(1, False), (2, False)]
    finally:
        await Tortoise.close_connections()

    # The upgraded database serves: the old session's user logs in, the rooms are listed.
    async with running_server(url) as server:
        res = await server.http.post(
            "/v1/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
        )
        assert res.status_code == 200, res.text
        token = res.json()["token"]
        res = await server.http.get(
            "/v1/api/chat/rooms", headers={"Authorization": f"Bearer {token}"}
        )
        assert res.status_code == 200, res.text
        assert [r["name"] for r in res.json()["chatRooms"]] == ["lobby", "quiet"]
        res = await server.http.post(
            "/v1/api/auth/login", json={"email": "ben@example.com", "password": PASSWORD}
        )
        assert res.status_code == 401  # still deactivated


async def test_sqlite_upgrade_to_0005_keeps_rooms_public(tmp_path: Path) -> None:
    await _upgrade_0005_leaves_rooms_public_and_rows_alone(f"sqlite://{tmp_path / 'r.sqlite3'}")


async def test_postgres_upgrade_to_0005_keeps_rooms_public() -> None:
    async with fresh_pg_database("rooms") as url:
        await _upgrade_0005_leaves_rooms_public_and_rows_alone(url)


# ---------------------------------------------------------------- 0006: edits, reads

SEED_0005 = (
    "INSERT INTO users (user_name, name_key, email, password_hash, created_at, updated_at) "
    "VALUES ('ann', '{ann}', 'ann@example.com', '{hashed}', '2024-01-01', '2024-01-01'), "
    "('ben', '{ben}', 'ben@example.com', '{hashed}', '2024-01-01', '2024-01-01'), "
    "('dan', '{dan}', 'dan@example.com', '{hashed}', '2024-01-01', '2024-01-01');"
    "INSERT INTO rooms (name, created_at, updated_at, last_seq, visibility) VALUES "
    "('lobby', '2024-01-01', '2024-01-01', 4, 'public'), "
    "('side', '2024-01-01', '2024-01-01', 1, 'public');"
    "INSERT INTO messages (room_id, user_id, user_name, text, created_at, client_message_id, seq) "
    "VALUES (1, 1, 'ann', 'hi', '2024-01-01', NULL, 1), "
    "(1, 2, 'ben', 'hello', '2024-01-01', 'c1', 2), "
    "(2, 1, 'ann', 'alone', '2024-01-01', NULL, 1), "
    "(1, 2, 'ben', 'how are you', '2024-01-01', NULL, 3), "
    "(1, 3, 'dan', 'hey', '2024-01-01', NULL, 4);"
)


async def _upgrade_0006_keeps_messages_plain_and_counts_them(url: str) -> None:
    config = tortoise_config(url)
    (name,) = config["connections"]
    await migrate(config=config, target="chat.0005_rooms_members")
    await Tortoise.close_connections()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    keys = {who: name_key(who) for who in ("ann", "ben", "dan")}
    await Tortoise.init(config=config)
    try:
        conn = Tortoise.get_connection(name)
        await conn.execute_script(SEED_0005.format(hashed=hashed, **keys))
        before = await _rows(conn, "messages", "*")
    finally:
        await Tortoise.close_connections()

    assert await apply_migrations(url) == [
        "chat.0006_edits_read_markers",
        "chat.0007_signing_keys",
    ]

    await Tortoise.init(config=config)
    try:
        conn = Tortoise.get_connection(name)
        assert await _rows(conn, "messages", ", ".join(before[0])) == before
        # Every existing row is a plain message: not a change, never edited or deleted.
        changes = await _rows(
            conn, "messages", "id, kind, target_id, edited_at, deleted_at, deleted_by_id"
        )
        assert [tuple(r.values())[1:] for r in changes] == [(0, None, None, None, None)] * 5
        assert await _rows(conn, "read_markers", "id") == []
    finally:
        await Tortoise.close_connections()

    # Nobody has a marker: unread is the others' messages after one's own newest.
    async with running_server(url) as server:
        unread: dict[str, dict[str, tuple[int, int | None]]] = {}
        tokens = {}
        for who in ("ann", "ben", "dan"):
            res = await server.http.post(
                "/v1/api/auth/login", json={"email": f"{who}@example.com", "password": PASSWORD}
            )
            assert res.status_code == 200, res.text
            tokens[who] = {"Authorization": f"Bearer {res.json()['token']}"}
            res = await server.http.get("/v1/api/chat/rooms", headers=tokens[who])
            unread[who] = {
                r["name"]: (r["unread"], r["lastReadId"]) for r in res.json()["chatRooms"]
            }
        assert unread == {
            "ann": {"lobby": (3, None), "side": (0, None)},
            "ben": {"lobby": (1, None), "side": (1, None)},
            "dan": {"lobby": (0, None), "side": (1, None)},
        }
        # Markers work on the upgraded rows: ann read up to ben's first message.
        res = await server.http.post(
            "/v1/api/chat/rooms/1/read", json={"lastReadId": 2}, headers=tokens["ann"]
        )
        assert res.json() == {"chatRoomId": 1, "lastReadId": 2, "unread": 2}


async def test_sqlite_upgrade_to_0006_counts_old_messages(tmp_path: Path) -> None:
    await _upgrade_0006_keeps_messages_plain_and_counts_them(f"sqlite://{tmp_path / 'e.sqlite3'}")


async def test_postgres_upgrade_to_0006_counts_old_messages() -> None:
    async with fresh_pg_database("reads") as url:
        await _upgrade_0006_keeps_messages_plain_and_counts_them(url)


# ---------------------------------------------------------------- 0007: signing keys


async def _upgrade_0007_keeps_existing_tokens(url: str) -> None:
    """Tokens of the stored secret, issued before keys had IDs, still work after 0007,
    and the server signs as before (no kid) until the first rotation."""
    config = tortoise_config(url)
    (name,) = config["connections"]
    await migrate(config=config, target="chat.0006_edits_read_markers")
    await Tortoise.close_connections()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    secret = "a-stored-secret-of-an-earlier-version-0123456789"
    await Tortoise.init(config=config)
    try:
        await Tortoise.get_connection(name).execute_script(
            "INSERT INTO users (user_name, name_key, email, password_hash, created_at, "
            f"updated_at) VALUES ('ann', '{name_key('ann')}', 'ann@example.com', '{hashed}', "
            "'2024-01-01', '2024-01-01');"
            f"INSERT INTO server_secrets (name, value) VALUES ('jwt_secret', '{secret}');"
        )
    finally:
        await Tortoise.close_connections()

    assert await apply_migrations(url) == ["chat.0007_signing_keys"]

    await Tortoise.init(config=config)
    try:
        conn = Tortoise.get_connection(name)
        assert await conn.execute_query_dict("SELECT kid FROM signing_keys") == []
    finally:
        await Tortoise.close_connections()

    now = int(time.time())
    claims = {"sub": "1", "UserID": 1, "UserName": "ann", "Email": "ann@example.com"}
    old = jwt.encode({**claims, "iat": now, "exp": now + 600}, secret, algorithm="HS256")
    async with running_server(url) as server:
        res = await server.http.get(
            "/v1/api/chat/rooms", headers={"Authorization": f"Bearer {old}"}
        )
        assert res.status_code == 200, res.text
        res = await server.http.post(
            "/v1/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
        )
        assert res.status_code == 200, res.text
        token = res.json()["token"]
        assert "kid" not in jwt.get_unverified_header(token)
        jwt.decode(token, secret, algorithms=["HS256"])


async def test_sqlite_upgrade_to_0007_keeps_existing_tokens(tmp_path: Path) -> None:
    await _upgrade_0007_keeps_existing_tokens(f"sqlite://{tmp_path / 'k.sqlite3'}")


async def test_postgres_upgrade_to_0007_keeps_existing_tokens() -> None:
    async with fresh_pg_database("keys") as url:
        await _upgrade_0007_keeps_existing_tokens(url)
