"""The `chatroom-server` command: serve, migrate and room administration
(site administration: cli_admin.py; what every command shares: cli_support.py).

Builds Settings from flags and environment, then calls services; every failure
is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import click

from . import __version__
from .cli_admin import COMMANDS as admin_commands
from .cli_data import COMMANDS as data_commands
from .cli_keys import rotate_secret
from .cli_support import (
    OneLineErrors,
    check_ports,
    check_redis,
    database_option,
    describe_db_failure,
    fail,
    load_settings,
    log_format_option,
    run_db,
    say,
    start_up_deadline,
)
from .errors import ConfigError
from .settings import Settings


def limit_option(name: str, kind: type, default: str, meaning: str) -> Any:
    """A `serve` flag for one limit setting, naming its environment variable."""
    env = "CHATROOM_" + name.upper()
    return click.option(
        "--" + name.replace("_", "-"),
        type=kind,
        default=None,
        help=f"{meaning} (env {env}; default {default}).",
    )


# SPEC section 11; shared by every worker and host when Redis is configured.
ABUSE_LIMITS = (
    limit_option("user_connections", int, "20", "Open websockets per user, on all hosts"),
    limit_option("ip_connections", int, "500", "Open websockets per client address"),
    limit_option("user_rate", float, "20", "Messages a second per user, across their sockets"),
    limit_option("user_burst", int, "40", "Messages at once per user, across their sockets"),
    limit_option("login_ip_rate", int, "30", "Login attempts a minute per client address"),
    limit_option("signup_ip_rate", int, "10", "Signups an hour per client address"),
    limit_option("room_create_rate", int, "20", "Rooms created an hour per user"),
    limit_option(
        "edit_window", float, "0", "Seconds after sending in which a message can be edited; "
        "0: no limit"
    ),
    limit_option(
        "proxies_count", int, "0", "Trusted proxies in front: the client address is then "
        "taken from X-Forwarded-For"
    ),
)  # fmt: skip


def with_abuse_limits(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(ABUSE_LIMITS):
        command = option(command)
    return command


def migrate_database(database_url: str) -> list[str]:
    from .db import apply_migrations

    try:
        return asyncio.run(apply_migrations(database_url))
    except Exception as exc:
        fail(describe_db_failure(database_url, exc))
    raise AssertionError("unreachable")


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chatroom-server")
def main() -> None:
    """chatroom-server: accounts, rooms and live messages over websockets."""


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8080).")
@click.option("--workers", type=int, default=None, help="Worker processes (default 1).")
@database_option
@click.option("--redis-url", default=None, metavar="URL", help="Redis for several workers/hosts.")
@click.option(
    "--redis-cluster",
    is_flag=True,
    default=None,
    help="The Redis URL names a Redis Cluster node (env CHATROOM_REDIS_CLUSTER).",
)
@click.option("--dev", is_flag=True, default=None, help="Auto-reload and debug logs.")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations at start.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Log level (env CHATROOM_LOG_LEVEL; default INFO).",
)
@log_format_option
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve /metrics on this port instead of the public one (env CHATROOM_METRICS_PORT).",
)
@with_abuse_limits
def serve(no_migrate: bool, **flags: Any) -> None:
    """Start the server (applies pending migrations first)."""
    settings = load_settings(**flags)
    if settings.workers > 1 and settings.redis_url is None:
        fail(
            "--workers above 1 needs --redis-url: each worker is a separate process, "
            "and without Redis every room would be split between them."
        )
    check_ports(settings)
    check_redis(settings)
    if not no_migrate:
        for name in migrate_database(settings.database_url):
            say(f"Applied migration {name}")
    _preflight(settings)
    # Workers in processes of their own (several, or --dev's reloader): their figures
    # meet in prometheus-client's multiprocess directory.
    with _metrics_directory(settings.workers > 1 or settings.dev):
        _run_server(settings)


@contextlib.contextmanager
def _metrics_directory(several: bool) -> Iterator[None]:
    """Worker processes: prometheus-client's multiprocess mode, in a fresh directory."""
    from .metrics import MULTIPROC_ENV

    if not several or os.environ.get(MULTIPROC_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="chatroom-metrics-") as path:
        os.environ[MULTIPROC_ENV] = path  # inherited by every worker
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]


