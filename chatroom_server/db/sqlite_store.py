"""The message store on SQLite: group commits in one trip to a thread of their own.

Through the ORM a commit is six trips to aiosqlite's thread and back (BEGIN,
lock, insert, advance, read IDs, COMMIT), and each return must win the GIL from
a busy event loop: under load that waiting, not SQLite, set the many-rooms
benchmark's p99. Here the whole transaction runs as one call in a thread that
owns a connection of its own: one hand-off there and one back per batch.

SQLite lets one writer in at a time, whichever connection it uses: this one
takes the write lock when the transaction begins (BEGIN IMMEDIATE), and waits
out any other writer (the ORM's connection, the CLI) for the busy timeout.
The plan of a batch (resends, seq numbers, gone rooms) comes from
services.messages.plan_batch, as on PostgreSQL. Reads go through the ORM's
connection (reads.py), and WAL checkpoints run off the commit path (checkpoint.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from ..domain import EDIT, Change, Message
from ..errors import ConfigError, StorageError
from . import connection_url
from .checkpoint import Checkpointer, sqlite_path
from .errors import UNAVAILABLE
from .reads import OrmReads
from .store import (
    ChangeDraft,
    Draft,
    OriginalKey,
    Planner,
    Stored,
    change_of,
    message_gone,
    original_keys,
    room_ids_of,
)

log = logging.getLogger("chatroom_server.storage")

_PRAGMA_NAME = re.compile(r"[A-Za-z_]+")
_PRAGMA_VALUE = re.compile(r"[A-Za-z0-9_-]+")

_INSERT = (
    "INSERT INTO messages (room_id, user_id, user_name, text, client_message_id, seq, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_LOCK_ROOMS = "SELECT id, last_seq FROM rooms WHERE id IN ({rooms}) AND deleted_at IS NULL"
_ADVANCE = "UPDATE rooms SET last_seq = ? WHERE id = ?"
_ORIGINAL_COLUMNS = "id, room_id, user_id, user_name, text, created_at, client_message_id, seq"
_LOCK_ROOM = "SELECT last_seq FROM rooms WHERE id = ? AND deleted_at IS NULL"
_TARGET = (
    f"SELECT {_ORIGINAL_COLUMNS} FROM messages"
    " WHERE id = ? AND room_id = ? AND kind = 0 AND deleted_at IS NULL"
)
_INSERT_CHANGE = (
    "INSERT INTO messages (room_id, user_id, user_name, text, seq, created_at, kind, target_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_EDIT = "UPDATE messages SET text = ?, edited_at = ? WHERE id = ?"
_DELETE = "UPDATE messages SET deleted_at = ?, deleted_by_id = ? WHERE id = ?"


def pragmas_of(database_url: str) -> dict[str, str]:
    """The pragmas the ORM's connection uses: ours, any the URL sets, and Tortoise's
    own default (foreign keys on: a message of an unknown author is refused)."""
    query = connection_url(database_url, background_checkpoints=True).partition("?")[2]
    pragmas = {"foreign_keys": "ON"}
    pragmas.update(parse_qsl(query))
    pragmas.pop("connection_name", None)
    pragmas.pop("fetch_inserted", None)
    return pragmas


class SqliteStore(OrmReads):
    """The MessageStore (store.py) of a SQLite file."""

    def __init__(self, database_url: str, plan: Planner) -> None:
        path = sqlite_path(database_url)
        if path is None:
            raise ConfigError(
                "An in-memory SQLite database cannot be shared by the server's"
                " connections; give it a file, e.g. sqlite://chatroom.sqlite3."
            )
        self.path = path
        self.pragmas = pragmas_of(database_url)
        self.plan = plan
        self.checkpointer = Checkpointer(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        """Connect, with the same pragmas as the ORM's connection (WAL and the rest)."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        await self._loop.run_in_executor(self._executor, self._connect, self.pragmas)
        self.checkpointer.start()

    async def close(self) -> None:
        await self.checkpointer.stop()
        if self._executor is None or self._loop is None:
            return
        await self._loop.run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def store_batch(self, drafts: Sequence[Draft]) -> list[Stored]:
        """MessageStore.store_batch, in one transaction on this connection."""
        if self._executor is None or self._loop is None:
            raise StorageError(UNAVAILABLE)
        try:
            return await self._loop.run_in_executor(self._executor, self._store, drafts)
        except sqlite3.IntegrityError:
            raise  # a bad draft (an unknown author): the writer stores the rest one by one
        except sqlite3.Error as exc:
            log.error("database error: %s", type(exc).__name__)
            raise StorageError(UNAVAILABLE) from exc

    async def store_change(self, draft: ChangeDraft) -> Change:
        """MessageStore.store_change, in one transaction on this connection."""
        if self._executor is None or self._loop is None:
            raise StorageError(UNAVAILABLE)
        try:
            return await self._loop.run_in_executor(self._executor, self._change, draft)
        except sqlite3.Error as exc:
            log.error("database error: %s", type(exc).__name__)
            raise StorageError(UNAVAILABLE) from exc

    async def pragma(self, name: str) -> object:
        """A pragma's value on this connection (for diagnostics and tests)."""
        if self._executor is None or self._loop is None or not _PRAGMA_NAME.fullmatch(name):
            raise ValueError(name)
        return await self._loop.run_in_executor(self._executor, self._pragma, name)

    # ------------------------------------------------------------------ in the thread

    def _pragma(self, name: str) -> object:
        assert self._conn is not None
        return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    def _connect(self, pragmas: dict[str, str]) -> None:
        # isolation_level=None: we say BEGIN and COMMIT ourselves.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for name, value in pragmas.items():
            if _PRAGMA_NAME.fullmatch(name) and _PRAGMA_VALUE.fullmatch(str(value)):
                conn.execute(f"PRAGMA {name}={value}").fetchall()
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _store(self, drafts: Sequence[Draft]) -> list[Stored]:
        conn = self._conn
        if conn is None:
            raise sqlite3.OperationalError("the writer connection is closed")
        conn.execute("BEGIN IMMEDIATE")
        try:
            room_ids = room_ids_of(drafts)
            # No row locks in SQLite: BEGIN IMMEDIATE already excludes every other writer.
            lock = _LOCK_ROOMS.format(rooms=", ".join("?" * len(room_ids)))
            last = dict(conn.execute(lock, room_ids).fetchall())
            plan = self.plan(drafts, last, _originals(conn, drafts), datetime.now(UTC))
            for row in plan.rows:
                cursor = conn.execute(
                    _INSERT,
                    (
                        row.room_id,
                        row.user_id,
                        row.user_name,
                        row.text,
                        row.client_message_id,
                        row.seq,
                        row.created_at.isoformat(" "),  # as the ORM writes it
                    ),
                )
                row.id = cursor.lastrowid or 0
            conn.executemany(_ADVANCE, [(seq, room) for room, seq in plan.last_seqs().items()])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return plan.outcome()

    def _change(self, draft: ChangeDraft) -> Change:
        conn = self._conn
        if conn is None:
            raise sqlite3.OperationalError("the writer connection is closed")
        room_id = draft.room.id
        conn.execute("BEGIN IMMEDIATE")
        try:
            locked = conn.execute(_LOCK_ROOM, (room_id,)).fetchone()
            found = conn.execute(_TARGET, (draft.target_id, room_id)).fetchone()
            if locked is None or found is None:
                raise message_gone(draft.target_id)
            target = _message(found, draft.room.name)
            seq, now = locked[0] + 1, datetime.now(UTC)
            at = now.isoformat(" ")  # as the ORM writes it
            who = draft.actor
            cursor = conn.execute(
                _INSERT_CHANGE,
                (room_id, who.user_id, who.user_name, draft.text, seq, at, draft.kind, target.id),
            )
            if draft.kind == EDIT:
                conn.execute(_EDIT, (draft.text, at, target.id))
            else:
                conn.execute(_DELETE, (at, who.user_id, target.id))
            conn.execute(_ADVANCE, (seq, room_id))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return change_of(draft, cursor.lastrowid or 0, seq, now, target)


