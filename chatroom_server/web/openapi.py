"""The OpenAPI document (/docs/openapi.json): helpers that describe routes with the
models of `protocol` (the same ones the handlers validate with), and what the
document leaves out (the websocket, the web client, /metrics).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sanic import Sanic
from sanic_ext import openapi

from .. import __version__, protocol
from . import static

JSON = "application/json"

# The security scheme of every route that needs a token.
BEARER: dict[str, list[str]] = {"bearer": []}


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
    """The bearer scheme, and the routes the REST document does not cover."""
    openapi.exclude()(static.index)
    openapi.exclude()(static.asset)

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
