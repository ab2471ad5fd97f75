"""What one client's frames do: rate limit, decode, post; errors go back as frames."""

from __future__ import annotations

import logging
import time

from .. import metrics, protocol
from ..errors import ChatError, InvalidMessage
from ..services import messages as message_service
from .connection import Connection
from .hub import Hub
from .ratelimit import TokenBucket

log = logging.getLogger("chatroom_server.realtime")


REPLAY_LIMIT = 1000


async def recover(conn: Connection, since: int) -> None:
    """Send what the room got after message `since`, then a `recovered` frame.

    Call between conn.hold() and hub.join(conn)'s return: live frames wait while
    the backlog is read, and those the backlog already had are dropped at release.
    """
    backlog = await message_service.after_id(conn.room, since, REPLAY_LIMIT + 1)
    complete = len(backlog) <= REPLAY_LIMIT
    backlog = backlog[:REPLAY_LIMIT]
    for message in backlog:
        conn.replay(protocol.message_frame(message))
    conn.replay(protocol.recovered_frame(len(backlog), complete))
    conn.release(backlog[-1].id if backlog else since)


class Session:
    __slots__ = ("hub", "conn", "bucket", "max_chars")

    def __init__(self, hub: Hub, conn: Connection, rate: float, burst: int, max_chars: int):
        self.hub = hub
        self.conn = conn
        self.bucket = TokenBucket(rate, burst)
        self.max_chars = max_chars

    def _error(self, code: str, text: str) -> None:
        self.conn.send(protocol.error_frame(code, text))

    async def on_frame(self, data: str | bytes) -> None:
        if not self.bucket.take():
            metrics.DROPPED_RATE_LIMITED.inc()
            self._error(protocol.RATE_LIMITED, "Too many messages; this one was dropped.")
            return
        started = time.perf_counter()
        try:
            incoming = protocol.parse_client_frame(data, self.conn.room.id, self.max_chars)
            message, resend = await self.hub.post(
                self.conn.room, self.conn.identity, incoming.text, incoming.client_message_id
            )
            if resend:
                # Stored before (the client did not see the echo): show it to this sender again.
                self.conn.send(protocol.message_frame(message), message.id)
            else:
                metrics.MESSAGES_RECEIVED.inc()
                metrics.BROADCAST_LATENCY.observe(time.perf_counter() - started)
        except InvalidMessage as exc:
            metrics.DROPPED_INVALID.inc()
            self._error(exc.code, exc.message)
        except ChatError as exc:
            metrics.DROPPED_STORE_FAILED.inc()
            log.warning("message not stored: room=%s code=%s", self.conn.room.id, exc.code)
            self._error(protocol.STORE_FAILED, "The message could not be stored; it was not sent.")
        except Exception:
            metrics.DROPPED_STORE_FAILED.inc()
            log.exception("unexpected error while posting a message")
            self._error(protocol.STORE_FAILED, "The message could not be stored; it was not sent.")
