"""What every `chatroom-server` command shares: settings, the database, one-line errors."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from .errors import ChatError, StorageError
from .settings import Settings, mask_url

T = TypeVar("T")

database_option = click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="sqlite://FILE or postgres://USER@HOST/DB (env CHATROOM_DATABASE_URL; "
    "default sqlite://chatroom.sqlite3).",
)


def fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def check_redis(settings: Settings) -> None:
    """Refuse, in one line, a Redis whose mode disagrees with --redis-cluster: half
    working (messages cross hosts, presence counts nobody) is worse than not at all."""
    if settings.redis_url is None:
        return
    from .pubsub import redis_refusal

    problem = asyncio.run(redis_refusal(settings.redis_url, settings.redis_cluster))
    if problem is not None:
        fail(problem)


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
