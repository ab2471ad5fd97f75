"""What one client's frames do: rate limit, decode, post; errors go back as frames."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .. import metrics, protocol
from ..domain import Message
from ..errors import ChatError, InvalidMessage
from .connection import Connection
from .ratelimit import TokenBucket
from .relay import Relay

log = logging.getLogger("chatroom_server.realtime")


# Messages of one connection being stored at once. The next frame is read while
# earlier ones are being committed (so that they can share a commit); beyond this
# many, reading waits, and TCP holds the client back.
MAX_IN_FLIGHT = 64


class Session:
    __slots__ = ("relay", "conn", "bucket", "max_chars", "user_allows", "_in_flight")

    def __init__(
        self,
        relay: Relay,
        conn: Connection,
        rate: float,
        burst: int,
        max_chars: int,
        user_allows: Callable[[int], bool | Awaitable[bool]] | None = None,
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

    def _error(self, code: str, text: str) -> None:
        self.conn.send(protocol.error_frame(code, text))

    async def on_frame(self, data: str | bytes) -> None:
        """Take one client frame: refuse it with an error frame, or start storing it."""
        muted_until = self.conn.muted_until
        if muted_until and time.time() < muted_until:
            metrics.DROPPED_MUTED.inc()
            self._error(protocol.MUTED, "You are muted in this room; the message was not sent.")
            return
        if not self.bucket.take():
            metrics.DROPPED_RATE_LIMITED.inc()
            self._error(protocol.RATE_LIMITED, "Too many messages; this one was dropped.")
            return
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
                return
        try:
            incoming = protocol.parse_client_frame(data, self.conn.room.id, self.max_chars)
        except InvalidMessage as exc:
            metrics.DROPPED_INVALID.inc()
            self._error(exc.code, exc.message)
            return
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
