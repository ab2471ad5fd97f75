"""The websocket endpoint, /ws and its alias /v1/ws.

Every check that can refuse a client (Origin, token, room) runs in request
middleware, before the upgrade, so the client gets a real HTTP 403/401/400/404.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import cast
from urllib.parse import parse_qs

from sanic import Blueprint, Request
from sanic.exceptions import WebsocketClosed
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed
from websockets.protocol import OPEN
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol

from .. import protocol
from ..errors import BadRequest, Forbidden
from ..realtime.connection import (
    CLOSE_INTERNAL,
    CLOSE_INVALID_DATA,
    Connection,
    State,
)
from ..realtime.session import Session, recover
from ..services import rooms as room_service
from .context import bearer_token, ctx_of
from .inbox import Inbox

bp = Blueprint("ws")
log = logging.getLogger("chatroom_server.web")


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
    """Adapts Sanic's websocket to the hub's Transport."""

    __slots__ = ("ws", "proto", "transport", "open", "watched", "__weakref__")

    def __init__(self, ws: WebsocketImplProtocol) -> None:
        self.ws = ws
        # Kept at hand: a fan-out writes to thousands of sockets in a row, and every
        # object looked up on the way is a cache miss (at 5,000 sockets it showed).
        self.proto = ws.ws_proto
        self.transport = ws.io_proto.transport if ws.io_proto is not None else None
        self.open = self.proto.state is OPEN and self.transport is not None
        # Another websockets' protocol class would not be ours to watch: then ask it.
        self.watched = type(self.proto) is ServerProtocol
        if self.watched:
            self.proto.__class__ = WatchedProtocol
            cast(WatchedProtocol, self.proto).watcher = weakref.ref(self)

    def write(self, data: bytes) -> int:
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
        return int(transport.get_write_buffer_size())

    def abort(self, code: int, reason: str) -> None:
        self.ws.end_connection(code, reason)  # type: ignore[no-untyped-call]
        # Wake the handler blocked in recv(), so it leaves the hub now rather than
        # when the peer (maybe a stalled one) finally lets the TCP connection go.
        waiting = self.ws.recv_cancel
        if waiting is not None and not waiting.done():
            waiting.set_result(None)


def stop_http_timeouts(ws: WebsocketImplProtocol) -> None:
    """Cancel the HTTP timeout check Sanic still has scheduled for this connection.

    When it fires (up to 30 s later) Sanic only finds a websocket and stops; until
    then its timer keeps the connection's objects alive, even long after a close.
    """
    timer = getattr(ws.io_proto, "_callback_check_timeouts", None)
    if timer is not None:
        timer.cancel()


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    # No Origin header: not a browser, nothing to check; the token authenticates.
    return origin is None or "*" in allowed or origin in allowed


@bp.on_request
async def before_upgrade(request: Request) -> None:
    ctx = ctx_of(request)
    if not origin_allowed(request.headers.get("origin"), ctx.settings.ws_origin_list):
        raise Forbidden("This origin may not open a websocket here.")
    # Parsed here rather than through request.args, which Sanic would keep (with the
    # token) for as long as the socket is open.
    args = parse_qs(request.query_string, errors="replace")

    def arg(name: str) -> str | None:
        values = args.get(name)
        return values[0] if values else None

    request.ctx.identity = ctx.tokens.verify(arg("jwt") or bearer_token(request))
    room_id = protocol.query_int(arg("room_id"), "room_id", 1, protocol.MAX_ID)
    if room_id is None:
        raise BadRequest("room_id: this query parameter is required.")
    request.ctx.since = protocol.query_int(arg("since"), "since", 0, protocol.MAX_ID)
    # Checked in the database every time; the room object is shared by its sockets.
    room = ctx.hub.local_room(room_id)
    if room is None or not await room_service.room_exists(room_id):
        room = await room_service.get_room(room_id)
    request.ctx.room = room


async def chat_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    ctx = ctx_of(request)
    settings = ctx.settings
    identity = request.ctx.identity
    conn = Connection(SanicTransport(ws), identity, request.ctx.room, settings.ws_queue)
    session = Session(
        ctx.hub, conn, settings.ws_rate, settings.ws_burst, settings.max_message_chars
    )
    since: int | None = request.ctx.since
    log.info("websocket open: room=%s user=%s", conn.room.id, identity.user_id)
    # Sanic decodes text frames in its reader task, where a bad byte sequence would
    # be an unhandled error: the inbox closes the connection with 1007 instead.
    inbox = Inbox.install(ws, lambda: conn.close(CLOSE_INVALID_DATA, "text frame is not UTF-8"))
    stop_http_timeouts(ws)
    if since is not None:
        conn.hold()  # live frames wait behind the backlog
    await ctx.hub.join(conn)
    # Pings, and 1008 when the token expires: the connection lives no longer than it.
    ctx.keepalive.add(conn, ws)
    try:
        if since is not None:
            await recover(conn, since)
        while conn.state is State.OPEN:
            data = await inbox.get()
            if data is None:
                break
            await session.on_frame(data)
    except (ConnectionClosed, WebsocketClosed):
        pass
    except asyncio.CancelledError:
        # recv() woken by our own close (see SanicTransport.abort) is not a cancellation.
        task = asyncio.current_task()
        if conn.state is State.OPEN or (task is not None and task.cancelling()):
            raise
    except Exception:
        log.exception("websocket handler failed: room=%s", conn.room.id)
        conn.close(CLOSE_INTERNAL, "internal error")
    finally:
        ctx.keepalive.discard(conn)
        inbox.close()
        conn.finish()
        await ctx.hub.leave(conn)
        log.info("websocket closed: room=%s user=%s", conn.room.id, identity.user_id)


bp.add_websocket_route(chat_socket, "/ws", name="ws")
bp.add_websocket_route(chat_socket, "/v1/ws", name="ws_v1")
