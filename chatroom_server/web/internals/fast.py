"""The fast path: Sanic's and websockets' internals, each for a measured gain.

What each buys (the numbers are in benchmarks/README.md):

- `WatchedProtocol` (swaps the class of websockets' `ServerProtocol` object and
  writes its `_state`): the transport learns that a socket closed from the
  state's setter instead of asking on every write of a fan-out (3-5% frames/s).
- `SanicTransport` writes pre-encoded frames straight to the socket's asyncio
  transport (`ws.io_proto.transport`), one write per socket per loop turn for a
  whole room, never awaiting (most of the fan-out throughput); abort() writes the
  close frame and wakes the handler through `ws.recv_cancel`, so a closed socket
  leaves the hub at once; the handler's end (Inbox.closing) then reads until the
  client answers the close, so a client still sending is not reset.
- `Inbox` (inbox.py) takes the place of Sanic's frame assembler (`ws.assembler`):
  an idle connection's memory (30.9 -> 19.1 KiB with the other changes) and
  pipelined reads, and 1007 for a text message that is not UTF-8.
- `SharedPings` registers pongs in `ws.pings`: one keep-alive task and one
  encoded ping frame for every socket, not a task and timer per socket.
- `stop_http_timeouts` cancels `io_proto._callback_check_timeouts` on upgrade:
  a closed socket is freed at once, not up to 30 s later (soak growth
  27.8 -> 7.4 MiB).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol

from ...realtime.connection import CLOSE_INTERNAL, Connection
from .inbox import CLOSE_ANSWER_TIMEOUT, Handlers, Inbox

if TYPE_CHECKING:
    from sanic.config import Config
    from sanic.server.websockets.impl import WebsocketImplProtocol

log = logging.getLogger("chatroom_server.web")

# At shutdown, how long the handlers may wait for their clients' close frames.
SHUTDOWN_WAIT = CLOSE_ANSWER_TIMEOUT + 2.0
# A socket closed by the server whose handler has not finished by then is dropped.
CUT_OFF_AFTER = CLOSE_ANSWER_TIMEOUT + 1.0


def wire_frame(text: str) -> bytes:
    """`text` as one complete websocket text frame, as a server sends it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def wire_frames(texts: Sequence[str]) -> bytes:
    """Text frames back to back, complete and unmasked: the same bytes for every socket."""
    if len(texts) == 1:
        return wire_frame(texts[0])
    return b"".join([wire_frame(text) for text in texts])


class WatchedProtocol(ServerProtocol):
    """websockets' protocol object of a socket, telling its SanicTransport when it closes.

    A fan-out writes to thousands of sockets in a row, and must not write after a
    close frame. Asking each socket's protocol (a property and a dict lookup on an
    object that is rarely in cache by then) cost 3 to 5% of the frames/s at 1,000
    and 5,000 sockets; this keeps the answer in the transport, set on the state's
    way out of OPEN. Every state change of websockets' Protocol goes through this
    setter; the class is swapped on the one object, nothing else of it changes.
    """

    watcher: weakref.ref[SanicTransport]  # weak: the transport holds this object

    @property
    def state(self) -> WsState:
        return self._state

    @state.setter
    def state(self, state: WsState) -> None:
        if self.debug:  # as websockets' own setter does
            self.logger.debug("= connection is %s", state.name)
        self._state = state
        if state is not OPEN:
            watcher = self.__dict__.get("watcher")
            transport = watcher() if watcher is not None else None
            if transport is not None:
                transport.open = False