def _preflight(settings: Settings) -> None:
    """Check the database once, here, so a worker never dies on start with a traceback."""
    from .db import pending_migrations
    from .services.secrets import shared_secret

    try:
        pending = asyncio.run(pending_migrations(settings.database_url))
    except Exception as exc:
        fail(describe_db_failure(settings.database_url, exc))
    if pending:
        fail(
            f"The database lacks {len(pending)} migration(s) ({', '.join(pending)}); "
            "run 'chatroom-server migrate' first, or start without --no-migrate."
        )
    if settings.jwt_secret is None:
        # Create the shared secret now, once, rather than racing between workers.
        run_db(settings.database_url, shared_secret)


# Connections the kernel may hold before the server accepts them (capped by
# net.core.somaxconn). Sanic's default, 100, overflows when thousands of clients
# reconnect at once after a restart: the kernel drops their SYNs, and each waits
# for its retransmission (1 s, 3 s, 7 s...), the storm's tail of 30 s.
LISTEN_BACKLOG = 4096


def _run_server(settings: Settings) -> None:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from .app import create_served_app
    from .metrics_port import start_metrics_server
    from .web.internals.workers import serve_with_manager

    # Every worker process rebuilds the app the same way from the same settings.
    loader = AppLoader(factory=functools.partial(create_served_app, settings))
    app = loader.load()
    # One worker runs in this process: no manager process, and SIGTERM reaches
    # the server directly. More workers (or --dev's reloader) need the manager.
    single = settings.workers == 1 and not settings.dev
    if settings.metrics_port is not None:
        try:
            start_metrics_server(settings.host, settings.metrics_port, settings.metrics_token)
        except OSError as exc:
            fail(f"Cannot listen on {settings.host}:{settings.metrics_port}: {exc.strerror or exc}")
    try:
        app.prepare(
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            dev=settings.dev,
            access_log=False,
            motd=settings.dev,
            single_process=single,
            protocol=app.ctx.http_protocol,  # the header deadline (web/internals)
            backlog=LISTEN_BACKLOG,
        )
        if single:
            Sanic.serve_single(primary=app)
        else:
            serve_with_manager(app, loader)
    except OSError as exc:
        # Only binding fails this way; another OSError (the manager's own helper
        # process gone, say) is not about the address.
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            fail(f"The server stopped: {exc.strerror or exc}")
        fail(f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")


@main.command()
@database_option
@log_format_option
def migrate(database_url: str | None, log_format: str | None) -> None:
    """Apply pending database migrations (safe to run again)."""
    settings = load_settings(database_url=database_url, log_format=log_format)
    applied = migrate_database(settings.database_url)
    for name in applied:
        say(f"Applied migration {name}")
    if not applied:
        say("No migrations to apply; the database is up to date.")


@main.command("create-room")
@click.argument("name")
@database_option
def create_room(name: str, database_url: str | None) -> None:
    """Create a room called NAME and print its ID."""
    from . import protocol
    from .services import rooms

    settings = load_settings(database_url=database_url)
    try:
        checked = protocol.CreateRoomRequest(name=name).name
    except ValueError as exc:
        fail(f"Invalid room name: {_first_error(exc)}")
    room = run_db(settings.database_url, lambda: rooms.create_room(checked))
    say(f"Created room {room.id}: {room.name}")


def _first_error(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    return str(exc)


@main.command("list-rooms")
@database_option
def list_rooms(database_url: str | None) -> None:
    """List the rooms that are not deleted."""
    from .services import rooms

    settings = load_settings(database_url=database_url)
    found = run_db(settings.database_url, rooms.list_rooms)
    if not found:
        say("No rooms.")
    for room in found:
        say(f"{room.id}\t{room.name}")


@main.command("delete-room")
@click.argument("room_id", type=int)
@database_option
def delete_room(room_id: int, database_url: str | None) -> None:
    """Delete room ROOM_ID (soft delete; its open websockets are closed with 1001)."""
    from .services import rooms

    settings = load_settings(database_url=database_url)
    room = run_db(settings.database_url, lambda: rooms.delete_room(room_id))
    say(f"Deleted room {room.id}: {room.name}")


for command in (*admin_commands, *data_commands):
    main.add_command(command)
main.add_command(rotate_secret)


def run() -> None:
    """Entry point that also turns Ctrl-C into a quiet exit."""
    try:
        with start_up_deadline():
            main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except ConfigError as exc:
        fail(exc.message)
