"""POST /v1/api/auth/signup and /login.

Also the helpers that document routes in the OpenAPI document (/docs/openapi.json)
from the models of `protocol`, the same ones the handlers validate with.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from .. import protocol
from .context import ctx_of

bp = Blueprint("auth", url_prefix="/v1/api/auth")

JSON = "application/json"


def json_content(model: type[BaseModel]) -> dict[str, Any]:
    """A JSON media type whose schema is `model`, registered as a component."""
    return {JSON: openapi.Component(model)}


def json_body(model: type[BaseModel], required: bool = True) -> Any:
    return openapi.definitions.RequestBody(json_content(model), required=required)


def responses(ok: type[BaseModel], *errors: int, description: str = "OK") -> list[Any]:
    """The 200 response, then each error status in Sanic's error shape."""
    documented = [openapi.definitions.Response(json_content(ok), 200, description)]
    for status in errors:
        error = json_content(protocol.ErrorResponse)
        documented.append(
            openapi.definitions.Response(error, status, protocol.ERROR_STATUSES[status])
        )
    return documented


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
