"""Operations: /healthz (process alive), /readyz (dependencies reachable), /metrics."""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from .. import metrics, protocol
from ..db import ping
from ..errors import NotFound, Unauthorized
from ..logs import access_log, redact_query
from ..pubsub import CONTROL_ROOM
from .context import client_ip, ctx_of
from .openapi import json_content, responses

bp = Blueprint("ops")
log = logging.getLogger("chatroom_server.web")


@bp.get("/healthz")
@openapi.definition(
    summary="Liveness: the process answers", response=responses(protocol.HealthResponse)
)
async def healthz(request: Request) -> HTTPResponse:
    return json({"status": "ok"})


@bp.get("/readyz")
@openapi.definition(
    summary="Readiness: the database (and Redis, when configured) answer",
    response=[
        *responses(protocol.HealthResponse),
        openapi.definitions.Response(
            json_content(protocol.NotReadyResponse), 503, "A dependency is unreachable."
        ),
    ],
)
async def readyz(request: Request) -> HTTPResponse:
    failing = []
    try:
        await asyncio.wait_for(ping(), timeout=2.0)
    except Exception as exc:
        log.warning("readiness: database unreachable (%s)", type(exc).__name__)
        failing.append("database")
    relay = ctx_of(request).relay
    if not relay.broker.healthy:
        failing.append("redis")
    else:
        try:
            # A real presence read: its keys must be reachable too (on a cluster, on
            # the master of their slot), or every room would count 0 connections.
            await asyncio.wait_for(relay.presence_store.list(CONTROL_ROOM), timeout=2.0)
        except Exception as exc:
            log.warning("readiness: presence in Redis unavailable (%s)", type(exc).__name__)
            failing.append("redis")
    if failing:
        return json({"status": "unavailable", "failing": failing}, status=503)
    return json({"status": "ok"})


@bp.get("/metrics")
@openapi.exclude()  # Prometheus text, not part of the REST API
async def metrics_endpoint(request: Request) -> HTTPResponse:
    settings = ctx_of(request).settings
    if settings.metrics_port is not None:
        raise NotFound("The metrics are served on their own port.")
    if not metrics.token_allows(request.headers.get("authorization"), settings.metrics_token):
        raise Unauthorized("The metrics need the metrics token as a Bearer token.")
    body, content_type = metrics.render()
    return raw(body, content_type=content_type)


def stamp_request(request: Request) -> None:
    """Request middleware: when the request started, for the access line's duration."""
    request.ctx.started = perf_counter()


async def count_request(request: Request, response: HTTPResponse) -> None:
    """Response middleware: count by route pattern (bounded) and status; one access line."""
    route = request.route.path if request.route is not None else "unmatched"
    metrics.HTTP_REQUESTS.labels(route or "/", str(response.status)).inc()
    if access_log.isEnabledFor(logging.INFO):
        started = getattr(request.ctx, "started", None)
        duration = round((perf_counter() - started) * 1000, 3) if started is not None else None
        client = client_ip(request)
        query = redact_query(request.query_string)
        # The path field never has the query: a token may travel in ?jwt=. The text
        # line shows the query with the values of secret parameters as ***.
        access_log.info(
            "%s %s%s %s %s %s",
            request.method,
            request.path,
            f"?{query}" if query else "",
            response.status,
            f"{duration}ms" if duration is not None else "-",
            client or "-",
            extra={
                "fields": {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "duration_ms": duration,
                    "client": client,
                }
            },
        )
