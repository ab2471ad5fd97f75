"""Editing and deleting a message by REST, under /v1/api/chat/messages (SPEC 12).

The rules and the ordering are the same as for a websocket's edit and delete
frames (services/changes.py): every protocol v2 connection of the room sees it.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from .. import protocol
from ..db.store import message_gone
from .context import ctx_of, require_token
from .openapi import BEARER, json_body, no_content, path_id, responses

bp = Blueprint("messages", url_prefix="/v1/api/chat/messages")
bp.on_request(require_token)

MESSAGE_ID = path_id("message_id")


def _checked(message_id: int) -> int:
    if not 1 <= message_id <= protocol.MAX_ID:
        raise message_gone(message_id)
    return message_id


@bp.patch("/<message_id:int>")
@openapi.definition(
    summary="Edit a message (its author, within CHATROOM_EDIT_WINDOW)",
    parameter=MESSAGE_ID,
    body=json_body(protocol.EditMessageRequest),
    response=responses(protocol.MessageResponse, 400, 401, 403, 404, 413, 503),
    secured=BEARER,
)
async def edit(request: Request, message_id: int) -> HTTPResponse:
    ctx = ctx_of(request)
    body: Any = protocol.parse_body(protocol.EditMessageRequest, request.body)
    text = protocol.check_text(body.chatMessage, ctx.settings.max_message_chars)
    change = await ctx.changes.edit(request.ctx.identity, _checked(message_id), text)
    assert change.message is not None
    return json(protocol.message_response_json(change.message))


@bp.delete("/<message_id:int>")
@openapi.definition(
    summary="Delete a message (its author, the room's owner or moderators, site admins)",
    parameter=MESSAGE_ID,
    response=no_content(401, 403, 404, 503, description="Deleted."),
    secured=BEARER,
)
async def delete(request: Request, message_id: int) -> HTTPResponse:
    ctx = ctx_of(request)
    await ctx.changes.delete(request.ctx.identity, _checked(message_id))
    return empty()
