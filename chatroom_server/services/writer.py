"""Group commit: messages sent while a transaction runs are stored by the next one.

One SQLite (or PostgreSQL) commit per message caps a server at a few hundred
messages a second; one commit per batch costs about the same and carries every
message that arrived meanwhile. An idle server still commits a lone message at
once: a batch is whatever is waiting a few loop turns after the previous commit
ends (SETTLE_TURNS).

After each commit, `after_commit` gets the new messages in commit order (and so
in `seq` order per room) before anybody's `submit` returns, and before the next
batch is stored: this process publishes every room's messages in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from .. import metrics
from ..db.store import Draft, Stored
from ..domain import Identity, Message, Room
from ..errors import ChatError, StorageError

log = logging.getLogger("chatroom_server.storage")

AfterCommit = Callable[[list[Message]], Awaitable[None]]
# How a batch is stored: the message store's store_batch (db/store.py).
StoreBatch = Callable[[Sequence[Draft]], Awaitable[list[Stored]]]

MAX_BATCH = 256

# After a commit the writer lets the event loop turn this many times before it
# takes the next batch. Idle, a turn costs microseconds. Busy, the commit's
# fan-out may have held the loop for milliseconds while clients kept writing:
# these turns let those frames be read, parsed and queued (about four hops from
# the socket to submit()) so they share the next commit, and then one write per
# socket, instead of trailing behind in commits of their own. Measured in the
# throughput benchmark: 17 frames per socket write without, 50 with.
SETTLE_TURNS = 8

# A draft and the future its sender awaits.
Waiting = tuple[Draft, "asyncio.Future[tuple[Message, bool]]"]


class MessageWriter:
    def __init__(
        self,
        after_commit: AfterCommit,
        store: StoreBatch,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._after_commit = after_commit
        self.store = store
        self._max_batch = max_batch
        self._waiting: list[Waiting] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def busy(self) -> bool:
        return self._task is not None

    def submit(
        self, room: Room, author: Identity, text: str, client_message_id: str | None = None
    ) -> asyncio.Future[tuple[Message, bool]]:
        """Queue one message; the future resolves once it is committed and handed on.

        It resolves to the message and whether it was a resend (see store_batch),
        or fails with a ChatError. Messages are stored in the order submitted.
        """
        loop = self._loop
        if self._task is None or loop is None:
            # Looked up when idle only: get_running_loop() costs a system call (getpid).
            self._loop = loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name="group-commit")
        done: asyncio.Future[tuple[Message, bool]] = loop.create_future()
        self._waiting.append((Draft(room, author, text, client_message_id), done))
        return done

    async def _run(self) -> None:
        batch: list[Waiting] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._commit(batch)
                batch = []
                for _ in range(SETTLE_TURNS):
                    await asyncio.sleep(0)
        except BaseException:
            # Cancelled (the loop is stopping): nobody is left waiting without an answer.
            for _, done in batch + self._waiting:
                if not done.done():
                    done.set_exception(StorageError("The message could not be stored."))
            self._waiting.clear()
            raise
        finally:
            self._task = None

    async def _commit(self, batch: list[Waiting]) -> None:
        drafts = [draft for draft, _ in batch]
        try:
            results = await self.store(drafts)
            metrics.COMMIT_BATCH.observe(len(drafts))
        except Exception as exc:
            if len(batch) == 1:
                results = [exc if isinstance(exc, ChatError) else _unexpected(exc)]
            else:
                # One bad draft must not sink the others: store them one by one.
                for one in batch:
                    await self._commit([one])
                return
        new = [r[0] for r in results if isinstance(r, tuple) and not r[1]]
        if new:
            try:
                await self._after_commit(new)
            except Exception:
                # Stored is stored: receivers back-fill what was not published.
                log.exception("publishing committed messages failed")
        for (_, done), result in zip(batch, results, strict=True):
            if done.done():
                continue
            if isinstance(result, BaseException):
                done.set_exception(result)
            else:
                done.set_result(result)


def _unexpected(exc: Exception) -> Stored:
    log.error("storing a message failed", exc_info=exc)
    return StorageError("The message could not be stored.")
