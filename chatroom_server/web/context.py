"""The typed application context shared by every handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from sanic import Request, Sanic
from sanic.config import Config

from ..db.store import MessageStore
from ..domain import Identity
from ..realtime.hub import Hub
from ..realtime.relay import Relay
from ..security import TokenService
from ..services.users import UserService
from ..settings import Settings
from .internals import Wire
from .keepalive import Keepalive


@dataclass
class Ctx:
    settings: Settings
    users: UserService
    wire: Wire
    store: MessageStore
    hub: Hub
    relay: Relay
    keepalive: Keepalive
    # Set in before_server_start, once the secret is read from the database.
    tokens: TokenService = field(init=False)


App = Sanic[Config, Ctx]


def ctx_of(request: Request) -> Ctx:
    return cast(Ctx, request.app.ctx)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authenticate(request: Request) -> Identity:
    """The caller's identity from `Authorization: Bearer`, or Unauthorized."""
    return ctx_of(request).tokens.verify(bearer_token(request))
