"""A room, its members, roles, bans and mutes; direct rooms (SPEC 10), under /v1/api/chat.

Handlers parse and answer; services/members.py acts, and asks services/access.py.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from .. import protocol
from ..services.members import UserRef
from .context import ctx_of, require_token
from .openapi import BEARER, json_body, json_content, no_content, path_id, responses
from .rooms import ROOM_ID

bp = Blueprint("members", url_prefix="/v1/api/chat")
bp.on_request(require_token)

USER_ID = path_id("user_id")


def _ref(body: protocol.UserRefRequest) -> UserRef:
    return UserRef(body.userId, body.userName)


async def _room(request: Request, st: Any) -> HTTPResponse:
    """`{"chatRoom": ROOM}` as the caller sees it: their role, unread count and marker."""
    read = await ctx_of(request).reads.state(request.ctx.identity.user_id, st.room.id)
    return json(protocol.created_room_json(st.room, st.role, read))


@bp.get("/rooms/<room_id:int>")
@openapi.definition(
    summary="A room, with the caller's role in it",
    parameter=ROOM_ID,
    response=responses(protocol.CreatedRoomResponse, 401, 403, 404, 503),
    secured=BEARER,
)
async def get_room(request: Request, room_id: int) -> HTTPResponse:
    return await _room(request, await ctx_of(request).rooms.get(request.ctx.identity, room_id))


@bp.patch("/rooms/<room_id:int>")
@openapi.definition(
    summary="Rename a room or change its visibility (owner, moderator)",
    parameter=ROOM_ID,
    body=json_body(protocol.UpdateRoomRequest),
    response=responses(protocol.CreatedRoomResponse, 400, 401, 403, 404, 413, 503),
    secured=BEARER,
)
async def update_room(request: Request, room_id: int) -> HTTPResponse:
    body = protocol.parse_body(protocol.UpdateRoomRequest, request.body)
    st = await ctx_of(request).rooms.update(
        request.ctx.identity, room_id, body.name, body.visibility
    )
    return await _room(request, st)


@bp.delete("/rooms/<room_id:int>")
@openapi.definition(
    summary="Delete a room (owner); its sockets close with 1001",
    parameter=ROOM_ID,
    response=no_content(401, 403, 404, 503),
    secured=BEARER,
)
async def delete_room(request: Request, room_id: int) -> HTTPResponse:
    await ctx_of(request).rooms.delete(request.ctx.identity, room_id)
    return empty()


@bp.get("/rooms/<room_id:int>/members")
@openapi.definition(
    summary="A room's members and their roles",
    parameter=ROOM_ID,
    response=responses(protocol.MembersResponse, 401, 403, 404, 503),
    secured=BEARER,
)
async def members(request: Request, room_id: int) -> HTTPResponse:
    found = await ctx_of(request).rooms.members(request.ctx.identity, room_id)
    return json(protocol.members_json(found))


@bp.post("/rooms/<room_id:int>/members")
@openapi.definition(
    summary="Add a member to a private room (owner, moderator); 201, or 200 if already one",
    parameter=ROOM_ID,
    body=json_body(protocol.UserRefRequest),
    response=[
        *responses(protocol.MemberResponse, 400, 401, 403, 404, 409, 413, 503),
        openapi.definitions.Response(json_content(protocol.MemberResponse), 201, "Added."),
    ],
    secured=BEARER,
)
async def add_member(request: Request, room_id: int) -> HTTPResponse:
    body = protocol.parse_body(protocol.UserRefRequest, request.body)
    member, added = await ctx_of(request).rooms.add_member(
        request.ctx.identity, room_id, _ref(body)
    )
    return json({"member": protocol.member_json(member)}, status=201 if added else 200)


@bp.put("/rooms/<room_id:int>/members/<user_id:int>")
@openapi.definition(
    summary="Make a member a moderator or a plain member (owner)",
    parameter=[ROOM_ID, USER_ID],
    body=json_body(protocol.RoleRequest),
    response=responses(protocol.MemberResponse, 400, 401, 403, 404, 413, 503),
    secured=BEARER,
)
async def set_role(request: Request, room_id: int, user_id: int) -> HTTPResponse:
    body = protocol.parse_body(protocol.RoleRequest, request.body)
    member = await ctx_of(request).rooms.set_role(request.ctx.identity, room_id, user_id, body.role)
    return json({"member": protocol.member_json(member)})


@bp.delete("/rooms/<room_id:int>/members/<user_id:int>")
@openapi.definition(
    summary="Leave a room (your own ID) or remove a member (owner, moderator)",
    parameter=[ROOM_ID, USER_ID],
    response=no_content(401, 403, 404, 503),
    secured=BEARER,
)
async def remove_member(request: Request, room_id: int, user_id: int) -> HTTPResponse:
    await ctx_of(request).rooms.remove(request.ctx.identity, room_id, user_id)
    return empty()


@bp.post("/rooms/<room_id:int>/bans")
@openapi.definition(
    summary="Ban a user from a room (owner, moderator), for `seconds` or until lifted",
    parameter=ROOM_ID,
    body=json_body(protocol.BanRequest),
    response=no_content(400, 401, 403, 404, 413, 503),
    secured=BEARER,
)
async def ban(request: Request, room_id: int) -> HTTPResponse:
    body = protocol.parse_body(protocol.BanRequest, request.body)
    await ctx_of(request).rooms.ban(
        request.ctx.identity, room_id, body.userId, body.seconds, body.reason
    )
    return empty()


@bp.delete("/rooms/<room_id:int>/bans/<user_id:int>")
@openapi.definition(
    summary="Lift a ban (owner, moderator)",
    parameter=[ROOM_ID, USER_ID],
    response=no_content(401, 403, 404, 503),
    secured=BEARER,
)
async def unban(request: Request, room_id: int, user_id: int) -> HTTPResponse:
    await ctx_of(request).rooms.unban(request.ctx.identity, room_id, user_id)
    return empty()


@bp.post("/rooms/<room_id:int>/mutes")
@openapi.definition(
    summary="Mute a user in a room (owner, moderator): they read but cannot post",
    parameter=ROOM_ID,
    body=json_body(protocol.MuteRequest),
    response=no_content(400, 401, 403, 404, 413, 503),
    secured=BEARER,
)
async def mute(request: Request, room_id: int) -> HTTPResponse:
    body = protocol.parse_body(protocol.MuteRequest, request.body)
    await ctx_of(request).rooms.mute(request.ctx.identity, room_id, body.userId, body.seconds)
    return empty()


@bp.delete("/rooms/<room_id:int>/mutes/<user_id:int>")
@openapi.definition(
    summary="Lift a mute (owner, moderator)",
    parameter=[ROOM_ID, USER_ID],
    response=no_content(401, 403, 404, 503),
    secured=BEARER,
)
async def unmute(request: Request, room_id: int, user_id: int) -> HTTPResponse:
    await ctx_of(request).rooms.unmute(request.ctx.identity, room_id, user_id)
    return empty()


@bp.post("/direct")
@openapi.definition(
    summary="The direct room of the caller and another user (made on first ask)",
    body=json_body(protocol.UserRefRequest),
    response=responses(protocol.CreatedRoomResponse, 400, 401, 404, 413, 503),
    secured=BEARER,
)
async def direct(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.UserRefRequest, request.body)
    st = await ctx_of(request).rooms.direct(request.ctx.identity, _ref(body))
    return await _room(request, st)
