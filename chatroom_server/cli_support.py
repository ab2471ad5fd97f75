"""What every `chatroom-server` command shares: settings, the database, one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import click

from .errors import ChatError, StorageError
from .logs import json_line
from .settings import Settings, env_var, mask_url

T = TypeVar("T")

# SPEC 14: every command's error within 5 s of its start. The database connect at
# start-up must have failed by this many seconds after it, leaving the rest for
# closing, printing and exiting.
START_BUDGET = 3.5

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


log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="text, or one JSON object a line, this command's own lines included "
    "(env CHATROOM_LOG_FORMAT).",
)


def say(message: str) -> None:
    """One line on stdout: as is, or as a JSON log line (level INFO)."""
    click.echo(json_line("INFO", CLI_LOGGER, message) if _json_lines else message)


def warn(message: str) -> None:
    """One line on stderr, "Warning: ..." or a JSON log line (level WARNING)."""
    if _json_lines:
        click.echo(json_line("WARNING", CLI_LOGGER, message), err=True)
    else:
        click.echo(f"Warning: {message}", err=True)


@contextlib.contextmanager
def start_up_deadline() -> Iterator[None]:
    """Around a whole command run as a process: its database connects fit START_BUDGET."""
    from .db import connect_deadline

    with connect_deadline(_process_started() + START_BUDGET):
        yield


def _process_started() -> float:
    """This process's start on the time.monotonic() clock (Linux), else now."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        ticks = int(fields[19])  # starttime: the 22nd field, in clock ticks since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - max(0.0, age)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()


def fail(message: str) -> None:
    if _json_lines:
        click.echo(json_line("ERROR", CLI_LOGGER, f"Error: {message}"), err=True)
    else:
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
    """Run one database job in a fresh loop, with the connection opened (time-boxed,
    see db.connect) and closed."""
    from .db import close_database, connect

    async def main() -> T:
        await connect(database_url)
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


def check_ports(settings: Settings) -> None:
    """Fail at once if serve could not listen: before migrations and imports that
    take seconds on a busy machine (SPEC 14: an error within 5 s). The bind itself
    still reports what goes wrong later; this is the same bind as Sanic's, tried early."""
    for port in (settings.port, settings.metrics_port):
        if port is None:
            continue
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(settings.host).version == 6 else None
        except ValueError:  # a host name
            family = None
        try:
            with socket.socket(family or socket.AF_INET) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((settings.host, port))
        except OSError as exc:
            fail(f"Cannot listen on {settings.host}:{port}: {exc.strerror or exc}")


def describe_db_failure(database_url: str, exc: BaseException) -> str:
    if isinstance(exc, ChatError):  # already a sentence for the user (db.unusable)
        return exc.message
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror
    return f"Cannot use the database {mask_url(database_url)}: {detail}"


def name_environment_variables(group: click.Group) -> None:
    """Make each flag that sets a setting name its CHATROOM_* variable in --help.

    Done once over the finished group, so a command added anywhere gets it too.
    """
    for command in group.commands.values():
        for param in command.params:
            env = env_var(param.name) if param.name else None
            if not isinstance(param, click.Option) or env is None:
                continue
            text = param.help or ""
            if env in text:
                continue
            if "(default " in text:  # "Port (default 8080)." -> "Port (env X; default 8080)."
                text = text.replace("(default ", f"(env {env}; default ", 1)
            else:
                text = f"{text.removesuffix('.')} (env {env}).".lstrip()
            param.help = text


class OneLineErrors(click.Group):
    """click's own usage errors too are one line on stderr and exit 1 (SPEC 2);
    every flag's help names its environment variable (SPEC 14)."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        name_environment_variables(self)
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
