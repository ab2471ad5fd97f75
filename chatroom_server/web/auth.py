"""POST /v1/api/auth/signup and /login."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from .. import protocol
from .context import ctx_of
from .openapi import json_body, responses

bp = Blueprint("auth", url_prefix="/v1/api/auth")


@bp.post("/signup")
@openapi.definition(
    summary="Create an account",
    body=json_body(protocol.SignupRequest),
    response=responses(protocol.AuthResponse, 400, 409, 413, 503),
)
async def signup(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.SignupRequest, request.body)
    ctx = ctx_of(request)
    user = await ctx.users.signup(body.user_name, body.email, body.password)
    return json(protocol.auth_json(user, ctx.tokens.issue(user)))


@bp.post("/login")
@openapi.definition(
    summary="Log in: a token for an existing account",
    body=json_body(protocol.LoginRequest),
    response=responses(protocol.AuthResponse, 400, 401, 413, 429, 503),
)
async def login(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.LoginRequest, request.body)
    ctx = ctx_of(request)
    user = await ctx.users.login(body.email, body.password)
    return json(protocol.auth_json(user, ctx.tokens.issue(user)))