class SanicTransport:
    """Adapts Sanic's websocket to the hub's Transport: frames straight to the socket."""

    __slots__ = ("ws", "proto", "transport", "open", "watched", "cutoff", "__weakref__")

    def __init__(self, ws: WebsocketImplProtocol) -> None:
        self.ws = ws
        # Kept at hand: a fan-out writes to thousands of sockets in a row, and every
        # object looked up on the way is a cache miss (at 5,000 sockets it showed).
        self.proto = ws.ws_proto
        self.transport = ws.io_proto.transport if ws.io_proto is not None else None
        self.open = self.proto.state is OPEN and self.transport is not None
        # Another websockets' protocol class would not be ours to watch: then ask it.
        self.watched = type(self.proto) is ServerProtocol
        # After a close of ours: drops the connection should the handler never get to
        # wait for the answer (stuck in an await), as end_connection used to.
        self.cutoff: asyncio.TimerHandle | None = None
        if self.watched:
            self.proto.__class__ = WatchedProtocol
            cast(WatchedProtocol, self.proto).watcher = weakref.ref(self)

    def write(self, data: bytes, frames: int) -> int:
        # Whole frames, straight to the socket's transport, as Sanic itself writes its
        # close frames: they cannot interleave with Sanic's own (pings, pongs, close).
        transport = self.transport
        if (
            not self.open
            or (not self.watched and self.proto.state is not OPEN)
            or transport is None
            or transport.is_closing()
        ):
            raise ConnectionError("the websocket is closed")
        transport.write(data)
        # Frames still waiting, estimated from the size of these ones.
        return int(transport.get_write_buffer_size()) * frames // len(data)

    def abort(self, code: int, reason: str) -> None:
        """Write the close frame now, behind what is buffered, and wake the handler.

        Reading goes on: the handler's end (Inbox.closing) waits for the client's
        close frame, and Sanic closes the TCP connection once it has it. Sanic's
        end_connection would stop reading and close at once: a client still sending
        then gets a reset, and loses what it had not read yet, this close frame too
        (1006, seen at SIGTERM under load).
        """
        proto, transport = self.proto, self.transport
        if proto.state is OPEN and transport is not None and not transport.is_closing():
            data = proto.data_to_send()
            proto.send_close(code, reason)
            data.extend(proto.data_to_send())
            for chunk in data:
                if chunk:  # b"" would be an end of stream: not ours to send here
                    transport.write(chunk)
            self.cutoff = asyncio.get_running_loop().call_later(CUT_OFF_AFTER, self.cut)
        elif proto.state is OPEN:
            self.ws.end_connection(code, reason)  # type: ignore[no-untyped-call]
        # Wake the handler blocked in recv(), so it leaves the hub now rather than
        # when the peer (maybe a stalled one) finally lets the TCP connection go.
        waiting = self.ws.recv_cancel
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def cut(self) -> None:
        """Drop the TCP connection now: the client did not answer our close."""
        self.cutoff = None
        if self.transport is not None:
            self.transport.abort()

    def answered(self) -> None:
        """The handler saw the close through: no cut-off needed."""
        if self.cutoff is not None:
            self.cutoff.cancel()
            self.cutoff = None


def stop_http_timeouts(ws: WebsocketImplProtocol) -> None:
    """Cancel the HTTP timeout check Sanic still has scheduled for this connection.

    When it fires (up to 30 s later) Sanic only finds a websocket and stops; until
    then its timer keeps the connection's objects alive, even long after a close.
    """
    timer = getattr(ws.io_proto, "_callback_check_timeouts", None)
    if timer is not None:
        timer.cancel()


class _Pinged:
    __slots__ = ("ws", "pong")

    def __init__(self, ws: WebsocketImplProtocol) -> None:
        self.ws = ws
        self.pong: asyncio.Future[None] | None = None  # the answer to the last ping


class SharedPings:
    """One encoded ping frame for every socket; Sanic resolves `ws.pings` on the pong.

    A socket that has not answered the previous ping when the next one is due is
    closed (1011), as Sanic does.
    """

    def __init__(self) -> None:
        self._sockets: dict[Connection, _Pinged] = {}

    def add(self, conn: Connection, ws: WebsocketImplProtocol) -> None:
        self._sockets[conn] = _Pinged(ws)

    def discard(self, conn: Connection) -> None:
        self._sockets.pop(conn, None)

    def ping_all(self, round_number: int) -> None:
        payload = round_number.to_bytes(4, "big")
        frame = Frame(Opcode.PING, payload).serialize(mask=False)
        loop = asyncio.get_running_loop()
        for conn, sock in list(self._sockets.items()):
            if sock.pong is not None and not sock.pong.done():
                log.info("closing websocket that did not answer a ping: room=%s", conn.room.id)
                conn.close(CLOSE_INTERNAL, "keepalive ping timeout")
                continue
            try:
                conn.transport.write(frame, 1)
            except ConnectionError:
                continue
            sock.pong = loop.create_future()
            sock.ws.pings[payload] = sock.pong


class FastWire:
    """The websocket road through Sanic's and websockets' internals (see above)."""

    name = "fast"

    def __init__(self) -> None:
        self.pings: SharedPings | None = SharedPings()
        self._handlers = Handlers()

    @staticmethod
    def encode(texts: Sequence[str]) -> bytes:
        return wire_frames(texts)

    @staticmethod
    def transport(ws: WebsocketImplProtocol) -> SanicTransport:
        return SanicTransport(ws)

    def reader(
        self,
        ws: WebsocketImplProtocol,
        transport: SanicTransport,
        on_bad_text: Callable[[], None],
    ) -> Inbox:
        # Sanic decodes text frames in its reader task, where a bad byte sequence would
        # be an unhandled error: the inbox closes the connection with 1007 instead.
        return Inbox.install(ws, transport, on_bad_text, self._handlers)

    @staticmethod
    def after_upgrade(ws: WebsocketImplProtocol) -> None:
        stop_http_timeouts(ws)

    @staticmethod
    def configure(config: Config, ping_interval: float) -> None:
        # Our keep-alive pings every socket from one task (web/keepalive.py), not Sanic's.
        config.WEBSOCKET_PING_INTERVAL = None  # type: ignore[assignment]

    async def wait_closed(self) -> None:
        """At shutdown: let the handlers see their clients answer the close frames.

        Sanic's own before_server_stop listener, which runs after ours, cancels the
        handlers still running and ends their sockets at once (end_connection): a
        client still sending would get a reset, and 1006 instead of our 1001.
        """
        await self._handlers.wait(SHUTDOWN_WAIT)
