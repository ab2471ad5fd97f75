"""What every `chatroom-server` command shares: settings, the database, one-line errors."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from .errors import ChatError, StorageError
from .logs import json_line
from .settings import Settings, mask_url

T = TypeVar("T")

database_option = click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="sqlite://FILE or postgres://USER@HOST/DB (env CHATROOM_DATABASE_URL; "
    "default sqlite://chatroom.sqlite3).",
)


# The CLI's own lines (migrations, errors) as JSON too, once the settings it loaded say
# --log-format json (CHATROOM_LOG_FORMAT): then every line a command prints is JSON.
_json_lines = False
CLI_LOGGER = "chatroom_server.cli"


def say(message: str) -> None:
    """One line on stdout: as is, or as a JSON log line (level INFO)."""
    click.echo(json_line("INFO", CLI_LOGGER, message) if _json_lines else message)


def fail(message: str) -> None:
    if _json_lines:
        click.echo(json_line("ERROR", CLI_LOGGER, f"Error: {message}"), err=True)
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def load_settings(**flags: Any) -> Settings:
    global _json_lines
    _json_lines = flags.get("log_format") == "json"  # for an error in the settings too
    try:
        settings = Settings.load(**flags)
    except ChatError as exc:
        fail(exc.message)
        raise  # unreachable
    _json_lines = settings.log_format == "json"
    return settings


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
        fail(describe_db_failure(database_url, exc.__cause__ or exc))
    except ChatError as exc:
        fail(exc.message)
    except Exception as exc:  # a driver error: say what, never a traceback
        fail(describe_db_failure(database_url, exc))
    raise AssertionError("unreachable")


def describe_db_failure(database_url: str, exc: BaseException) -> str:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror
    return f"Cannot use the database {mask_url(database_url)}: {detail}"


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
