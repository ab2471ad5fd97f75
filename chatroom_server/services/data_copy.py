"""`copy-data`: move everything to another database, typically SQLite to PostgreSQL.

The rules around the copy (db/copy_rows.py does the rows): the source must be a
database of this version (no pending migration) and is only read; the target
must be empty (no rows, no tables of anything else), checked before it is
migrated and again after, so nothing in it is ever changed, overwritten or mixed
with copied rows. Afterwards the same logins, tokens (the signing secret
is a row too), history, `since` cursors and unread counts work against it.

The servers should be stopped first: whatever they store after the source's
snapshot is taken is not in the copy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..db import apply_migrations, close_database, pending_migrations
from ..db import copy_rows as rows
from ..db.checkpoint import sqlite_path
from ..errors import BadRequest, ChatError, Conflict, NotFound, StorageError
from ..settings import mask_url


async def copy_data(source_url: str, target_url: str, progress: rows.Progress) -> int:
    """Copy every row from `source_url` into the empty database `target_url`;
    the number of rows copied. Progress lines go to `progress`."""
    _check_files(source_url, target_url)
    with _failures_of(source_url):
        pending = await pending_migrations(source_url)
    if pending:
        raise Conflict(
            f"The source database lacks {len(pending)} migration(s) ({', '.join(pending)}); "
            "run 'chatroom-server migrate' on it first."
        )
    # Checked before migrating too: a wrong target (another application's database,
    # one of an older version with rows) is refused untouched. (The source answered
    # already: a failure here is the target's.)
    with _failures_of(target_url):
        await rows.open_both(source_url, target_url)
        try:
            await _check_target_empty()
        finally:
            await close_database()
    with _failures_of(target_url):
        for name in await apply_migrations(target_url):
            progress(f"Applied migration {name} to the target")
    with _failures_of(None):
        await rows.open_both(source_url, target_url)
        try:
            await _check_target_empty()  # again: something may have written meanwhile
            return await rows.copy_rows(progress)
        finally:
            await close_database()


async def _check_target_empty() -> None:
    foreign = await rows.foreign_tables()
    if foreign:
        raise Conflict(
            f"The target database has tables that are not chatroom-server's "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''});"
            " copy-data only copies into an empty database."
        )
    full = await rows.tables_with_rows()
    if full:
        raise Conflict(
            f"The target database is not empty (rows in {', '.join(full)});"
            " copy-data only copies into an empty database."
        )


def _check_files(source_url: str, target_url: str) -> None:
    """SQLite files: the source exists, the target's directory does (connecting to a
    file in a missing directory would hang the ORM), and they are two files."""
    if source_url == target_url:
        raise BadRequest("--from and --to are the same database.")
    source, target = sqlite_path(source_url), sqlite_path(target_url)
    if source_url.startswith("sqlite://") and source is None:
        raise BadRequest("An in-memory SQLite database has nothing to copy; give a file.")
    if target_url.startswith("sqlite://") and target is None:
        raise BadRequest("An in-memory SQLite database would be lost at exit; give a file.")
    if source is not None and not os.path.isfile(source):
        raise NotFound(f"The database {source} does not exist.")
    if target is not None:
        directory = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(directory):
            raise NotFound(f"The directory {directory} does not exist.")
        if source is not None and os.path.exists(target) and os.path.samefile(source, target):
            raise BadRequest("--from and --to are the same database.")


@contextlib.contextmanager
def _failures_of(database_url: str | None) -> Iterator[None]:
    """A driver or ORM failure as one sentence naming the database (password masked)."""
    try:
        yield
    except ChatError:
        raise
    except Exception as exc:
        text = str(exc).strip()
        detail = text.splitlines()[0] if text else type(exc).__name__
        if isinstance(exc, OSError) and exc.strerror:
            detail = exc.strerror
        where = "" if database_url is None else f"use the database {mask_url(database_url)}"
        raise StorageError(f"Cannot {where or 'copy'}: {detail}") from exc
