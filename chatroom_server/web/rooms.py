"""Rooms and history under /v1/api/chat (Bearer token required)."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from .. import protocol
from ..domain import Room
from ..services import messages as message_service
from ..services import rooms as room_service
from .context import ctx_of, require_token
from .openapi import BEARER, id_schema, json_body, path_id, responses

bp = Blueprint("rooms", url_prefix="/v1/api/chat")
bp.on_request(require_token)

ROOM_ID = path_id("room_id")


def _query_id(name: str, low: int, high: int, description: str) -> Any:
    return openapi.definitions.Parameter(name, id_schema(low, high), "query", description)


@bp.post("/create")
@openapi.definition(
    summary="Create a room",
    body=json_body(protocol.CreateRoomRequest),
    response=responses(protocol.CreatedRoomResponse, 400, 401, 413, 429, 503),
    secured=BEARER,
)
async def create(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.CreateRoomRequest, request.body)
    ctx = ctx_of(request)
    await ctx.limits.check_room_create(request.ctx.identity.user_id)
    st = await ctx.rooms.create(request.ctx.identity, body.name, body.visibility)
    # A new room: nothing in it to read yet (unread 0, no marker).
    return json(protocol.created_room_json(st.room, st.role))


ROOM_PAGE = [
    _query_id(
        "limit",
        1,
        protocol.ROOM_PAGE_MAX,
        f"One page of at most this many rooms (default {protocol.ROOM_PAGE_MAX} when only"
        " `after` is given), and `nextAfter`. Without `limit` and `after`: every room.",
    ),
    _query_id("after", 0, protocol.MAX_ID, "Only rooms with a greater ID (a `nextAfter`)."),
]


@bp.get("/rooms")
@openapi.definition(
    summary="List rooms: every one, or a page of them",
    parameter=ROOM_PAGE,
    response=responses(protocol.RoomsResponse, 400, 401, 503),
    secured=BEARER,
)
async def rooms(request: Request) -> HTTPResponse:
    return await _rooms(request)


@bp.post("/rooms")
@openapi.definition(
    summary="List rooms (as the seed's clients do)",
    parameter=ROOM_PAGE,
    body=json_body(protocol.RoomsRequest, required=False),
    response=responses(protocol.RoomsResponse, 400, 401, 413, 503),
    secured=BEARER,
)
async def rooms_post(request: Request) -> HTTPResponse:
    # The seed's clients POST `{}` (or nothing); the body carries no filters.
    return await _rooms(request)


async def _rooms(request: Request) -> HTTPResponse:
    args = request.args
    limit = protocol.query_int(args.get("limit"), "limit", 1, protocol.ROOM_PAGE_MAX)
    after = protocol.query_int(args.get("after"), "after", 0, protocol.MAX_ID)
    listing = await room_service.room_listing(
        request.ctx.identity.user_id, after, limit, protocol.ROOM_PAGE_MAX, protocol.ROOM_KEYS
    )
    body = protocol.room_list_body(listing.array, listing.paged, listing.next_after)
    return raw(body, content_type="application/json")


async def _readable(request: Request, room_id: int) -> Room:
    """The room, if the caller may read it (404 if they may not see it, 403 if banned)."""
    return (await ctx_of(request).rooms.get(request.ctx.identity, room_id)).room


@bp.post("/room-messages")
@openapi.definition(
    summary="The last 50 messages of a room, oldest first",
    body=json_body(protocol.RoomMessagesRequest),
    response=responses(protocol.LegacyHistoryResponse, 400, 401, 403, 404, 413, 503),
    secured=BEARER,
)
async def room_messages(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.RoomMessagesRequest, request.body)
    room = await _readable(request, body.roomId)
    page = await ctx_of(request).store.history(
        room, before=None, after=None, limit=message_service.HISTORY_DEFAULT
    )
    return json(protocol.legacy_history_json(page.messages))


@bp.get("/rooms/<room_id:int>/messages")
@openapi.definition(
    summary="A page of a room's history, oldest first",
    parameter=[
        ROOM_ID,
        _query_id("before", 1, protocol.MAX_ID, "Only messages with a smaller ID."),
        _query_id("after", 0, protocol.MAX_ID, "Only messages with a greater ID."),
        _query_id(
            "limit",
            1,
            message_service.HISTORY_MAX,
            f"At most this many messages (default {message_service.HISTORY_DEFAULT}).",
        ),
    ],
    response=responses(protocol.HistoryResponse, 400, 401, 403, 404, 503),
    secured=BEARER,
)
async def messages(request: Request, room_id: int) -> HTTPResponse:
    args = request.args
    before = protocol.query_int(args.get("before"), "before", 1, protocol.MAX_ID)
    after = protocol.query_int(args.get("after"), "after", 0, protocol.MAX_ID)
    limit = protocol.query_int(args.get("limit"), "limit", 1, message_service.HISTORY_MAX)
    room = await _readable(request, room_id)
    page = await ctx_of(request).store.history(
        room, before=before, after=after, limit=limit or message_service.HISTORY_DEFAULT
    )
    return json(protocol.history_json(page))


@bp.get("/rooms/<room_id:int>/presence")
@openapi.definition(
    summary="Who is in a room, across all hosts",
    parameter=ROOM_ID,
    response=responses(protocol.PresenceResponse, 401, 403, 404, 503),
    secured=BEARER,
)
async def presence(request: Request, room_id: int) -> HTTPResponse:
    room = await _readable(request, room_id)
    return json(protocol.presence_json(await ctx_of(request).relay.presence(room.id)))


@bp.post("/rooms/<room_id:int>/read")
@openapi.definition(
    summary="Mark a room read up to a message; the user's other v2 sockets hear of it",
    parameter=ROOM_ID,
    body=json_body(protocol.ReadRequest),
    response=responses(protocol.ReadResponse, 400, 401, 403, 404, 413, 503),
    secured=BEARER,
)
async def mark_read(request: Request, room_id: int) -> HTTPResponse:
    body = protocol.parse_body(protocol.ReadRequest, request.body)
    ctx = ctx_of(request)
    identity = request.ctx.identity
    state = await ctx.reads.mark_in(identity, room_id, body.lastReadId)
    if state.moved and state.last_read_id is not None:
        await ctx.read_fanout.announce(identity.user_id, room_id, state.last_read_id)
    return json(protocol.read_json(state))
