"""The `chatroom-server` command: serve, migrate and room administration.

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
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import click

from . import __version__
from .errors import ChatError, ConfigError, StorageError
from .settings import Settings, mask_url

T = TypeVar("T")

database_option = click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="sqlite://FILE or postgres://USER@HOST/DB (env CHATROOM_DATABASE_URL; "
    "default sqlite://chatroom.sqlite3).",
)


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
        "proxies_count", int, "0", "Trusted proxies in front: the client address is then "
        "taken from X-Forwarded-For"
    ),
)  # fmt: skip


def with_abuse_limits(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(ABUSE_LIMITS):
        command = option(command)
    return command


def fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def load_settings(**flags: Any) -> Settings:
    try:
        return Settings.load(**flags)
    except ChatError as exc:
        fail(exc.message)
        raise  # unreachable


def run_db(database_url: str, job: Callable[[], Awaitable[T]]) -> T:
    """Run one database job in a fresh loop, with the connection opened and closed."""
    from .db import close_database, open_database

    async def main() -> T:
        await open_database(database_url)
        try:
            return await job()
        finally:
            await close_database()

    try:
        return asyncio.run(main())
    except StorageError as exc:
        fail(_describe_db_failure(database_url, exc.__cause__ or exc))
    except ChatError as exc:
        fail(exc.message)
    except Exception as exc:  # a driver error: say what, never a traceback
        fail(_describe_db_failure(database_url, exc))
    raise AssertionError("unreachable")


def _describe_db_failure(database_url: str, exc: BaseException) -> str:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror
    return f"Cannot use the database {mask_url(database_url)}: {detail}"


def migrate_database(database_url: str) -> list[str]:
    from .db import apply_migrations

    try:
        return asyncio.run(apply_migrations(database_url))
    except Exception as exc:
        fail(_describe_db_failure(database_url, exc))
    raise AssertionError("unreachable")


class OneLineErrors(click.Group):
    """click's own usage errors too are one line on stderr and exit 1 (SPEC 2)."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            message = exc.format_message().rstrip(".")
            if exc.ctx is not None:
                message += f"; see '{exc.ctx.command_path} --help'"
            fail(f"{message}.")
        except click.ClickException as exc:
            fail(exc.format_message())
        except click.Abort:
            fail("Aborted.")
        sys.exit(code if isinstance(code, int) else 0)


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
@click.option("--dev", is_flag=True, default=None, help="Auto-reload and debug logs.")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations at start.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Log level (env CHATROOM_LOG_LEVEL; default INFO).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="text, or one JSON object a line (env CHATROOM_LOG_FORMAT).",
)
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
    if not no_migrate:
        for name in migrate_database(settings.database_url):
            click.echo(f"Applied migration {name}")
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
        fail(_describe_db_failure(settings.database_url, exc))
    if pending:
        fail(
            f"The database lacks {len(pending)} migration(s) ({', '.join(pending)}); "
            "run 'chatroom-server migrate' first, or start without --no-migrate."
        )
    if settings.jwt_secret is None:
        # Create the shared secret now, once, rather than racing between workers.
        run_db(settings.database_url, shared_secret)


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
def migrate(database_url: str | None) -> None:
    """Apply pending database migrations (safe to run again)."""
    settings = load_settings(database_url=database_url)
    applied = migrate_database(settings.database_url)
    for name in applied:
        click.echo(f"Applied migration {name}")
    if not applied:
        click.echo("No migrations to apply; the database is up to date.")


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
    click.echo(f"Created room {room.id}: {room.name}")


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
        click.echo("No rooms.")
    for room in found:
        click.echo(f"{room.id}\t{room.name}")


@main.command("delete-room")
@click.argument("room_id", type=int)
@database_option
def delete_room(room_id: int, database_url: str | None) -> None:
    """Delete room ROOM_ID (soft delete; its open websockets are closed with 1001)."""
    from .services import rooms

    settings = load_settings(database_url=database_url)
    room = run_db(settings.database_url, lambda: rooms.delete_room(room_id))
    click.echo(f"Deleted room {room.id}: {room.name}")


# ---------------------------------------------------------------- site administration

redis_option = click.option(
    "--redis-url",
    default=None,
    metavar="URL",
    help="The servers' Redis, to tell them at once (env CHATROOM_REDIS_URL); without it "
    "they notice through the database within about a second.",
)


def _who(account: Any) -> str:
    return f"user {account.id} ({account.user_name})"


def _cell(value: str) -> str:
    # One user a line, one field a column, whatever a legacy name holds.
    return value.replace("\t", " ").replace("\r", " ").replace("\n", " ")


