"""Tortoise's global context fallback: request tasks find the database.

Sanic runs each request in a task created outside the listener that opened the
database, so Tortoise's per-context connections would not be found there.
`_enable_global_fallback` (an underscored argument of Tortoise.init, which
Tortoise's own Sanic and FastAPI integrations pass) makes the opened context the
fallback of every task.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from ...db import open_database as open_with
from ...db.checkpoint import sqlite_path

log = logging.getLogger("chatroom_server.web")

GLOBAL_FALLBACK = "_enable_global_fallback"


def init_options() -> dict[str, Any]:
    """Keyword arguments for Tortoise.init beyond the config."""
    from tortoise import Tortoise

    if GLOBAL_FALLBACK in inspect.signature(Tortoise.init).parameters:
        return {GLOBAL_FALLBACK: True}
    log.warning("Tortoise.init has no %s: opening the database without it", GLOBAL_FALLBACK)
    return {}


async def open_database(database_url: str) -> None:
    """Open the ORM's connections as the server needs them (SQLite: WAL checkpoints
    left to the store's checkpointer)."""
    background = sqlite_path(database_url) is not None
    await open_with(database_url, background_checkpoints=background, **init_options())
