"""The OpenAPI document (/docs/openapi.json): helpers that describe routes with the
models of `protocol` (the same ones the handlers validate with), and what the
document leaves out (the websocket, the web client, /metrics).

The browsable page at /docs is sanic-ext's ReDoc UI with a vendored, pinned ReDoc
bundle served from this server (chatroom_server/vendor/redoc/README.md): nothing on
it comes from another origin, so it works offline and no foreign script runs on the
web client's origin (where the token lives).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sanic import Request, Sanic
from sanic.config import Config
from sanic.response import HTTPResponse, raw
from sanic_ext import openapi

from .. import __version__, protocol
from . import static

JSON = "application/json"

# The security scheme of every route that needs a token.
BEARER: dict[str, list[str]] = {"bearer": []}


DOCS_PREFIX = "/docs"
REDOC_DIR = Path(__file__).resolve().parent.parent / "vendor" / "redoc"
REDOC_VERSION = "2.5.4"
REDOC_SHA256 = "dcaf76612bc4a3fbcc923a8966dee2f6146a5f32e5ce1b6f02dd60cbbf89500b"
# The version is in the path, so browsers may keep the file for good.
REDOC_SCRIPT = f"{DOCS_PREFIX}/redoc-{REDOC_VERSION}/redoc.standalone.js"

# For /docs and everything under it. ReDoc injects <style> elements (styled-components)
# and runs its search index in a worker made from a blob: URL; scripts only from here.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


def configure_docs(config: Config) -> None:
    """sanic-ext's settings for /docs: read when the extension starts (before `Extend`)."""
    config.OAS_URL_PREFIX = DOCS_PREFIX
    config.OAS_UI_DEFAULT = "redoc"
    config.OAS_UI_SWAGGER = False  # its page loads Swagger UI from a CDN
    config.OAS_PATH_TO_REDOC_HTML = str(REDOC_DIR / "redoc.html")
    config.OAS_UI_REDOC_CDN_URL = REDOC_SCRIPT
    config.OAS_UI_REDOC_HTML_TITLE = "chatroom-server API"


@cache
def _redoc_bundle() -> bytes:
    return (REDOC_DIR / "redoc.standalone.js").read_bytes()


async def redoc_script(request: Request) -> HTTPResponse:
    return raw(
        _redoc_bundle(),
        content_type="text/javascript; charset=utf-8",
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def docs_headers(request: Request, response: HTTPResponse) -> None:
    path = request.path
    if path == DOCS_PREFIX or path.startswith(DOCS_PREFIX + "/"):
        response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"


def id_schema(low: int, high: int) -> Any:
    return openapi.Long(minimum=low, maximum=high)  # type: ignore[no-untyped-call]


def path_id(name: str) -> Any:
    """A path parameter that is an ID (1 to protocol.MAX_ID)."""
    return openapi.definitions.Parameter(name, id_schema(1, protocol.MAX_ID), "path", required=True)


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


def no_content(*errors: int, description: str = "Done.") -> list[Any]:
    """A 204 response, then each error status in Sanic's error shape."""
    documented = [openapi.definitions.Response({}, 204, description)]
    for status in errors:
        error = json_content(protocol.ErrorResponse)
        documented.append(
            openapi.definitions.Response(error, status, protocol.ERROR_STATUSES[status])
        )
    return documented


# The websocket is not a REST route, so the document says in words what a client
# needs to know of it (SPEC 5 and 12; the README has the whole of it).
WEBSOCKET = """\
REST API of chatroom-server. Every route but signup and login needs
`Authorization: Bearer <token>`.

## The websocket

`GET /v1/ws` (or `/ws`) upgrades to a websocket: query `room_id`, `jwt` (or the
Bearer header), optional `since` and `v`. Frames are JSON: `{"chatMessage": "..."}`
in, `{"Type": 1, "Event": ..., "Body": {...}}` out (`message`, `join`, `leave`,
`recovered`, `error`).

With `v=2` a client also sends `{"type": "edit", "id", "chatMessage"}`,
`{"type": "delete", "id"}`, `{"type": "typing"}` and `{"type": "read", "lastReadId"}`,
and receives `edit`, `delete`, `typing` and `read` events.

**Recovery cursor.** Edits and deletes take their place in a room's order with an ID
of their own from the messages' ID sequence, given as `eventId` in `edit` and
`delete` events. A v2 client reconnects with `since=` the largest `ID` or `eventId`
it saw and is sent every message, edit and delete after it, in order, with no gap
or duplicate; a v1 client's `since` is the last message `ID`.
"""


def setup_openapi(app: Sanic[Any, Any]) -> None:
    """The bearer scheme, the routes the REST document does not cover, and /docs's own
    script and headers."""
    openapi.exclude()(static.index)
    openapi.exclude()(static.asset)
    app.add_route(openapi.exclude()(redoc_script), REDOC_SCRIPT, name="redoc_script")
    app.on_response(docs_headers)  # type: ignore[no-untyped-call]

    # Before sanic-ext builds the document: its own listener comes last.
    @app.before_server_start
    async def document(app: Any) -> None:
        app.ext.openapi.describe("chatroom-server", version=__version__, description=WEBSOCKET)
        app.ext.openapi.add_security_scheme(
            "bearer",
            "http",
            scheme="bearer",
            bearer_format="JWT",
            description="A token from login.",
        )
        for route in app.router.routes:
            if route.extra.websocket:  # the handler is a per-app partial: excluded here
                openapi.exclude()(route.handler)