@main.command("list-users")
@database_option
def list_users(database_url: str | None) -> None:
    """List users: ID, name, email, admin, deactivated (tab-separated, by ID).

    The admin column says "admin" or "-"; the deactivated one the time it
    happened (UTC) or "-".
    """
    from .services import admin

    settings = load_settings(database_url=database_url)

    async def job() -> int:
        count, after = 0, 0
        while page := await admin.list_accounts(after):
            for a in page:
                since = "-"
                if a.deactivated_at is not None:
                    since = a.deactivated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                flag = "admin" if a.is_admin else "-"
                click.echo(f"{a.id}\t{_cell(a.user_name)}\t{_cell(a.email)}\t{flag}\t{since}")
            count, after = count + len(page), page[-1].id
        return count

    if not run_db(settings.database_url, job):
        click.echo("No users.")


def _announce(settings: Settings, revocation: Any) -> str | None:
    """Tell running servers through Redis (if configured): None, or why it failed."""
    return None if settings.redis_url is None else asyncio.run(_publish(settings, revocation))


async def _publish(settings: Settings, revocation: Any) -> str | None:
    from . import protocol
    from .pubsub import CONTROL_ROOM, publish_once

    assert settings.redis_url is not None
    try:
        await publish_once(
            settings.redis_url,
            CONTROL_ROOM,
            protocol.bus_revocation(revocation),
            settings.redis_prefix,
        )
    except ChatError as exc:
        return exc.message
    return None


def _report_announcement(settings: Settings, revocation: Any) -> None:
    problem = _announce(settings, revocation)
    if problem is not None:
        click.echo(
            f"Warning: could not tell the servers through Redis ({problem}); "
            "they notice through the database within about a second.",
            err=True,
        )


@main.command("deactivate-user")
@click.argument("user")
@database_option
@redis_option
def deactivate_user(user: str, database_url: str | None, redis_url: str | None) -> None:
    """Deactivate USER (an ID or a name): every token refused, sockets closed (1008),
    sessions ended; their messages stay."""
    from .services import admin

    settings = load_settings(database_url=database_url, redis_url=redis_url)
    account, revocation = run_db(settings.database_url, lambda: admin.deactivate(user))
    if revocation is None:
        click.echo(f"The {_who(account)} was already deactivated.")
        return
    _report_announcement(settings, revocation)
    click.echo(f"Deactivated {_who(account)}: their tokens are refused and sessions ended.")


@main.command("reactivate-user")
@click.argument("user")
@database_option
def reactivate_user(user: str, database_url: str | None) -> None:
    """Let USER (an ID or a name) log in again."""
    from .services import admin

    settings = load_settings(database_url=database_url)
    account, changed = run_db(settings.database_url, lambda: admin.reactivate(user))
    if not changed:
        click.echo(f"The {_who(account)} is not deactivated.")
        return
    click.echo(f"Reactivated {_who(account)}: they may log in again.")


@main.command("set-admin")
@click.argument("user")
@click.option("--off", is_flag=True, help="Take the site admin right away instead.")
@database_option
def set_admin(user: str, off: bool, database_url: str | None) -> None:
    """Make USER (a name or an ID) a site admin: sees and moderates every room."""
    from .services import admin

    settings = load_settings(database_url=database_url)
    account, changed = run_db(settings.database_url, lambda: admin.set_admin(user, not off))
    now = "no longer" if off else "now"
    if not changed:
        now = "already not" if off else "already"
    click.echo(f"The {_who(account)} is {now} a site admin.")


@main.command(
    "reset-password",
    # Anything after USER is refused by us, not echoed back by click's usage error:
    # it may well be a password typed where it does not belong.
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("user")
@database_option
@redis_option
@click.pass_context
def reset_password(
    ctx: click.Context, user: str, database_url: str | None, redis_url: str | None
) -> None:
    """Set a new password for USER (a name or an ID) and end every session of theirs.

    The password is read from stdin (one line) when that is not a terminal, else
    asked for twice without echo; never from the command line.
    """
    from .services import admin

    if ctx.args:
        fail(
            "reset-password takes only the user: the new password is never taken from "
            "the command line (pipe it on stdin, or answer the prompt)."
        )
    settings = load_settings(database_url=database_url, redis_url=redis_url)
    run_db(settings.database_url, lambda: admin.find_account(user))  # before asking
    password = _read_new_password()
    account, revocation = run_db(
        settings.database_url,
        lambda: admin.reset_password(user, password, settings.bcrypt_rounds),
    )
    _report_announcement(settings, revocation)
    click.echo(f"Set a new password for {_who(account)} and ended their sessions.")


def _read_new_password() -> str:
    from . import protocol

    stdin = sys.stdin
    if stdin.isatty():
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    else:
        raw = stdin.buffer.readline(4 * protocol.PASSWORD_MAX_BYTES)
        if not raw:
            fail("No password on stdin: pipe the new password in, one line.")
        try:
            password = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            fail("The password on stdin is not valid UTF-8.")
        if not password:
            fail("The password on stdin is empty.")
    try:
        return protocol.check_new_password(password)
    except ValueError as exc:
        fail(f"Invalid password: {exc}")
    raise AssertionError("unreachable")


def run() -> None:
    """Entry point that also turns Ctrl-C into a quiet exit."""
    try:
        main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except ConfigError as exc:
        fail(exc.message)
