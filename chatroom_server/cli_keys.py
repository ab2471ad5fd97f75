"""`chatroom-server rotate-secret`: a new token signing key (SPEC 14).

The database work is in services/secrets.py. Running servers pick the new key up
by themselves within about a second (realtime/keys.py); with Redis this command
also tells them at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC

import click

from .cli_admin import redis_option
from .cli_support import (
    database_option,
    describe_db_failure,
    fail,
    load_settings,
    log_format_option,
    run_db,
    say,
    warn,
)
from .errors import ChatError
from .settings import Settings

# A grace longer than this is a typo rather than a plan (a year).
MAX_GRACE = 366 * 86400


@click.command("rotate-secret")
@click.option(
    "--grace",
    type=click.IntRange(0, MAX_GRACE),
    default=None,
    metavar="SECONDS",
    help="How long tokens signed with the previous keys keep working (default: the "
    "token lifetime, env CHATROOM_TOKEN_TTL); 0 ends them now.",
)
@database_option
@redis_option
@log_format_option
def rotate_secret(
    grace: int | None,
    database_url: str | None,
    redis_url: str | None,
    redis_cluster: bool | None,
    log_format: str | None,
) -> None:
    """Sign new tokens with a new key; tokens signed with the previous ones (or with
    CHATROOM_JWT_SECRET) keep working for the grace period, then get 401 and their
    open sockets close (1008). Every server picks it up within seconds, no restart."""
    from .services import secrets

    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_cluster=redis_cluster,
        log_format=log_format,
    )
    seconds = settings.token_ttl if grace is None else grace
    _require_migrations(settings.database_url)
    rotation = run_db(settings.database_url, lambda: secrets.rotate(seconds))
    problem = _announce(settings, rotation.kid)
    if problem is not None:
        warn(
            f"could not tell the servers through Redis ({problem}); "
            "they pick the new key up through the database within about a second."
        )
    ends = rotation.retires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    say(
        f"New signing key {rotation.kid}: tokens signed with the previous keys stop "
        f"working at {ends} (in {seconds} s)."
    )


def _require_migrations(database_url: str) -> None:
    from .db import pending_migrations

    try:
        pending = asyncio.run(pending_migrations(database_url))
    except Exception as exc:
        fail(describe_db_failure(database_url, exc))
    if pending:
        fail(
            f"The database lacks {len(pending)} migration(s) ({', '.join(pending)}); "
            "run 'chatroom-server migrate' first."
        )


def _announce(settings: Settings, kid: str) -> str | None:
    """Tell running servers through Redis (if configured): None, or why it failed."""
    if settings.redis_url is None:
        return None
    from . import protocol
    from .pubsub import CONTROL_ROOM, publish_once

    payload = protocol.bus_key_rotation(kid)
    try:
        asyncio.run(
            publish_once(
                settings.redis_url,
                CONTROL_ROOM,
                payload,
                settings.redis_prefix,
                settings.redis_cluster,
            )
        )
    except ChatError as exc:
        return exc.message
    return None
