"""What one client's frames do: rate limit, decode, post; errors go back as frames.

A protocol v2 connection (SPEC 12) may also edit, delete, say it is typing and
mark the room read; a v1 connection's frames take exactly the road they always did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from .. import metrics, protocol
from ..domain import Change, Identity, Message
from ..errors import ChatError, Forbidden, InvalidMessage, NotFound
from .connection import Connection
from .ratelimit import TokenBucket
from .relay import Relay
from .typing import TYPING_EVERY

log = logging.getLogger("chatroom_server.realtime")


# Messages of one connection being stored at once. The next frame is read while
# earlier ones are being committed (so that they can share a commit); beyond this
# many, reading waits, and TCP holds the client back.
MAX_IN_FLIGHT = 64


class Changes(Protocol):
    """Edits and deletes (services/changes.py)."""

    async def edit(
        self, who: Identity, message_id: int, text: str, room_id: int | None = None
    ) -> Change: ...

    async def delete(
        self, who: Identity, message_id: int, room_id: int | None = None
    ) -> Change: ...


# A v2 `read` frame: (the connection, lastReadId) -> stored and told to the user's
# other connections (services/reads.py, realtime/reads.py).
MarkRead = Callable[[Connection, int], Awaitable[None]]


class Session:
    __slots__ = (
        "relay",
        "conn",
        "bucket",
        "max_chars",
        "user_allows",
        "_in_flight",
        "v2",
        "changes",
        "mark_read",
        "_typed_at",
    )

    def __init__(
        self,
        relay: Relay,
        conn: Connection,
        rate: float,
        burst: int,
        max_chars: int,
        user_allows: Callable[[int], bool | Awaitable[bool]] | None = None,
        changes: Changes | None = None,
        mark_read: MarkRead | None = None,
    ):
        self.relay = relay
        self.conn = conn
        self.bucket = TokenBucket(rate, burst)
        self.max_chars = max_chars
        # The user's rate across all their sockets (on every host, with Redis): a
        # plain bool from in-process counters, so that path never awaits.
        self.user_allows = user_allows
        # A list, not a deque: an empty deque costs 600 bytes on every idle connection.
        self._in_flight: list[asyncio.Future[tuple[Message, bool]]] = []
        self.v2 = conn.version != 1
        self.changes = changes
        self.mark_read = mark_read
        self._typed_at = 0.0

    def _error(self, code: str, text: str) -> None:
        self.conn.send(protocol.error_frame(code, text))

    async def on_frame(self, data: str | bytes) -> None:
        """Take one client frame: refuse it with an error frame, or start storing it."""
        if self.v2:
            await self._on_frame_v2(data)
            return
        if not await self._admitted():
            return
        try:
            incoming = protocol.parse_client_frame(data, self.conn.room.id, self.max_chars)
        except InvalidMessage as exc:
            metrics.DROPPED_INVALID.inc()
            self._error(exc.code, exc.message)
            return
        await self._post(incoming)

    async def _on_frame_v2(self, data: str | bytes) -> None:
        try:
            frame = protocol.parse_client_frame_v2(data, self.conn.room.id, self.max_chars)
        except InvalidMessage as exc:
            metrics.DROPPED_INVALID.inc()
            self._error(exc.code, exc.message)
            return
        if isinstance(frame, protocol.ClientMessage):
            if await self._admitted():
                await self._post(frame)
        elif isinstance(frame, protocol.TypingFrame):
            await self._typing()
        elif isinstance(frame, protocol.ReadFrame):
            if self.mark_read is not None:
                await self._guarded(self.mark_read(self.conn, frame.last_read_id))
        elif await self._admitted(muted_too=False) and self.changes is not None:
            who, room_id = self.conn.identity, self.conn.room.id
            if isinstance(frame, protocol.EditFrame):
                work = self.changes.edit(who, frame.message_id, frame.text, room_id)
            else:
                work = self.changes.delete(who, frame.message_id, room_id)
            await self._guarded(work)

    async def _admitted(self, muted_too: bool = True) -> bool:
        """Whether a frame that writes may go on: not muted (unless `muted_too` is
        False), within this socket's rate and the user's; if not, an error frame."""
        muted_until = self.conn.muted_until
        if muted_too and muted_until and time.time() < muted_until:
            metrics.DROPPED_MUTED.inc()
            self._error(protocol.MUTED, "You are muted in this room; the message was not sent.")
            return False
        if not self.bucket.take():
            metrics.DROPPED_RATE_LIMITED.inc()
            self._error(protocol.RATE_LIMITED, "Too many messages; this one was dropped.")
            return False
        if self.user_allows is not None:
            allowed = self.user_allows(self.conn.identity.user_id)
            if not isinstance(allowed, bool):  # shared counters: one round trip
                allowed = await allowed
            if not allowed:
                metrics.DROPPED_RATE_LIMITED.inc()
                self._error(
                    protocol.RATE_LIMITED,
                    "Too many messages from this user across all connections;"
                    " this one was dropped.",
                )
                return False
        return True

    async def _post(self, incoming: protocol.ClientMessage) -> None:
        while len(self._in_flight) >= MAX_IN_FLIGHT:
            await asyncio.wait({self._in_flight[0]})
        try:
            work = self.relay.post(
                self.conn.room, self.conn.identity, incoming.text, incoming.client_message_id
            )
        except ChatError as exc:
            self._failed(exc)
            return
        started = time.perf_counter()
        self._in_flight.append(work)
        work.add_done_callback(lambda done: self._posted(done, started))

    async def _typing(self) -> None:
        """Relayed at most once per TYPING_EVERY seconds from this connection (and
        from the user, by every receiving process); never from a muted user."""
        now = time.monotonic()
        muted_until = self.conn.muted_until
        if now - self._typed_at < TYPING_EVERY or (muted_until and time.time() < muted_until):
            return
        self._typed_at = now
        await self.relay.typing(self.conn.room, self.conn.identity)

    async def _guarded(self, work: Awaitable[object]) -> None:
        """Run an edit, delete or read; a refusal goes back as an error frame."""
        try:
            await work
        except InvalidMessage as exc:
            self._error(exc.code, exc.message)
        except NotFound as exc:
            self._error(protocol.NOT_FOUND, exc.message)
        except Forbidden as exc:
            self._error(protocol.FORBIDDEN, exc.message)
        except ChatError as exc:
            self._error(exc.code, exc.message)

    def _posted(self, work: asyncio.Future[tuple[Message, bool]], started: float) -> None:
        self._in_flight.remove(work)
        if work.cancelled():
            return
        exc = work.exception()
        if exc is not None:
            self._failed(exc)
            return
        message, resend = work.result()
        if resend:
            # Stored before (the client did not see the echo): show it to this sender again.
            self.conn.send(protocol.message_frame(message), message.id)
        else:
            metrics.MESSAGES_RECEIVED.inc()
            metrics.BROADCAST_LATENCY.observe(time.perf_counter() - started)

    def _failed(self, exc: BaseException) -> None:
        metrics.DROPPED_STORE_FAILED.inc()
        if isinstance(exc, ChatError):
            log.warning("message not stored: room=%s code=%s", self.conn.room.id, exc.code)
        else:
            log.error("unexpected error while storing a message", exc_info=exc)
        self._error(protocol.STORE_FAILED, "The message could not be stored; it was not sent.")
