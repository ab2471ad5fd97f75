"""The public path: Sanic's documented websocket API only (`send`, `recv`, `close`).

Used when a release of Sanic, websockets or Tortoise no longer has an internal the
fast path needs (see checks.py), or when CHATROOM_INTERNALS=off asks for it. It
is slower: every connection that is sent frames gets a writer task that awaits
`ws.send()` frame by frame, reading makes a task per message, and Sanic pings
each socket from a task of its own. A room's fan-out still never waits for a
socket (frames wait in the connection's own bounded queue), a reader too far
behind is closed, and a server-side close wakes the handler once its close frame
is out. Two things differ, both Sanic's: a stalled reader's close frame cannot be
queued behind what it has not read (it sees the connection drop, 1006), and a
text frame that is not UTF-8 fails Sanic's own reader task (no 1007; that socket
is read no further).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from ...realtime.connection import CLOSE_POLICY

if TYPE_CHECKING:
    from sanic.config import Config
    from sanic.server.websockets.impl import WebsocketImplProtocol

log = logging.getLogger("chatroom_server.web")

# How long a server-side close waits for the frames already queued to go out
# first (not for a policy close: a kicked or too slow reader gets no more).
CLOSE_DRAIN_TIMEOUT = 5.0
# How long sending the close frame may take before the handler leaves anyway.
CLOSE_SEND_TIMEOUT = 1.0
# How long the handler's end waits for Sanic to finish reading the socket.
READ_DRAIN_TIMEOUT = 5.0
# At shutdown, how long close frames (and the frames queued before them) may take.
SHUTDOWN_WAIT = CLOSE_DRAIN_TIMEOUT + CLOSE_SEND_TIMEOUT + 2.0


class Tasks:
    """The tasks of every public-path socket: kept (asyncio holds only weak
    references) and awaited at shutdown, so that close frames go out first.

    Also counts the handlers not yet finished (PublicReader.closing() not returned):
    at shutdown those are awaited too. Sanic's own before_server_stop listener, which
    runs after ours, cancels the handlers still running, and Sanic then ends their
    sockets at once (end_connection): a client still sending gets a reset (1006).
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.readers = 0
        self._changed = asyncio.Event()

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._changed.set()

    def reader_done(self) -> None:
        self.readers -= 1
        self._changed.set()

    async def wait(self, timeout: float) -> None:
        """Until every handler and every task (close frames, the drains that read up
        to the client's close) is done, for at most `timeout`; then cancel the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.readers > 0 or self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        for task in list(self._tasks):
            task.cancel()


class PublicTransport:
    """The hub's Transport over `await ws.send()`: a queue of texts and a writer task."""

    __slots__ = ("ws", "tasks", "send_timeout", "queue", "writer", "open", "closed")

    def __init__(self, ws: WebsocketImplProtocol, tasks: Tasks, send_timeout: float) -> None:
        self.ws = ws
        self.tasks = tasks
        # A peer that takes no frame for this long is stalled: Sanic's own keep-alive
        # cannot ping it while our send() holds the socket, so this drops it instead.
        self.send_timeout = send_timeout
        self.queue: deque[str] = deque()
        self.writer: asyncio.Task[None] | None = None
        self.open = True
        # Set once a server-side close is done: the reader returns None then.
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def write(self, data: Sequence[str], frames: int) -> int:
        if not self.open:
            raise ConnectionError("the websocket is closed")
        self.queue.extend(data)
        if self.writer is None:
            self.writer = self.tasks.start(self._send_queued(), "websocket-writer")
        return len(self.queue)

    async def _send_queued(self) -> None:
        try:
            while self.queue:
                await asyncio.wait_for(self.ws.send(self.queue.popleft()), self.send_timeout)
        except TimeoutError:
            log.info("closing websocket whose peer takes no frames")
            self.writer = None
            self.abort(CLOSE_POLICY, "too slow: the peer takes no frames")
        except Exception:
            # The peer is gone; its handler notices on its next read. Nothing to close.
            self.open = False
            self.queue.clear()
            if not self.closed.done():
                self.closed.set_result(None)
        finally:
            self.writer = None

    def abort(self, code: int, reason: str) -> None:
        if not self.open:
            return
        self.open = False
        self.tasks.start(self._close(code, reason), "websocket-close")

    async def _close(self, code: int, reason: str) -> None:
        writer = self.writer
        try:
            if writer is not None and code != CLOSE_POLICY:
                await asyncio.wait({writer}, timeout=CLOSE_DRAIN_TIMEOUT)
            if writer is not None and not writer.done():
                writer.cancel()
                await asyncio.wait({writer})
            self.queue.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(code, reason), CLOSE_SEND_TIMEOUT)
        finally:
            if not self.closed.done():
                self.closed.set_result(None)


