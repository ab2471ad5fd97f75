"""`chatroom-server backup`: a consistent copy of a live SQLite database (SPEC 14).

SQLite's online backup API copies the pages under one read transaction when it is
asked for every page in one step (`pages=-1`): in WAL mode a reader never blocks
the server's writer, and the copy is the database as of one commit. In small
steps instead, every commit by another process would restart the copy from the
first page, and a busy server could keep it from ever finishing.

The copy is written to a hidden file beside PATH, checked (`PRAGMA
integrity_check`), turned into a single self-contained file (rollback journal
instead of WAL: nothing to lose in a -wal file next to it), synced, and only then
moved to PATH: a backup that fails or is interrupted never leaves a partial file
where the real one is expected.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..errors import BadRequest, Conflict, NotFound, StorageError
from .checkpoint import sqlite_path

# PostgreSQL has its own tools for this; the answer says which.
PG_DUMP = (
    "backup copies SQLite databases; for PostgreSQL use pg_dump "
    "(e.g. pg_dump --format=custom --file=FILE DATABASE_URL)."
)


@dataclass(frozen=True, slots=True)
class BackupReport:
    source: str
    target: Path
    pages: int
    bytes: int


def backup_sqlite(database_url: str, target: Path, force: bool = False) -> BackupReport:
    """Copy the SQLite database of `database_url` to `target` while it may be in use.

    Raises a ChatError with one sentence for whatever stops it: a PostgreSQL URL,
    a missing database, `target` existing without `force`, a failed copy or check.
    """
    if not database_url.startswith("sqlite://"):
        raise BadRequest(PG_DUMP)
    source = sqlite_path(database_url)
    if source is None:
        raise BadRequest("An in-memory SQLite database has nothing to back up; give a file.")
    if not os.path.isfile(source):
        raise NotFound(f"The database {source} does not exist.")
    _check_target(source, target, force)
    try:
        fd, partial = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".partial", dir=target.parent
        )
        os.close(fd)
    except OSError as exc:
        raise StorageError(f"Cannot write in {target.parent}: {exc.strerror or exc}.") from None
    try:
        pages, page_size = _copy(source, partial)
        _sync(partial)
        _move(partial, target, force)
        _sync_directory(target.parent)
    except OSError as exc:
        raise StorageError(f"Cannot write {target}: {exc.strerror or exc}.") from None
    finally:
        for leftover in (partial, partial + "-journal", partial + "-wal", partial + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    return BackupReport(source, target, pages, pages * page_size)


def _check_target(source: str, target: Path, force: bool) -> None:
    if not target.parent.is_dir():
        raise NotFound(f"The directory {target.parent} does not exist.")
    if target.is_dir():
        raise BadRequest(f"{target} is a directory; give the backup file's name.")
    if not target.exists():
        return
    if os.path.samefile(source, target):
        raise BadRequest(f"{target} is the database itself; give another file.")
    if not force:
        raise Conflict(f"{target} already exists; pass --force to overwrite it.")


def _copy(source: str, partial: str) -> tuple[int, int]:
    """The whole copy and its check; (pages, page size) of the copy."""
    try:
        # mode=rw: a missing file is an error, never a new empty database.
        src = sqlite3.connect(f"file:{quote(source)}?mode=rw", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise StorageError(f"Cannot open the database {source}: {_first_line(exc)}.") from None
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # every page in one step: one consistent snapshot
            dst.execute("PRAGMA journal_mode=DELETE")
            problems = [row[0] for row in dst.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise StorageError(f"The backup failed its integrity check: {problems[0]}.")
            pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
            page_size = int(dst.execute("PRAGMA page_size").fetchone()[0])
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise StorageError(f"Cannot back up {source}: {_first_line(exc)}.") from None
    finally:
        src.close()
    return pages, page_size


def _move(partial: str, target: Path, force: bool) -> None:
    if force:
        os.replace(partial, target)
        return
    # A hard link never replaces a file that appeared since the check.
    try:
        os.link(partial, target)
    except FileExistsError:
        raise Conflict(f"{target} already exists; pass --force to overwrite it.") from None
    except OSError:  # a file system without hard links
        if target.exists():
            raise Conflict(f"{target} already exists; pass --force to overwrite it.") from None
        os.replace(partial, target)


def _sync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform syncs a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__
