"""Rooms and history under /v1/api/chat (Bearer token required)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from .. import protocol
from ..services import messages as message_service
from ..services import rooms as room_service
from .context import authenticate, ctx_of

bp = Blueprint("rooms", url_prefix="/v1/api/chat")


@bp.on_request
async def require_token(request: Request) -> None:
    if request.method != "OPTIONS":
        request.ctx.identity = authenticate(request)


@bp.post("/create")
async def create(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.CreateRoomRequest, request.body)
    room = await room_service.create_room(body.name)
    return json(protocol.created_room_json(room))


@bp.route("/rooms", methods=["GET", "POST"])  # type: ignore[untyped-decorator]
async def rooms(request: Request) -> HTTPResponse:
    # The seed's clients POST `{}` (or nothing); the body carries no filters.
    return json(protocol.rooms_json(await room_service.list_rooms()))


@bp.post("/room-messages")
async def room_messages(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.RoomMessagesRequest, request.body)
    room = await room_service.get_room(body.roomId)
    page = await message_service.history(room, limit=message_service.HISTORY_DEFAULT)
    return json(protocol.legacy_history_json(page.messages))


@bp.get("/rooms/<room_id:int>/messages")
async def messages(request: Request, room_id: int) -> HTTPResponse:
    args = request.args
    before = protocol.query_int(args.get("before"), "before", 1, protocol.MAX_ID)
    after = protocol.query_int(args.get("after"), "after", 0, protocol.MAX_ID)
    limit = protocol.query_int(args.get("limit"), "limit", 1, message_service.HISTORY_MAX)
    room = await room_service.get_room(room_id)
    page = await message_service.history(
        room, before=before, after=after, limit=limit or message_service.HISTORY_DEFAULT
    )
    return json(protocol.history_json(page))


@bp.get("/rooms/<room_id:int>/presence")
async def presence(request: Request, room_id: int) -> HTTPResponse:
    room = await room_service.get_room(room_id)
    return json(protocol.presence_json(await ctx_of(request).hub.presence(room.id)))
