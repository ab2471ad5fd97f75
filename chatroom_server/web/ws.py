"""The websocket endpoint, /ws and its alias /v1/ws.

Every check that can refuse a client (Origin, token, room) runs in request
middleware, before the upgrade, so the client gets a real HTTP 403/401/400/404.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from sanic import Blueprint, Request
from sanic.exceptions import WebsocketClosed
from sanic.server.websockets.frame import WebsocketFrameAssembler
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed
from websockets.protocol import OPEN

from .. import protocol
from ..errors import BadRequest, Forbidden
from ..realtime.connection import (
    CLOSE_INTERNAL,
    CLOSE_INVALID_DATA,
    CLOSE_POLICY,
    Connection,
    State,
)
from ..realtime.session import Session, recover
from ..services import rooms as room_service
from .context import bearer_token, ctx_of

bp = Blueprint("ws")
log = logging.getLogger("chatroom_server.web")


class SanicTransport:
    """Adapts Sanic's websocket to the hub's Transport."""

    __slots__ = ("ws",)

    def __init__(self, ws: WebsocketImplProtocol) -> None:
        self.ws = ws

    def write(self, data: bytes) -> int:
        # Whole frames, straight to the socket's transport, as Sanic itself writes its
        # close frames: they cannot interleave with Sanic's own (pings, pongs, close).
        ws = self.ws
        io = ws.io_proto
        transport = io.transport if io is not None else None
        if ws.ws_proto.state is not OPEN or transport is None or transport.is_closing():
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


# Sanic decodes text frames in a background task, where a bad byte sequence is an
# unhandled error and the connection then hangs without a word. This assembler
# (the same object, its class swapped) reports it instead, so that the
# connection is closed with 1007.
_bad_text_handlers: weakref.WeakKeyDictionary[Any, Callable[[], None]] = weakref.WeakKeyDictionary()


class _CheckedAssembler(WebsocketFrameAssembler):
    __slots__ = ()

    async def put(self, frame: Any) -> None:
        try:
            await super().put(frame)
        except UnicodeDecodeError:
            handler = _bad_text_handlers.get(self.protocol)
            if handler is not None:
                handler()


def guard_text_frames(ws: WebsocketImplProtocol, conn: Connection) -> None:
    """Close `conn` with 1007 when its client sends a text frame that is not UTF-8."""
    _bad_text_handlers[ws] = lambda: conn.close(CLOSE_INVALID_DATA, "text frame is not UTF-8")
    ws.assembler.__class__ = _CheckedAssembler


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    # No Origin header: not a browser, nothing to check; the token authenticates.
    return origin is None or "*" in allowed or origin in allowed


@bp.on_request
async def before_upgrade(request: Request) -> None:
    ctx = ctx_of(request)
    if not origin_allowed(request.headers.get("origin"), ctx.settings.ws_origin_list):
        raise Forbidden("This origin may not open a websocket here.")
    request.ctx.identity = ctx.tokens.verify(request.args.get("jwt") or bearer_token(request))
    room_id = protocol.query_int(request.args.get("room_id"), "room_id", 1, protocol.MAX_ID)
    if room_id is None:
        raise BadRequest("room_id: this query parameter is required.")
    request.ctx.since = protocol.query_int(request.args.get("since"), "since", 0, protocol.MAX_ID)
    request.ctx.room = await room_service.get_room(room_id)


async def chat_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    ctx = ctx_of(request)
    settings = ctx.settings
    identity = request.ctx.identity
    conn = Connection(SanicTransport(ws), identity, request.ctx.room, settings.ws_queue)
    session = Session(
        ctx.hub, conn, settings.ws_rate, settings.ws_burst, settings.max_message_chars
    )
    # The connection lives no longer than its token: then 1008.
    expiry = asyncio.get_running_loop().call_later(
        max(0.0, identity.expires_at - time.time()), conn.close, CLOSE_POLICY, "token expired"
    )
    since: int | None = request.ctx.since
    log.info("websocket open: room=%s user=%s", conn.room.id, identity.user_id)
    guard_text_frames(ws, conn)
    if since is not None:
        conn.hold()  # live frames wait behind the backlog
    await ctx.hub.join(conn)
    try:
        if since is not None:
            await recover(conn, since)
        while conn.state is State.OPEN:
            data = await ws.recv()
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
        expiry.cancel()
        _bad_text_handlers.pop(ws, None)  # its value refers to the key: drop it by hand
        conn.finish()
        await ctx.hub.leave(conn)
        log.info("websocket closed: room=%s user=%s", conn.room.id, identity.user_id)


bp.add_websocket_route(chat_socket, "/ws", name="ws")
bp.add_websocket_route(chat_socket, "/v1/ws", name="ws_v1")