def _message(row: tuple[object, ...], room_name: str) -> Message:
    message_id, room_id, user_id, user_name, text, created_at, cid, seq = row
    return Message(
        id=int(message_id),  # type: ignore[call-overload]
        room_id=int(room_id),  # type: ignore[call-overload]
        room_name=room_name,
        text=str(text),
        user_id=int(user_id),  # type: ignore[call-overload]
        user_name=str(user_name),
        created_at=datetime.fromisoformat(str(created_at)),
        client_message_id=None if cid is None else str(cid),
        seq=int(seq),  # type: ignore[call-overload]
    )


def _originals(conn: sqlite3.Connection, drafts: Sequence[Draft]) -> dict[OriginalKey, Message]:
    """Messages already stored under the drafts' client message IDs (resends)."""
    keys = original_keys(drafts)
    if not keys:
        return {}
    where = " OR ".join(["(room_id = ? AND user_id = ? AND client_message_id = ?)"] * len(keys))
    params = [value for key in keys for value in key]
    names = {d.room.id: d.room.name for d in drafts}
    found: dict[OriginalKey, Message] = {}
    for row in conn.execute(f"SELECT {_ORIGINAL_COLUMNS} FROM messages WHERE {where}", params):
        message = _message(row, names[row[1]])
        found[(message.room_id, message.user_id, message.client_message_id or "")] = message
    return found
