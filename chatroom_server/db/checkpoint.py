"""SQLite WAL checkpoints off the commit path.

By default SQLite checkpoints the write-ahead log inside whichever commit makes
it pass 1,000 pages: that commit then copies megabytes into the database file
and syncs it, and every message waiting for it waits too (the many-rooms
benchmark's p99 went from 2.7 ms to 9 ms because of it). The server turns that
off on its own connection (`wal_autocheckpoint=0`) and checkpoints from a
second connection in a thread instead, in PASSIVE mode, which never waits for
and never blocks the writer.

That thread runs at idle CPU priority (SCHED_IDLE on Linux): copying pages is
CPU work, and on a busy core it would otherwise take turns with the event loop
(the many-rooms benchmark's p99 went from 1.9 ms without checkpoints to 3.6 ms
with them at normal priority).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from ..periodic import Periodic

log = logging.getLogger("chatroom_server.storage")

INTERVAL = 1.0  # seconds between checkpoints


def sqlite_path(database_url: str) -> str | None:
    """The file of a sqlite:// URL; None for other databases and in-memory SQLite."""
    if not database_url.startswith("sqlite://"):
        return None
    path = database_url.removeprefix("sqlite://").partition("?")[0]
    return None if path in ("", ":memory:") else path


def lower_thread_priority() -> None:
    """Let the calling thread run only when nothing else wants the CPU (if it can).

    Linux applies SCHED_IDLE to this thread only. Elsewhere nothing is changed:
    the portable fallback, setpriority(), would renice the whole server there.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


class Checkpointer(Periodic):
    def __init__(self, path: str, interval: float = INTERVAL) -> None:
        super().__init__("sqlite-checkpoint", interval, self._checkpoint_in_thread, log)
        self.path = path
        self.checkpoints = 0  # completed so far
        self._thread: ThreadPoolExecutor | None = None

    async def _checkpoint_in_thread(self) -> None:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(
                1, thread_name_prefix="sqlite-checkpoint", initializer=lower_thread_priority
            )
        await asyncio.get_running_loop().run_in_executor(self._thread, self.checkpoint)

    async def stop(self) -> None:
        await super().stop()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, without waiting on anyone."""
        with contextlib.closing(sqlite3.connect(self.path, timeout=0)) as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.checkpoints += 1
