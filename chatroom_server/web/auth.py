"""POST /v1/api/auth/signup and /login."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from .. import protocol
from .context import ctx_of

bp = Blueprint("auth", url_prefix="/v1/api/auth")


@bp.post("/signup")
async def signup(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.SignupRequest, request.body)
    ctx = ctx_of(request)
    user = await ctx.users.signup(body.user_name, body.email, body.password)
    return json(protocol.auth_json(user, ctx.tokens.issue(user)))


@bp.post("/login")
async def login(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.LoginRequest, request.body)
    ctx = ctx_of(request)
    user = await ctx.users.login(body.email, body.password)
    return json(protocol.auth_json(user, ctx.tokens.issue(user)))
