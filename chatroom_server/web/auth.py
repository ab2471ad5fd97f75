"""/v1/api/auth: signup and login (each starts a session), and the session endpoints."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from .. import protocol
from ..domain import User
from .context import authenticate, client_ip, ctx_of
from .openapi import BEARER, json_body, no_content, responses

bp = Blueprint("auth", url_prefix="/v1/api/auth")


async def _signed_in(request: Request, user: User) -> HTTPResponse:
    ctx = ctx_of(request)
    sid = await ctx.sessions.start(user.id, request.headers.get("user-agent"))
    return json(protocol.auth_json(user, ctx.tokens.issue(user, sid)))


@bp.post("/signup")
@openapi.definition(
    summary="Create an account (and start a session)",
    body=json_body(protocol.SignupRequest),
    response=responses(protocol.AuthResponse, 400, 409, 413, 429, 503),
)
async def signup(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.SignupRequest, request.body)
    ctx = ctx_of(request)
    await ctx.limits.check_signup(client_ip(request))
    user = await ctx.users.signup(body.user_name, body.email, body.password)
    return await _signed_in(request, user)


@bp.post("/login")
@openapi.definition(
    summary="Log in: a token for a new session of an existing account",
    body=json_body(protocol.LoginRequest),
    response=responses(protocol.AuthResponse, 400, 401, 413, 429, 503),
)
async def login(request: Request) -> HTTPResponse:
    body = protocol.parse_body(protocol.LoginRequest, request.body)
    user = await ctx_of(request).users.login(body.email, body.password, client_ip(request))
    return await _signed_in(request, user)


@bp.post("/logout")
@openapi.definition(
    summary="End this token's session: its token and open sockets stop working everywhere",
    response=no_content(401, 503),
    secured=BEARER,
)
async def logout(request: Request) -> HTTPResponse:
    identity = await authenticate(request)
    sessions = ctx_of(request).sessions
    if identity.session_id is None:
        # A token from before sessions cannot be told from the user's other such
        # tokens: they all end; the user's sessions stay.
        await sessions.end_legacy(identity.user_id)
    else:
        await sessions.end(identity.user_id, identity.session_id, own=True)
    return empty()


@bp.post("/logout-all")
@openapi.definition(
    summary="End every session of the caller, this one included",
    response=no_content(401, 503),
    secured=BEARER,
)
async def logout_all(request: Request) -> HTTPResponse:
    identity = await authenticate(request)
    await ctx_of(request).sessions.end_all(identity.user_id)
    return empty()


@bp.post("/refresh")
@openapi.definition(
    summary="A new token for the same session, with a fresh expiry",
    response=responses(protocol.AuthResponse, 401, 503),
    secured=BEARER,
)
async def refresh(request: Request) -> HTTPResponse:
    identity = await authenticate(request)
    ctx = ctx_of(request)
    user = await ctx.users.get(identity.user_id)
    sid = await ctx.sessions.refresh(identity, request.headers.get("user-agent"))
    return json(protocol.auth_json(user, ctx.tokens.issue(user, sid)))


@bp.get("/sessions")
@openapi.definition(
    summary="The caller's open sessions, most recently seen first",
    response=responses(protocol.SessionsResponse, 401, 503),
    secured=BEARER,
)
async def sessions(request: Request) -> HTTPResponse:
    identity = await authenticate(request)
    found = await ctx_of(request).sessions.list(identity.user_id)
    return json(protocol.sessions_json(found, identity.session_id))


@bp.delete("/sessions/<session_id:str>")
@openapi.definition(
    summary="End one of the caller's sessions",
    parameter=openapi.definitions.Parameter(
        "session_id",
        openapi.String(),  # type: ignore[no-untyped-call]
        "path",
        required=True,
    ),
    response=no_content(401, 404, 503),
    secured=BEARER,
)
async def end_session(request: Request, session_id: str) -> HTTPResponse:
    identity = await authenticate(request)
    await ctx_of(request).sessions.end(identity.user_id, session_id)
    return empty()


@bp.post("/password")
@openapi.definition(
    summary="Change the password; every other session ends",
    body=json_body(protocol.PasswordChangeRequest),
    response=no_content(400, 401, 403, 413, 429, 503),
    secured=BEARER,
)
async def change_password(request: Request) -> HTTPResponse:
    identity = await authenticate(request)
    body = protocol.parse_body(protocol.PasswordChangeRequest, request.body)
    ctx = ctx_of(request)
    await ctx.users.change_password(
        identity.user_id, body.oldPassword, body.newPassword, client_ip(request)
    )
    await ctx.sessions.end_all(identity.user_id, keep=identity.session_id)
    return empty()
