"""One websocket connection as the hub sees it: a bounded queue and a writer task.

Fan-out never awaits a socket: it puts already-encoded text on the queue. The
writer task alone awaits the socket, so a slow reader only fills its own queue,
and when that is full the connection is closed (1008) instead of anyone waiting.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Protocol

from .. import metrics
from ..domain import Identity, Room

log = logging.getLogger("chatroom_server.realtime")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutting down, or room deleted
CLOSE_INVALID_DATA = 1007  # a text frame that is not UTF-8
CLOSE_POLICY = 1008  # token expired, too slow, policy violation
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011


class Transport(Protocol):
    """What a connection needs of a websocket (the web layer adapts its own)."""

    async def send(self, text: str) -> None: ...

    def abort(self, code: int, reason: str) -> None:
        """Send a close frame now without waiting on pending writes, then hang up."""


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Connection:
    __slots__ = (
        "transport",
        "identity",
        "room",
        "queue",
        "state",
        "close_code",
        "_writer",
        "_held",
        "_replayed_up_to",
    )

    def __init__(self, transport: Transport, identity: Identity, room: Room, queue_size: int):
        self.transport = transport
        self.identity = identity
        self.room = room
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.state = State.OPEN
        self.close_code: int | None = None
        self._writer: asyncio.Task[None] | None = None
        # While a reconnecting client is replayed its backlog, live frames wait here.
        self._held: list[tuple[str, int | None]] | None = None
        # Messages up to this ID were sent as a replay: live copies are dropped,
        # including ones the broker hands over after the replay ended.
        self._replayed_up_to = 0

    @property
    def user_id(self) -> int:
        return self.identity.user_id

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="ws-writer")

    def enqueue(self, text: str, message_id: int | None = None) -> None:
        """Queue a frame for this connection; close it if it cannot keep up."""
        if self.state is not State.OPEN:
            return
        if message_id is not None and message_id <= self._replayed_up_to:
            return
        if self._held is not None:
            if len(self._held) >= self.queue.maxsize:
                self._too_slow()
            else:
                self._held.append((text, message_id))
            return
        self._put(text)

    def hold(self) -> None:
        """Keep live frames back until release(): a replay is about to be sent first."""
        self._held = []

    async def replay(self, text: str) -> None:
        """Send a backlog frame ahead of held live frames, waiting for queue room."""
        if self.state is State.OPEN:
            await self.queue.put(text)

    def release(self, replayed_up_to: int) -> None:
        """Stop holding; live messages the replay already covered are dropped."""
        held, self._held = self._held or [], None
        self._replayed_up_to = replayed_up_to
        for text, message_id in held:
            self.enqueue(text, message_id)

    def _put(self, text: str) -> None:
        if self.state is not State.OPEN:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._too_slow()

    def _too_slow(self) -> None:
        log.warning("closing slow connection: user=%s room=%s", self.user_id, self.room.id)
        metrics.SLOW_CONSUMER_DISCONNECTS.inc()
        self.close(CLOSE_POLICY, "too slow: outgoing queue full")

    def close(self, code: int, reason: str) -> None:
        """Close from the server side, at once, whatever the writer is doing."""
        if self.state is not State.OPEN:
            return
        self.state = State.CLOSING
        self.close_code = code
        if self._writer is not None:
            self._writer.cancel()
        try:
            self.transport.abort(code, reason)
        except Exception:  # the socket may already be gone; nothing left to tell
            log.debug("abort failed", exc_info=True)

    def finish(self) -> None:
        """Called first thing when the handler ends: closed, and the writer cancelled.

        Synchronous on purpose: it must happen even if the handler is being
        cancelled, or the writer would wait on its queue forever.
        """
        self.state = State.CLOSED
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            writer.cancel()

    async def _write_loop(self) -> None:
        try:
            while True:
                text = await self.queue.get()
                await self.transport.send(text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away; the reader will notice too
            log.debug("writer stopped: %s", type(exc).__name__)
