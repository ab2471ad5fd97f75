"""The one place where exceptions become HTTP responses: JSON, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse, json

from .. import protocol
from ..errors import ChatError, RateLimited, ShuttingDown
from .internals.http import drain_refused_body, lingers

log = logging.getLogger("chatroom_server.web")

INTERNAL = "The server could not complete this request."


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> HTTPResponse:
    return json(protocol.error_json(status, message), status=status, headers=headers)


def to_response(request: Request | None, exc: BaseException) -> HTTPResponse:
    if isinstance(exc, ChatError):
        headers = None
        if isinstance(exc, RateLimited | ShuttingDown):
            headers = {"Retry-After": str(exc.retry_after)}
        if exc.status >= 500 and not isinstance(exc, ShuttingDown):
            log.error("request failed: %s %s", exc.code, exc.message)
        return error_response(exc.status, exc.message, headers)
    if isinstance(exc, SanicException):
        status = exc.status_code
        message = str(exc) if not getattr(exc, "quiet", False) or status < 500 else INTERNAL
        if status == 413:
            message = "The request body is too large."
        return error_response(status, message or INTERNAL, getattr(exc, "headers", None))
    # Only the path: a query string may hold a token (?jwt=...).
    path = request.path if request is not None else "?"
    log.error("unhandled %s on %s", type(exc).__name__, path, exc_info=exc)
    return error_response(500, INTERNAL)


class ChatErrorHandler(ErrorHandler):
    """Sanic's handler, but its log line names the path only: the URL may carry ?jwt=."""

    @staticmethod
    def log(request: Request, exception: Exception) -> None:
        if getattr(exception, "quiet", False):
            return
        log.error("unhandled %s on %s", type(exception).__name__, request.path, exc_info=exception)


def setup_errors(app: Sanic[Any, Any]) -> None:
    app.config.FALLBACK_ERROR_FORMAT = "json"

    async def handle(request: Request, exc: Exception) -> HTTPResponse:
        response = to_response(request, exc)
        if response.status == 413 and not lingers(request):
            # The client may still be sending: let it finish, or it never sees the 413
            # (our protocol answers at once and lingers at the close instead).
            await drain_refused_body(request)
        return response

    app.error_handler.add(Exception, handle)
