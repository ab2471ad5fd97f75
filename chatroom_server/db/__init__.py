"""The one Tortoise configuration, shared by the app, the CLI and migrations.

Tortoise is imported inside the functions: the store contract (store.py) is
imported by the real-time layer, which must not load the ORM with it.
"""

from __future__ import annotations

from typing import Any

APP_LABEL = "chat"
MODELS_MODULE = "chatroom_server.db.models"
MIGRATIONS_MODULE = "chatroom_server.db.migrations"

# SQLite: WAL lets readers run beside the writer; NORMAL syncs at checkpoints, which
# is durable across a process crash; busy_timeout waits instead of failing when
# another process (the CLI, a second server) holds the write lock. After a
# checkpoint the WAL file is kept (up to 64 MiB) rather than cut to Tortoise's
# 16 KiB and grown again: growing it makes appends wait on file-system metadata,
# behind the checkpoint's fsync (many-rooms benchmark p99, with the checkpoint at
# idle priority: 2.5-2.9 ms with the cut, 2.2 ms without).
_SQLITE_DEFAULTS = {
    "journal_mode": "WAL",
    "synchronous": "NORMAL",
    "busy_timeout": "5000",
    "journal_size_limit": str(64 * 1024 * 1024),
}


def connection_url(database_url: str, background_checkpoints: bool = False) -> str:
    """Add our SQLite pragmas unless the URL sets them itself.

    With `background_checkpoints`, the connection leaves WAL checkpoints to a
    Checkpointer (see checkpoint.py) instead of running them inside a commit.
    """
    if not database_url.startswith("sqlite://"):
        return database_url
    base, _, query = database_url.partition("?")
    given = {part.split("=", 1)[0] for part in query.split("&") if part}
    defaults = dict(_SQLITE_DEFAULTS)
    if background_checkpoints:
        defaults["wal_autocheckpoint"] = "0"
    extra = [f"{k}={v}" for k, v in defaults.items() if k not in given]
    params = "&".join(filter(None, [query, *extra]))
    return f"{base}?{params}" if params else base


async def _keep_session(connection: object) -> None:
    """asyncpg's pool `reset` hook: nothing beyond what asyncpg always does.

    Without a hook, asyncpg resets every connection given back to the pool with a
    query of its own (advisory unlocks, CLOSE ALL, UNLISTEN *, RESET ALL): one more
    round trip after every ORM query, 15% of the server's event loop while clients
    connected (py-spy, PostgreSQL + Redis, issue 15). This project takes no advisory
    locks and never LISTENs or SETs; an open transaction is still rolled back by
    asyncpg itself before the hook runs.
    """


def _connection_config(database_url: str, background_checkpoints: bool) -> str | dict[str, Any]:
    if database_url.startswith("sqlite://"):
        return connection_url(database_url, background_checkpoints)
    from tortoise.backends.base.config_generator import expand_db_url

    config = expand_db_url(database_url)
    config["credentials"].setdefault("reset", _keep_session)  # to asyncpg.create_pool
    return config


def tortoise_config(database_url: str, background_checkpoints: bool = False) -> dict[str, Any]:
    # Tortoise caches compiled INSERTs per connection *name*: naming the connection
    # after its dialect keeps SQLite's "?" out of PostgreSQL's queries when one
    # process (a test run) uses both.
    name = "sqlite" if database_url.startswith("sqlite://") else "postgres"
    return {
        "connections": {name: _connection_config(database_url, background_checkpoints)},
        "apps": {
            APP_LABEL: {
                "models": [MODELS_MODULE],
                "default_connection": name,
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def open_database(
    database_url: str, background_checkpoints: bool = False, **init_options: Any
) -> None:
    """Open the ORM's connections; `init_options` go to Tortoise.init (see web/internals/orm.py)."""
    from tortoise import Tortoise

    config = tortoise_config(database_url, background_checkpoints)
    await Tortoise.init(config=config, **init_options)


async def close_database() -> None:
    from tortoise import Tortoise

    await Tortoise.close_connections()


# For Tortoise's own CLI (`tortoise -c chatroom_server.db.TORTOISE_ORM makemigrations`),
# used by developers when a model changes. The URL only matters for that command.
TORTOISE_ORM = tortoise_config("sqlite://:memory:")


async def apply_migrations(database_url: str) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    from tortoise import Tortoise
    from tortoise.migrations.api import migrate

    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(f"{app_label}.{name}")

    try:
        await migrate(config=tortoise_config(database_url), progress=progress)
    finally:
        await Tortoise.close_connections()
    return applied


async def ping() -> None:
    """Raise if the database does not answer a trivial query."""
    from tortoise import connections

    for conn in connections.all():
        await conn.execute_query("SELECT 1")


async def pending_migrations(database_url: str) -> list[str]:
    """Names of migrations not yet applied to this database."""
    from tortoise import Tortoise
    from tortoise.connection import get_connection
    from tortoise.migrations.executor import MigrationExecutor

    config = tortoise_config(database_url)
    await Tortoise.init(config=config, init_connections=False)
    try:
        (name,) = config["connections"]
        executor = MigrationExecutor(get_connection(name), config["apps"])
        steps = await executor.plan(None)
        return [f"{s.migration.app_label}.{s.migration.name}" for s in steps if not s.backward]
    finally:
        await Tortoise.close_connections()
