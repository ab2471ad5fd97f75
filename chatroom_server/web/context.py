"""The typed application context shared by every handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sanic import Request, Sanic
from sanic.config import Config

from ..db.store import MessageStore
from ..domain import Identity
from ..errors import Unauthorized
from ..realtime.hub import Hub
from ..realtime.keys import KeyWatch
from ..realtime.reads import ReadFanout
from ..realtime.relay import Relay
from ..realtime.revocations import Revocations
from ..realtime.room_events import RoomEvents
from ..security import TokenService
from ..services.changes import MessageChanges
from ..services.limits import AbuseLimits
from ..services.members import RoomAdmin
from ..services.reads import ReadService
from ..services.sessions import SessionService
from ..services.users import UserService
from ..settings import Settings
from .internals import Wire
from .keepalive import Keepalive


@dataclass
class Ctx:
    settings: Settings
    users: UserService
    limits: AbuseLimits
    sessions: SessionService
    revocations: Revocations
    keys: KeyWatch
    room_events: RoomEvents
    rooms: RoomAdmin
    reads: ReadService
    read_fanout: ReadFanout
    wire: Wire
    store: MessageStore
    hub: Hub
    relay: Relay
    changes: MessageChanges
    keepalive: Keepalive
    # The connection protocol to serve with (internals.choose_protocol): every way of
    # starting the app passes it to Sanic as `protocol=`.
    http_protocol: type[Any] = field(init=False)
    # Set in before_server_start, once the keys are read from the database (the
    # same object all along: a rotation replaces its keys, realtime/keys.py).
    tokens: TokenService = field(init=False)
    # Set first thing at shutdown: from then on websockets are refused before the
    # upgrade (503), not accepted and kept open through Sanic's graceful wait.
    stopping: bool = field(default=False, init=False)


App = Sanic[Config, Ctx]


def ctx_of(request: Request) -> Ctx:
    return cast(Ctx, request.app.ctx)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def authenticate(request: Request, token: str | None = None) -> Identity:
    """The caller's identity from `token` or `Authorization: Bearer`, or Unauthorized.

    The token must be valid and its session (and user) still stand: a cached
    answer, so no database round trip on most calls (services/sessions.py).
    """
    ctx = ctx_of(request)
    raw = token or bearer_token(request)
    try:
        identity = ctx.tokens.verify(raw)
    except Unauthorized:
        # Signed on another host with a key rotated in a moment ago: read the keys
        # once, then look again.
        if not (raw and ctx.tokens.names_unknown_key(raw) and await ctx.keys.catch_up()):
            raise
        identity = ctx.tokens.verify(raw)
    await ctx.sessions.check(identity)
    return identity


async def require_token(request: Request) -> None:
    """Request middleware of the blueprints whose every route needs a token."""
    if request.method != "OPTIONS":
        request.ctx.identity = await authenticate(request)


def client_ip(request: Request) -> str:
    """The TCP peer, or the address trusted proxies forwarded (CHATROOM_PROXIES_COUNT)."""
    return request.remote_addr or request.ip
