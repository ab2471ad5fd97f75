"""An existing database upgrades without data loss when a version adds columns."""

from __future__ import annotations

from pathlib import Path

from tortoise import Tortoise
from tortoise.migrations.api import migrate

from chatroom_server.db import apply_migrations, pending_migrations, tortoise_config

from ..conftest import fresh_pg_database

SEED = (
    "INSERT INTO rooms (name, created_at, updated_at) VALUES "
    "('a', '2024-01-01', '2024-01-01'), ('b', '2024-01-01', '2024-01-01');"
    "INSERT INTO users (user_name, email, password_hash, created_at, updated_at) "
    "VALUES ('u', 'u@example.com', 'h', '2024-01-01', '2024-01-01');"
    "INSERT INTO messages (room_id, user_id, user_name, text, created_at) VALUES "
    "(1, 1, 'u', 'm1', '2024-01-01'), (2, 1, 'u', 'm2', '2024-01-01'), "
    "(1, 1, 'u', 'm3', '2024-01-01');"
)


async def _upgrade_keeps_rows(url: str) -> None:
    config = tortoise_config(url)
    (name,) = config["connections"]
    await migrate(config=config, target="chat.0001_initial")  # the first released schema
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    await Tortoise.get_connection(name).execute_script(SEED)
    await Tortoise.close_connections()

    assert await pending_migrations(url) == ["chat.0002_message_seq_and_client_ids"]
    assert await apply_migrations(url) == ["chat.0002_message_seq_and_client_ids"]
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
    finally:
        await Tortoise.close_connections()


async def test_sqlite_upgrade_keeps_rows(tmp_path: Path) -> None:
    await _upgrade_keeps_rows(f"sqlite://{tmp_path / 'old.sqlite3'}")


async def test_postgres_upgrade_keeps_rows() -> None:
    async with fresh_pg_database("upgrade") as url:
        await _upgrade_keeps_rows(url)
