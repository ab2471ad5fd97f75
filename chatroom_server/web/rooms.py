"""Rooms and history under /v1/api/chat (Bearer token required)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from .. import protocol
from ..errors import BadRequest
from ..services import messages as message_service
from ..services import rooms as room_service
from .context import authenticate

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


@bp.route("/rooms", methods=["GET", "POST"])
async def rooms(request: Request) -> HTTPResponse:
    # The seed's clients POST `{}` (or nothing); the body carries no filters.
    return json(protocol.rooms_json(await room_service.list_rooms()))


@bp.post("/room-messages")
async def room_messages(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.RoomMessagesRequest, request.body)
    room = await room_service.get_room(body.roomId)
    page = await message_service.history(room, limit=message_service.HISTORY_DEFAULT)
    return json(protocol.legacy_history_json(page.messages))


def _int_arg(request: Request, name: str, low: int, high: int, default: int | None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name}: must be an integer from {low} to {high}.")
    return int(raw)


@bp.get("/rooms/<room_id:int>/messages")
async def messages(request: Request, room_id: int) -> HTTPResponse:
    before = _int_arg(request, "before", 1, 2**63 - 1, None)
    after = _int_arg(request, "after", 0, 2**63 - 1, None)
    limit = _int_arg(request, "limit", 1, message_service.HISTORY_MAX, None)
    room = await room_service.get_room(room_id)
    page = await message_service.history(
        room, before=before, after=after, limit=limit or message_service.HISTORY_DEFAULT
    )
    return json(protocol.history_json(page))
