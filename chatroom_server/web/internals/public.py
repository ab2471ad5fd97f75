"""The public path: Sanic's documented websocket API only (`send`, `recv`, `close`).

Used when a release of Sanic, websockets or Tortoise no longer has an internal the
fast path needs (see checks.py), or when CHATROOM_INTERNALS=off asks for it. It
is slower: every connection that is sent frames gets a writer task that awaits
`ws.send()` frame by frame, reading makes a task per message, and Sanic pings
each socket from a task of its own. It keeps the same guarantees: a room's
fan-out never waits for a socket (frames wait in the connection's own bounded
queue), a reader too far behind is closed with 1008, and a server-side close
wakes the handler at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...realtime.connection import CLOSE_POLICY

if TYPE_CHECKING:
    from sanic.server.websockets.impl import WebsocketImplProtocol

log = logging.getLogger("chatroom_server.web")

# How long a server-side close waits for the frames already queued to go out
# first (not for a policy close: a kicked or too slow reader gets no more).
CLOSE_DRAIN_TIMEOUT = 1.0
# How long sending the close frame may take before the handler leaves anyway.
CLOSE_SEND_TIMEOUT = 1.0


class PublicTransport:
    """The hub's Transport over `await ws.send()`: a queue of texts and a writer task."""

    __slots__ = ("ws", "queue", "writer", "open", "closed")

    def __init__(self, ws: WebsocketImplProtocol) -> None:
        self.ws = ws
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
            self.writer = asyncio.create_task(self._send_queued(), name="websocket-writer")
        return len(self.queue)

    async def _send_queued(self) -> None:
        try:
            while self.queue:
                await self.ws.send(self.queue.popleft())
        except Exception:
            # The peer is gone; its handler notices on its next read.
            self.open = False
            self.queue.clear()
        finally:
            self.writer = None

    def abort(self, code: int, reason: str) -> None:
        if not self.open:
            return
        self.open = False
        asyncio.create_task(self._close(code, reason), name="websocket-close")

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

    __slots__ = ("ws", "transport")

    def __init__(self, ws: WebsocketImplProtocol, transport: PublicTransport) -> None:
        self.ws = ws
        self.transport = transport

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
            return recv.result()  # CancelledError when the client closed, as Sanic's recv()
        recv.cancel()
        return None

    def close(self) -> None:
        pass


class PublicWire:
    """The websocket road through Sanic's public API only (see above)."""

    name = "public"
    pings = None  # Sanic's own keep-alive pings every socket (app config)

    @staticmethod
    def encode(texts: Sequence[str]) -> tuple[str, ...]:
        return tuple(texts)

    @staticmethod
    def transport(ws: WebsocketImplProtocol) -> PublicTransport:
        return PublicTransport(ws)

    @staticmethod
    def reader(
        ws: WebsocketImplProtocol, transport: PublicTransport, on_bad_text: Callable[[], None]
    ) -> PublicReader:
        # Sanic's own reader decodes text frames here (a bad one ends the connection).
        return PublicReader(ws, transport)

    @staticmethod
    def after_upgrade(ws: WebsocketImplProtocol) -> None:
        pass
