"""Per-room ordering on the receiving side: every message once, in `seq` order.

Messages of a room (and the edits and deletes of them, which take their place in
the same order) are numbered 1, 2, 3... in commit order. Whatever the broker
does (a publish that overtook another, a payload lost while Redis was away, a
duplicate after a fallback), the sequencer hands on exactly seq last+1, holds
anything ahead of a hole, and back-fills the hole from the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("chatroom_server.realtime")

# (row ID, frame, for protocol v2 connections only)
Emit = Callable[[int, str, bool], None]
# A row read back: (seq, row ID, its frame or None when there is nothing to show
# (a message deleted since), v2 only).
Fetched = tuple[int, int, str | None, bool]
Fetch = Callable[[int], Awaitable[list[Fetched]]]  # after seq -> rows

BACKFILL_BATCH = 500


class Sequencer:
    def __init__(self, emit: Emit, fetch: Fetch) -> None:
        self._emit = emit
        self._fetch = fetch
        self.last: int | None = None  # None until start() knows where the room is
        self._held: dict[int, tuple[int, str, bool]] = {}
        self._backfill: asyncio.Task[None] | None = None
        self._closed = False

    def start(self, last: int) -> None:
        """The room's newest seq when this process began listening; older ones are history."""
        self.last = last
        self._drain()

    def offer(self, seq: int, message_id: int, frame: str, v2_only: bool = False) -> None:
        if self._closed or (self.last is not None and seq <= self.last):
            return  # already delivered (a duplicate or a back-filled one)
        self._held[seq] = (message_id, frame, v2_only)
        self._drain()

    def resync(self) -> None:
        """After the broker may have lost payloads: look in the database for newer ones."""
        if self.last is not None and self._backfill is None and not self._closed:
            self._backfill = asyncio.create_task(self._fill(), name="room-backfill")

    def close(self) -> None:
        """The room closed here: hand on nothing more, and stop any back-fill."""
        self._closed = True
        if self._backfill is not None:
            self._backfill.cancel()
            self._backfill = None
        self._held.clear()

    def _drain(self, refill: bool = True) -> None:
        """Hand on every held message that is next in line; back-fill if a hole remains."""
        if self.last is None or self._closed:
            return
        for seq in [s for s in self._held if s <= self.last]:
            del self._held[seq]
        while self.last + 1 in self._held:
            self.last += 1
            message_id, frame, v2_only = self._held.pop(self.last)
            self._emit(message_id, frame, v2_only)
        if refill and self._held and self._backfill is None:
            self._backfill = asyncio.create_task(self._fill(), name="room-backfill")

    async def _fill(self) -> None:
        delay = 0.05
        try:
            while True:
                assert self.last is not None
                target = min(self._held) - 1 if self._held else None
                try:
                    rows = await self._fetch(self.last)
                except Exception:
                    log.warning("back-fill failed; retrying in %.1fs", delay, exc_info=True)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                for seq, row_id, frame, v2_only in rows:
                    if seq == self.last + 1:
                        self.last = seq
                        self._held.pop(seq, None)
                        if frame is not None:
                            self._emit(row_id, frame, v2_only)
                self._drain(refill=False)
                if len(rows) == BACKFILL_BATCH:
                    continue  # more may follow
                if not self._held:
                    return
                if target is not None and self.last < target:
                    # The hole is not in the database (yet): wait a little and look again.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            self._backfill = None
