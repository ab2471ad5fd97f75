"""Operator commands on the data (SPEC 14): `backup` and `copy-data`.

The work is in db/backup.py (SQLite's online backup) and services/data_copy.py;
here: flags, progress lines, and every failure as one line with a non-zero exit.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from .cli_support import database_option, fail, load_settings, log_format_option, say
from .errors import ChatError
from .settings import mask_url


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@database_option
@log_format_option
def backup(path: Path, force: bool, database_url: str | None, log_format: str | None) -> None:
    """Back up the SQLite database to PATH, live.

    A consistent copy while servers run, with SQLite's online backup API; it is
    checked (integrity_check) before it is moved to PATH. For PostgreSQL, use
    pg_dump.
    """
    from .db.backup import backup_sqlite

    settings = load_settings(database_url=database_url, log_format=log_format)
    try:
        report = backup_sqlite(settings.database_url, path, force)
    except ChatError as exc:
        fail(exc.message)
        raise AssertionError("unreachable") from None
    say(
        f"Backed up {report.source} to {report.target} ({_size(report.bytes)}); integrity check ok."
    )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n} {unit}"
        n //= 1024
    return f"{n} GiB"


def _checked_url(flag: str, url: str) -> str:
    """The URL's scheme, checked as CHATROOM_DATABASE_URL's is."""
    from .settings import Settings

    try:
        return Settings.load({}, database_url=url).database_url
    except ChatError as exc:
        fail(f"{flag}: {exc.message}")
    raise AssertionError("unreachable")


@click.command("copy-data")
@click.option(
    "--from",
    "source",
    required=True,
    metavar="URL",
    help="The database to copy (sqlite://FILE or postgres://...); only read. Stop the "
    "servers first: what they store after the copy starts is not copied.",
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="An empty database (migrated first); refused untouched if a table has rows or isn't ours.",
)
@log_format_option
def copy_data(source: str, target: str, log_format: str | None) -> None:
    """Copy everything into an empty database.

    Typically from SQLite to PostgreSQL. Users, sessions, rooms, members, bans,
    mutes, messages with their IDs and order, edits and deletes, read markers and
    the signing secret: afterwards the same logins, tokens, history and `since`
    cursors work against the new one.
    """
    from .services.data_copy import copy_data as run_copy

    load_settings(log_format=log_format)  # the log format (flag, env, .env) only
    source, target = _checked_url("--from", source), _checked_url("--to", target)
    try:
        total = asyncio.run(run_copy(source, target, say))
    except ChatError as exc:
        fail(exc.message)
        raise AssertionError("unreachable") from None
    say(
        f"Copied {total} row{'' if total == 1 else 's'} from {mask_url(source)} to "
        f"{mask_url(target)}; point the servers at the new database (CHATROOM_DATABASE_URL) "
        "and start them."
    )


COMMANDS = (backup, copy_data)
