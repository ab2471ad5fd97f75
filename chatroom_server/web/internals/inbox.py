"""Reading one Sanic websocket with little memory per idle connection.

Sanic gives every websocket a frame assembler holding an asyncio.Queue, two
Events and two Locks (about 5 KiB, most of an idle connection's Python
memory), and its recv() starts a task for every message. `Inbox` takes the
assembler's place (`ws.assembler`, whose put() Sanic calls for every data
frame) and hands whole messages to one reader, with two futures made only
while someone waits.

It holds a short burst of unread messages (at most MAX_MESSAGES, or one more
once MAX_BYTES are waiting), so that a client's pipelined messages are taken in
one go rather than one per turn of the event loop; beyond that, reading from
the socket is paused until the handler catches up, and TCP holds the client back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sanic.exceptions import WebsocketClosed
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import CLOSED, CLOSING

if TYPE_CHECKING:
    from .fast import SanicTransport

MAX_MESSAGES = 16
MAX_BYTES = 65536
# How long a handler's end waits for the client to answer the server's close frame.
CLOSE_ANSWER_TIMEOUT = 5.0


class Handlers:
    """How many handlers have not finished (Inbox.closing() not returned): shutdown
    waits for them (FastWire.wait_closed)."""

    __slots__ = ("count", "_idle")

    def __init__(self) -> None:
        self.count = 0
        self._idle: asyncio.Event | None = None

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def wait(self, timeout: float) -> None:
        if self.count == 0:
            return
        self._idle = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)


class Inbox:
    __slots__ = (
        "ws",
        "loop",
        "on_bad_text",
        "_chunks",
        "_text",
        "_messages",
        "_bytes",
        "_reader",
        "_taken",
        "_paused",
        "_closed",
        "_handlers",
        "_transport",
    )

    def __init__(
        self,
        ws: WebsocketImplProtocol,
        transport: SanicTransport,
        on_bad_text: Callable[[], None],
        handlers: Handlers,
    ) -> None:
        self.ws = ws
        # Kept: asyncio.get_running_loop() costs a system call (getpid) per message.
        self.loop = ws.loop or asyncio.get_running_loop()
        self.on_bad_text = on_bad_text  # a text message that is not UTF-8 arrived
        self._chunks: list[bytes] | None = None  # a fragmented message so far
        self._text = False
        self._messages: list[str | bytes] | None = None  # complete, not yet taken
        self._bytes = 0
        self._reader: asyncio.Future[Any] | None = None  # get() waiting
        self._taken: asyncio.Future[None] | None = None  # put() waiting for get()
        self._paused = False
        self._closed = False
        self._transport: SanicTransport | None = transport  # until closing() returns
        self._handlers = handlers
        handlers.count += 1  # until closing() returns

    @classmethod
    def install(
        cls,
        ws: WebsocketImplProtocol,
        transport: SanicTransport,
        on_bad_text: Callable[[], None],
        handlers: Handlers,
    ) -> Inbox:
        """Take the place of Sanic's assembler, with whatever the client already sent."""
        old = ws.assembler
        inbox = cls(ws, transport, on_bad_text, handlers)
        ws.assembler = inbox  # type: ignore[assignment]
        if old.message_complete.is_set():
            # A whole message came before the handler ran; its put() waits to be told.
            joiner: Any = "" if old.decoder is not None else b""
            inbox._messages = [joiner.join(old.chunks)]
            old.message_complete.clear()
            old.message_fetched.set()
            inbox._paused = bool(old.paused)
        elif old.chunks:
            # The start of a fragmented message: as bytes again, with any partial character.
            inbox._text = old.decoder is not None
            inbox._chunks = [c.encode() if isinstance(c, str) else bytes(c) for c in old.chunks]
            if old.decoder is not None:
                inbox._chunks.append(old.decoder.getstate()[0])
        return inbox

    async def put(self, frame: Frame) -> None:
        """Sanic's reader task: add a data frame; return once a whole message is taken."""
        if self._closed:
            return  # the handler is gone: nobody will take it, and nobody may wait for that
        if frame.opcode is Opcode.TEXT or frame.opcode is Opcode.BINARY:
            self._text = frame.opcode is Opcode.TEXT
            self._chunks = [bytes(frame.data)]
        elif frame.opcode is Opcode.CONT and self._chunks is not None:
            self._chunks.append(bytes(frame.data))
        else:
            return
        if not frame.fin:
            return
        chunks, self._chunks = self._chunks, None
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        message: str | bytes
        if self._text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self.on_bad_text()
                return
        else:
            message = data
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(message)
            return
        # Nobody is reading right now: keep it; if too much is waiting, stop reading
        # the socket until the handler has taken it.
        if self._messages is None:
            self._messages = []
        self._messages.append(message)
        self._bytes += len(message)
        if len(self._messages) < MAX_MESSAGES and self._bytes < MAX_BYTES:
            return
        self._paused = bool(self.ws.pause_frames())  # type: ignore[no-untyped-call]
        self._taken = self.loop.create_future()
        try:
            await self._taken
        finally:
            self._taken = None

    async def get(self) -> str | bytes | None:
        """The next message; None when the server closed the connection (see abort).

        Raises CancelledError when the client closes (Sanic cancels `recv_cancel`,
        as it does for its own recv()), WebsocketClosed once the socket is closed.
        """
        messages = self._messages
        if messages:
            message = messages.pop(0)
            self._bytes -= len(message)
            if not messages:
                self._messages = None
                self._bytes = 0
                self._release()
            return message
        if self.ws.ws_proto.state is CLOSED:
            raise WebsocketClosed("The websocket is closed.")
        reader: asyncio.Future[Any] = self.loop.create_future()
        self._reader = reader
        # Sanic cancels recv_cancel when the client closes or the socket ends; the
        # server's own close resolves it with None.
        self.ws.recv_cancel = reader
        try:
            return await reader  # type: ignore[no-any-return]
        finally:
            self._reader = None
            if self.ws.recv_cancel is reader:
                self.ws.recv_cancel = None

    def close(self) -> None:
        """The handler is done: let a put() waiting for it finish.

        Sanic may keep the closed socket (and so this inbox) for a while: nothing of
        the handler's may stay reachable from here.
        """
        self._closed = True
        self.on_bad_text = _ignore
        self._messages = None
        self._release()

    async def closing(self) -> None:
        """Return once the client answered a close the server started (its close frame
        came, or the connection is gone), or CLOSE_ANSWER_TIMEOUT passed: then drop
        the connection (a stalled client: closing it gracefully would wait for its
        unread bytes to drain). When the handler returns, Sanic ends the TCP connection at once
        (WebSocketProtocol.close: end_connection stops reading and closes): bytes the
        client still sends then reset the connection, and the client loses what it had
        not read yet, our close frame included (1006)."""
        ws = self.ws
        proto = ws.ws_proto
        transport = self._transport
        if transport is None:
            return  # closing() already ran
        try:
            if proto.state is not CLOSING or proto.close_rcvd is not None:
                return  # the client closed first, or the socket is gone
            lost = ws.connection_lost_waiter
            deadline = self.loop.time() + CLOSE_ANSWER_TIMEOUT
            while proto.state is CLOSING and proto.close_rcvd is None:
                left = deadline - self.loop.time()
                if left <= 0:
                    transport.cut()  # no answer: a stalled peer, say
                    return
                # Sanic cancels recv_cancel when the close frame (or the end of the
                # stream) arrives; frames before it go to put(), which drops them.
                answered: asyncio.Future[Any] = self.loop.create_future()
                ws.recv_cancel = answered
                waiting: set[asyncio.Future[Any]] = {answered}
                if lost is not None:
                    waiting.add(lost)
                try:
                    await asyncio.wait(waiting, timeout=left)
                finally:
                    if ws.recv_cancel is answered:
                        ws.recv_cancel = None
        finally:
            transport.answered()
            self._transport = None  # Sanic may keep this inbox after the handler
            self._handlers.leave()

    def _release(self) -> None:
        if self._paused:
            self._paused = False
            self.ws.resume_frames()  # type: ignore[no-untyped-call]
        taken = self._taken
        if taken is not None and not taken.done():
            taken.set_result(None)


def _ignore() -> None:
    pass
