"""The websocket endpoint, /ws and its alias /v1/ws.

Every check that can refuse a client (Origin, token, room) runs in request
middleware, before the upgrade, so the client gets a real HTTP 403/401/400/404.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

# Sanic reads the handler's annotations (sanic-ext's OpenAPI does): its public
# alias of the websocket class, not the module it lives in.
from sanic import Blueprint, Request, Websocket
from sanic.exceptions import WebsocketClosed
from websockets.exceptions import ConnectionClosed

from .. import protocol
from ..errors import BadRequest, ChatError, Forbidden, ShuttingDown, Unauthorized
from ..realtime.connection import (
    CLOSE_INTERNAL,
    CLOSE_INVALID_DATA,
    CLOSE_POLICY,
    Connection,
    State,
)
from ..realtime.keys import KEY_RETIRED
from ..realtime.revocations import SESSION_ENDED
from ..realtime.session import MarkRead, Session
from ..services import access
from .context import Ctx, authenticate, client_ip, ctx_of

bp = Blueprint("ws")
log = logging.getLogger("chatroom_server.web")


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    # No Origin header: not a browser, nothing to check; the token authenticates.
    return origin is None or "*" in allowed or origin in allowed


@bp.on_request
async def before_upgrade(request: Request) -> None:
    ctx = ctx_of(request)
    if ctx.stopping:
        raise ShuttingDown("The server is restarting: connect again in a moment.")
    if not origin_allowed(request.headers.get("origin"), ctx.settings.ws_origin_list):
        raise Forbidden("This origin may not open a websocket here.")
    # Parsed here rather than through request.args, which Sanic would keep (with the
    # token) for as long as the socket is open.
    args = parse_qs(request.query_string, errors="replace")

    def arg(name: str) -> str | None:
        values = args.get(name)
        return values[0] if values else None

    request.ctx.identity = await authenticate(request, arg("jwt"))
    room_id = protocol.query_int(arg("room_id"), "room_id", 1, protocol.MAX_ID)
    if room_id is None:
        raise BadRequest("room_id: this query parameter is required.")
    request.ctx.since = protocol.query_int(arg("since"), "since", 0, protocol.MAX_ID)
    request.ctx.version = protocol.query_int(arg("v"), "v", 1, protocol.PROTOCOL_VERSION) or 1
    # Checked in the database every time (a private room a stranger names is a 404,
    # a ban a 403); the room object is shared by its sockets.
    standing = await access.authorize(room_id, request.ctx.identity, access.Action.READ)
    request.ctx.room = ctx.hub.room(room_id) or standing.room
    request.ctx.muted_until = access.mute_deadline(standing)
    request.ctx.as_admin = standing.admin
    # Last: a refusal above must not hold a slot. The handler takes the slot over;
    # should the upgrade fail before it runs, release_failed_upgrade gives it back,
    # and a request that dies some other way leaves a slot nobody refreshes: it
    # lapses within CHATROOM_PRESENCE_TTL.
    request.ctx.slot = await ctx.limits.open_socket(
        request.ctx.identity.user_id, client_ip(request)
    )


async def release_failed_upgrade(request: Request, response: object) -> None:
    # A websocket that opened has no response here; an error response (the
    # handshake was refused, say) means the handler will never release the slot.
    slot = getattr(request.ctx, "slot", None)
    if slot is not None:
        request.ctx.slot = None
        ctx_of(request).limits.close_socket(slot)


bp.on_response(release_failed_upgrade)  # type: ignore[no-untyped-call]


def _mark_read(ctx: Ctx) -> MarkRead:
    """A v2 `read` frame: the marker moves (the socket may read its room: checked at the
    upgrade, and a ban closes it), and the user's other v2 sockets hear of it."""

    async def mark(conn: Connection, last_read_id: int) -> None:
        state = await ctx.reads.mark(conn.identity, conn.room, last_read_id)
        if state.moved and state.last_read_id is not None:
            await ctx.read_fanout.announce(
                conn.user_id, conn.room.id, state.last_read_id, origin_conn=conn
            )

    return mark


async def chat_socket(request: Request, ws: Websocket) -> None:
    ctx = ctx_of(request)
    settings, wire = ctx.settings, ctx.wire
    identity = request.ctx.identity
    transport = wire.transport(ws)
    conn = Connection(
        transport,
        identity,
        request.ctx.room,
        settings.ws_queue,
        wire.encode,
        request.ctx.version,
    )
    conn.muted_until = request.ctx.muted_until
    conn.opened_as_admin = request.ctx.as_admin
    session = Session(
        ctx.relay,
        conn,
        settings.ws_rate,
        settings.ws_burst,
        settings.max_message_chars,
        ctx.limits.message_allowed,
        changes=ctx.changes,
        mark_read=_mark_read(ctx),
    )
    slot, request.ctx.slot = request.ctx.slot, None  # this handler releases it now
    since: int | None = request.ctx.since
    log.info("websocket open: room=%s user=%s", conn.room.id, identity.user_id)
    inbox = wire.reader(
        ws, transport, lambda: conn.close(CLOSE_INVALID_DATA, "text frame is not UTF-8")
    )
    wire.after_upgrade(ws)
    if since is not None:
        conn.hold()  # live frames wait behind the backlog
    try:
        ctx.limits.hold(slot)  # refreshed from now on, released in the finally
        # Inside the try: a client gone during the join still leaves (see relay.leave).
        await ctx.relay.join(conn)
        # A session ended since the check before the upgrade was not in the hub to
        # be closed: its revocation is in the session cache now, so ask again.
        try:
            await ctx.sessions.check(identity)
        except Unauthorized:
            conn.close(CLOSE_POLICY, SESSION_ENDED)
        if not ctx.tokens.accepts(identity):  # its key retired meanwhile (realtime/keys.py)
            conn.close(CLOSE_POLICY, KEY_RETIRED)
        # Pings, and 1008 when the token expires: the connection lives no longer than it.
        ctx.keepalive.add(conn, ws)
        if since is not None:
            await ctx.relay.recover(conn, since)
        while conn.state is State.OPEN:
            data = await inbox.get()
            if data is None:
                break
            await session.on_frame(data)
    except (ConnectionClosed, WebsocketClosed):
        pass
    except asyncio.CancelledError:
        # recv() woken by our own close (see the transports' abort) is not a cancellation.
        task = asyncio.current_task()
        if conn.state is State.OPEN or (task is not None and task.cancelling()):
            raise
    except ChatError as exc:  # the room could not be opened, the database is away...
        log.warning("websocket closed: room=%s code=%s", conn.room.id, exc.code)
        conn.close(CLOSE_INTERNAL, "internal error")
    except Exception:
        log.exception("websocket handler failed: room=%s", conn.room.id)
        conn.close(CLOSE_INTERNAL, "internal error")
    finally:
        try:
            ctx.keepalive.discard(conn)
            inbox.close()
            conn.finish()
            ctx.limits.close_socket(slot)  # before any await: those may be cancelled
            await ctx.relay.leave(conn)
        finally:
            # Whatever failed or was cancelled above (the client went away during
            # leave, say): shutdown waits for every reader to get here.
            await inbox.closing()
        log.info("websocket closed: room=%s user=%s", conn.room.id, identity.user_id)


bp.add_websocket_route(chat_socket, "/ws", name="ws")
bp.add_websocket_route(chat_socket, "/v1/ws", name="ws_v1")
