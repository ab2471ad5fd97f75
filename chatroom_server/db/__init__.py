"""The one Tortoise configuration, shared by the app, the CLI and migrations.

Tortoise is imported inside the functions: the store contract (store.py) is
imported by the real-time layer, which must not load the ORM with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from ..errors import StorageError
from ..settings import mask_url
from .checkpoint import sqlite_path

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


# Seconds to open the database and get an answer to one query. A database that
# takes longer at start-up is treated as unreachable: the CLI says so in one line
# instead of waiting on the driver's own timeout (asyncpg: 60 s) or forever. A
# healthy PostgreSQL answers in milliseconds.
CONNECT_TIMEOUT = 3.0
# Under a deadline (the CLI's, see connect_deadline), never less than this.
MIN_CONNECT_TIMEOUT = 1.0

_deadline: ContextVar[float | None] = ContextVar("chatroom_connect_deadline", default=None)


@contextlib.contextmanager
def connect_deadline(at: float) -> Iterator[None]:
    """Inside: a connect's time-box ends by `at` (a time.monotonic() value), but is
    never shorter than MIN_CONNECT_TIMEOUT.

    The CLI promises its answer within 5 s of starting (SPEC 14), and starting
    alone (Python, the ORM's imports) took 1.5-3 s on the loaded 2-core test
    machine: a fixed time-box after that would break the promise exactly when the
    machine is busy.
    """
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


# Set once a database has answered in this process: the start-up deadline is for
# failing fast at start, so later connects (the target of copy-data, serve's second
# look before it starts) get the whole CONNECT_TIMEOUT, not what is left of it.
_answered = False


def _connect_timeout() -> float:
    at = _deadline.get()
    if at is None or _answered:
        return CONNECT_TIMEOUT
    return max(MIN_CONNECT_TIMEOUT, min(CONNECT_TIMEOUT, at - time.monotonic()))


def check_location(database_url: str) -> None:
    """Refuse, before connecting, a SQLite file that cannot be there.

    Tortoise keeps its connection lock when the connect fails (a file in a missing
    directory), and every later query, its migrations' included, waits on it
    forever: this check is what turns that hang into one line.
    """
    path = sqlite_path(database_url)
    if path is None:
        return
    directory = os.path.dirname(path) or "."
    shown = os.path.abspath(directory)
    if not os.path.exists(directory):
        raise unusable(database_url, f"the directory {shown} does not exist (create it first)")
    if not os.path.isdir(directory):
        raise unusable(database_url, f"{shown} is not a directory")
    if os.path.isdir(path):
        raise unusable(database_url, f"{os.path.abspath(path)} is a directory, not a file")
    if not os.path.exists(path) and not os.access(directory, os.W_OK | os.X_OK):
        raise unusable(database_url, f"cannot create a file in {shown}: permission denied")


def unusable(database_url: str, why: str) -> StorageError:
    """The one sentence for a database that cannot be used (its password masked)."""
    return StorageError(f"Cannot use the database {mask_url(database_url)}: {why}.")


async def open_database(
    database_url: str, background_checkpoints: bool = False, **init_options: Any
) -> None:
    """Open the ORM's connections; `init_options` go to Tortoise.init (see web/internals/orm.py)."""
    from tortoise import Tortoise

    check_location(database_url)
    config = tortoise_config(database_url, background_checkpoints)
    await Tortoise.init(config=config, **init_options)


async def connect(database_url: str, timeout: float | None = None, **options: Any) -> None:
    """open_database and one query, within `timeout` seconds (default: CONNECT_TIMEOUT,
    or less under a connect_deadline), or StorageError.

    On any failure the connections are closed again.
    """
    global _answered
    timeout = _connect_timeout() if timeout is None else timeout
    try:
        async with asyncio.timeout(timeout):
            await open_database(database_url, **options)
            await ping()
        _answered = True
    except TimeoutError:
        await _close_quietly()
        raise unusable(database_url, f"no answer within {timeout:.1f} s") from None
    except BaseException:
        await _close_quietly()
        raise


async def reachable(database_url: str, timeout: float | None = None) -> None:
    """Raise (StorageError or the driver's error) unless the database answers in time."""
    await connect(database_url, timeout)
    await close_database()


async def close_database() -> None:
    from tortoise import Tortoise

    await Tortoise.close_connections()


async def _close_quietly() -> None:
    # After a failed or abandoned connect: closing is tidying up, never a new error.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await close_database()


# For Tortoise's own CLI (`tortoise -c chatroom_server.db.TORTOISE_ORM makemigrations`),
# used by developers when a model changes. The URL only matters for that command.
TORTOISE_ORM = tortoise_config("sqlite://:memory:")


async def apply_migrations(database_url: str) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    from tortoise import Tortoise
    from tortoise.migrations.api import migrate

    await reachable(database_url)  # Tortoise's migrate() would wait forever on some failures
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

    await reachable(database_url)
    config = tortoise_config(database_url)
    await Tortoise.init(config=config, init_connections=False)
    try:
        (name,) = config["connections"]
        executor = MigrationExecutor(get_connection(name), config["apps"])
        steps = await executor.plan(None)
        return [f"{s.migration.app_label}.{s.migration.name}" for s in steps if not s.backward]
    finally:
        await Tortoise.close_connections()