class PublicReader:
    """Messages from `ws.recv()`; None once the server closed the connection."""

    __slots__ = ("ws", "transport", "done", "pending", "drain")

    def __init__(self, ws: WebsocketImplProtocol, transport: PublicTransport) -> None:
        self.ws = ws
        self.transport = transport
        self.done = False  # the client closed: recv() has nothing more
        # The recv() still waiting when the server closed: left running, and the drain
        # awaits it first. Cancelled, it would leave Sanic's frame assembler marked as
        # busy (its get() has no finally), and every later recv() would fail at once.
        self.pending: asyncio.Future[Any] | None = None
        self.drain: asyncio.Task[None] | None = None
        transport.tasks.readers += 1  # until closing() returns (see Tasks)

    async def get(self) -> str | bytes | None:
        closed = self.transport.closed
        if closed.done():
            return None
        recv = asyncio.ensure_future(self.ws.recv())
        either: set[asyncio.Future[Any]] = {recv, closed}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            recv.cancel()
            raise
        if recv.done():
            try:
                return recv.result()  # CancelledError when the client closed, as Sanic's recv()
            except BaseException:
                self.done = True
                raise
        self.pending = recv
        return None

    def close(self) -> None:
        """The handler is done. Frames the client still sends (before it answers our
        close) would leave Sanic's reader task waiting for a recv() forever, holding
        the socket: take them, for a while."""
        if not self.done:
            self.drain = self.transport.tasks.start(self._drain(), "websocket-drain")

    async def closing(self) -> None:
        """Return once a close the server started has gone out and the client answered
        it (or READ_DRAIN_TIMEOUT passed). When the handler returns, Sanic ends the TCP
        connection at once (WebSocketProtocol.close: end_connection stops reading and
        closes): bytes the client still sends then reset the connection, and the
        client loses what it had not read yet, our close frame included (1006)."""
        transport = self.transport
        try:
            if not transport.open and not transport.closed.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(transport.closed),
                        CLOSE_DRAIN_TIMEOUT + CLOSE_SEND_TIMEOUT,
                    )
            if not transport.open and self.drain is not None:
                await asyncio.wait({self.drain})  # bounded by READ_DRAIN_TIMEOUT
        finally:
            transport.tasks.reader_done()

    async def _drain(self) -> None:
        """Read (and drop) what the client sends until its close frame arrives."""
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(READ_DRAIN_TIMEOUT):
                if self.pending is not None:
                    await self.pending  # a message (dropped), or the client's close
                while True:
                    await self.ws.recv()


class PublicWire:
    """The websocket road through Sanic's public API only (see above)."""

    name = "public"
    pings = None  # Sanic's own keep-alive pings every socket (app config)

    def __init__(self, ping_interval: float) -> None:
        self.send_timeout = 2 * ping_interval  # as long as Sanic gives a pong
        self._tasks = Tasks()

    @staticmethod
    def encode(texts: Sequence[str]) -> tuple[str, ...]:
        return tuple(texts)

    def transport(self, ws: WebsocketImplProtocol) -> PublicTransport:
        return PublicTransport(ws, self._tasks, self.send_timeout)

    @staticmethod
    def reader(
        ws: WebsocketImplProtocol, transport: PublicTransport, on_bad_text: Callable[[], None]
    ) -> PublicReader:
        # Sanic's own reader decodes text frames here; it cannot tell us of a bad one.
        return PublicReader(ws, transport)

    @staticmethod
    def after_upgrade(ws: WebsocketImplProtocol) -> None:
        pass

    @staticmethod
    def configure(config: Config, ping_interval: float) -> None:
        # Sanic's own keep-alive, a task per socket (annotated int; asyncio takes floats).
        config.WEBSOCKET_PING_INTERVAL = ping_interval  # type: ignore[assignment]
        config.WEBSOCKET_PING_TIMEOUT = ping_interval  # type: ignore[assignment]

    async def wait_closed(self) -> None:
        """At shutdown: let the sockets' close frames (and what precedes them) go out."""
        await self._tasks.wait(SHUTDOWN_WAIT)
