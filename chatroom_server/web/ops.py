"""Operations endpoints: /healthz (process alive) and /readyz (dependencies reachable)."""

from __future__ import annotations

import asyncio
import logging

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from ..db import ping

bp = Blueprint("ops")
log = logging.getLogger("chatroom_server.web")


@bp.get("/healthz")
async def healthz(request: Request) -> HTTPResponse:
    return json({"status": "ok"})


@bp.get("/readyz")
async def readyz(request: Request) -> HTTPResponse:
    try:
        await asyncio.wait_for(ping(), timeout=2.0)
    except Exception as exc:
        log.warning("readiness: database unreachable (%s)", type(exc).__name__)
        return json({"status": "unavailable", "failing": ["database"]}, status=503)
    return json({"status": "ok"})
