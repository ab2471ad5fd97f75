"""The typed application context shared by every handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from sanic import Request, Sanic
from sanic.config import Config

from ..db.checkpoint import Checkpointer
from ..domain import Identity
from ..realtime.hub import Hub
from ..security import TokenService
from ..services.sqlite_batches import SqliteBatches
from ..services.users import UserService
from ..settings import Settings
from .keepalive import Keepalive


@dataclass
class Ctx:
    settings: Settings
    users: UserService
    hub: Hub
    keepalive: Keepalive
    # Set in before_server_start, once the secret is read from the database.
    tokens: TokenService = field(init=False)
    # SQLite's WAL checkpoints, off the commit path (None for PostgreSQL).
    checkpointer: Checkpointer | None = field(init=False, default=None)
    # SQLite: the group commit's own connection and thread (None for PostgreSQL).
    sqlite_batches: SqliteBatches | None = field(init=False, default=None)


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
