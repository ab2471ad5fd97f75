"""One websocket connection as the hub sees it, and what it is sent.

Fan-out never awaits a socket. A room's frames are encoded once (by the
`Encode` the web layer hands in: on the fast path the complete websocket frames
a server sends, unmasked, so the same bytes for everyone) and written to every
connection's transport without waiting: the transport buffers what the peer
does not take at once. A reader that falls so far behind that more than
`queue_size` frames wait for it is closed (1008) instead of anyone waiting.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .. import metrics
from ..domain import Identity, Room

log = logging.getLogger("chatroom_server.realtime")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutting down, or room deleted
CLOSE_INVALID_DATA = 1007  # a text frame that is not UTF-8
CLOSE_POLICY = 1008  # token expired, too slow, policy violation
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011


# Text frames -> what a Transport writes in one go (opaque here; the web layer's).
Encode = Callable[[Sequence[str]], Any]


class Transport(Protocol):
    """What a connection needs of a websocket (the web layer adapts its own)."""

    def write(self, data: Any, frames: int) -> int:
        """Write `frames` frames encoded as one `data`, without waiting.

        Returns how many frames are still waiting to reach the peer (an estimate).
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
        "encode",
        "state",
        "close_code",
        "_held",
        "_replayed_up_to",
        "_allowance",
        "muted_until",
        "version",
        "opened_as_admin",
    )

    def __init__(
        self,
        transport: Transport,
        identity: Identity,
        room: Room,
        queue_size: int,
        encode: Encode,
        version: int = 1,
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.room = room
        self.queue_size = queue_size
        self.encode = encode
        self.state = State.OPEN
        self.close_code: int | None = None
        # While a reconnecting client is replayed its backlog, live frames wait here.
        self._held: list[tuple[Any, int | None]] | None = None
        # Messages up to this ID were sent as a replay: live copies are dropped,
        # including ones the broker hands over after the replay ended.
        self._replayed_up_to = 0
        # Frames of a replay still on their way: they do not count against
        # queue_size (a replay is a bounded burst) until the peer has caught up.
        self._allowance = 0
        # Muted in this room until this unix time (0: not muted; inf: until lifted).
        self.muted_until = 0.0
        # The websocket protocol the client asked for (`v=2`: SPEC 12's events too).
        self.version = version
        # The user was a site admin when the socket opened: the right to read here
        # may rest on that alone, so it is checked again when an admin's right is
        # taken away (realtime/room_events.py).
        self.opened_as_admin = False

    @property
    def user_id(self) -> int:
        return self.identity.user_id

    def send(self, text: str, message_id: int | None = None) -> None:
        """Send one frame of this connection's own (an error, a resent echo)."""
        self.deliver(self.encode((text,)), message_id)

    def deliver(self, data: Any, message_id: int | None = None) -> None:
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

    def deliver_shared(self, data: Any, first_id: int, frames: int) -> bool:
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
                self.transport.write(self.encode((text,)), 1)
            except ConnectionError:
                self.state = State.CLOSING
                return
            self._allowance += 1

    def release(self, replayed_up_to: int) -> None:
        """Stop holding; live messages the replay already covered are dropped."""
        held, self._held = self._held or [], None
        self._replayed_up_to = replayed_up_to
        for data, message_id in held:
            self.deliver(data, message_id)

    def _write(self, data: Any, frames: int) -> None:
        try:
            waiting = self.transport.write(data, frames)
        except ConnectionError:
            # The peer is gone; its handler notices on its next read.
            self.state = State.CLOSING
            return
        if waiting > self.queue_size + self._allowance:
            self._too_slow()
        elif self._allowance and waiting <= self.queue_size:
            self._allowance = 0  # the replay is through: the plain bound from now on

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
