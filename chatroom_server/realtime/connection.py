"""One websocket connection as the hub sees it, and the bytes it is sent.

Fan-out never awaits a socket. A frame is encoded once, as the complete
websocket frame a server sends (unmasked, so the same bytes for everyone), and
written to every connection's transport without waiting: the transport buffers
what the kernel does not take at once. A reader that falls so far behind that
its buffer holds more than `queue_size` frames is closed (1008) instead of
anyone waiting for it.
"""

from __future__ import annotations

import enum
import logging
from typing import Protocol

from websockets.frames import Frame, Opcode

from .. import metrics
from ..domain import Identity, Room

log = logging.getLogger("chatroom_server.realtime")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutting down, or room deleted
CLOSE_INVALID_DATA = 1007  # a text frame that is not UTF-8
CLOSE_POLICY = 1008  # token expired, too slow, policy violation
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011


def wire_frame(text: str) -> bytes:
    """`text` as one complete websocket text frame, as a server sends it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def wire_frames(texts: list[str]) -> bytes:
    """Several text frames back to back: one write instead of one per frame."""
    return b"".join([wire_frame(text) for text in texts])


class Transport(Protocol):
    """What a connection needs of a websocket (the web layer adapts its own)."""

    def write(self, data: bytes) -> int:
        """Write complete frames without waiting; return the bytes still buffered.

        Raises ConnectionError when the socket can no longer be written to.
        """

    def abort(self, code: int, reason: str) -> None:
        """Send a close frame after what is buffered, without waiting, then hang up."""


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Connection:
    __slots__ = (
        "transport",
        "identity",
        "room",
        "queue_size",
        "state",
        "close_code",
        "_held",
        "_replayed_up_to",
    )

    def __init__(self, transport: Transport, identity: Identity, room: Room, queue_size: int):
        self.transport = transport
        self.identity = identity
        self.room = room
        self.queue_size = queue_size
        self.state = State.OPEN
        self.close_code: int | None = None
        # While a reconnecting client is replayed its backlog, live frames wait here.
        self._held: list[tuple[bytes, int | None]] | None = None
        # Messages up to this ID were sent as a replay: live copies are dropped,
        # including ones the broker hands over after the replay ended.
        self._replayed_up_to = 0

    @property
    def user_id(self) -> int:
        return self.identity.user_id

    def send(self, text: str, message_id: int | None = None) -> None:
        """Send one frame of this connection's own (an error, a resent echo)."""
        self.deliver(wire_frame(text), message_id)

    def deliver(self, data: bytes, message_id: int | None = None) -> None:
        """Write one encoded frame (shared by the room); close the connection if it lags.

        A message a replay already covered is not sent twice.
        """
        if self.state is not State.OPEN:
            return
        if message_id is not None and message_id <= self._replayed_up_to:
            return
        if self._held is not None:
            if len(self._held) >= self.queue_size:
                self._too_slow()
            else:
                self._held.append((data, message_id))
            return
        self._write(data, 1)

    def deliver_shared(self, data: bytes, first_id: int, frames: int) -> bool:
        """Write frames every connection of the room gets, starting at message `first_id`.

        Returns False, writing nothing, when this connection must take them one by
        one instead (it is held for a replay, or was just replayed some of them).
        """
        if self._held is not None or first_id <= self._replayed_up_to:
            return False
        if self.state is State.OPEN:
            self._write(data, frames)
        return True

    def hold(self) -> None:
        """Keep live frames back until release(): a replay is about to be sent first."""
        self._held = []

    def replay(self, text: str) -> None:
        """Send a backlog frame ahead of held live frames (a bounded burst, never too slow)."""
        if self.state is State.OPEN:
            try:
                self.transport.write(wire_frame(text))
            except ConnectionError:
                self.state = State.CLOSING

    def release(self, replayed_up_to: int) -> None:
        """Stop holding; live messages the replay already covered are dropped."""
        held, self._held = self._held or [], None
        self._replayed_up_to = replayed_up_to
        for data, message_id in held:
            self.deliver(data, message_id)

    def _write(self, data: bytes, frames: int) -> None:
        try:
            buffered = self.transport.write(data)
        except ConnectionError:
            # The peer is gone; its handler notices on its next read.
            self.state = State.CLOSING
            return
        # Frames waiting in the buffer, estimated from the size of these ones.
        if buffered * frames > self.queue_size * len(data):
            self._too_slow()

    def _too_slow(self) -> None:
        log.warning("closing slow connection: user=%s room=%s", self.user_id, self.room.id)
        metrics.SLOW_CONSUMER_DISCONNECTS.inc()
        self.close(CLOSE_POLICY, "too slow: outgoing queue full")

    def close(self, code: int, reason: str) -> None:
        """Close from the server side, at once: the close frame follows what is buffered."""
        if self.state is not State.OPEN:
            return
        self.state = State.CLOSING
        self.close_code = code
        try:
            self.transport.abort(code, reason)
        except Exception:  # the socket may already be gone; nothing left to tell
            log.debug("abort failed", exc_info=True)

    def finish(self) -> None:
        """Called first thing when the handler ends: nothing more is written."""
        self.state = State.CLOSED
