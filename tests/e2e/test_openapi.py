"""The OpenAPI document at /docs/openapi.json, and schemathesis against it.

The document is built from the pydantic models of `protocol` (the ones the
handlers validate with); schemathesis then generates requests from it and checks
every answer of the real server against it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import chatroom_server
from chatroom_server import protocol

from ..conftest import ChatServer, auth

DOC = "/docs/openapi.json"

# (method, path): (request, 200 response model or None for 204, error statuses, Bearer?)
# request is a request-body model, a list of query parameters, or None.
ROUTES: dict[tuple[str, str], tuple[Any, type | None, set[int], bool]] = {
    ("post", "/v1/api/auth/signup"): (
        protocol.SignupRequest,
        protocol.AuthResponse,
        {400, 409, 413, 429, 503},
        False,
    ),
    ("post", "/v1/api/auth/login"): (
        protocol.LoginRequest,
        protocol.AuthResponse,
        {400, 401, 413, 429, 503},
        False,
    ),
    ("post", "/v1/api/auth/logout"): (None, None, {401, 503}, True),
    ("post", "/v1/api/auth/logout-all"): (None, None, {401, 503}, True),
    ("post", "/v1/api/auth/refresh"): (None, protocol.AuthResponse, {401, 503}, True),
    ("get", "/v1/api/auth/sessions"): (None, protocol.SessionsResponse, {401, 503}, True),
    ("delete", "/v1/api/auth/sessions/{session_id}"): (["session_id"], None, {401, 404, 503}, True),
    ("post", "/v1/api/auth/password"): (
        protocol.PasswordChangeRequest,
        None,
        {400, 401, 403, 413, 429, 503},
        True,
    ),
    ("post", "/v1/api/chat/create"): (
        protocol.CreateRoomRequest,
        protocol.CreatedRoomResponse,
        {400, 401, 413, 429, 503},
        True,
    ),
    ("get", "/v1/api/chat/rooms"): (
        ["limit", "after"],
        protocol.RoomsResponse,
        {400, 401, 503},
        True,
    ),
    ("post", "/v1/api/chat/rooms"): (
        protocol.RoomsRequest,  # and the same limit and after as GET
        protocol.RoomsResponse,
        {400, 401, 413, 503},
        True,
    ),
    ("post", "/v1/api/chat/room-messages"): (
        protocol.RoomMessagesRequest,
        protocol.LegacyHistoryResponse,
        {400, 401, 403, 404, 413, 503},
        True,
    ),
    ("get", "/v1/api/chat/rooms/{room_id}/messages"): (
        ["room_id", "before", "after", "limit"],
        protocol.HistoryResponse,
        {400, 401, 403, 404, 503},
        True,
    ),
    ("get", "/v1/api/chat/rooms/{room_id}/presence"): (
        ["room_id"],
        protocol.PresenceResponse,
        {401, 403, 404, 503},
        True,
    ),
    ("patch", "/v1/api/chat/messages/{message_id}"): (
        protocol.EditMessageRequest,
        protocol.MessageResponse,
        {400, 401, 403, 404, 413, 503},
        True,
    ),
    ("delete", "/v1/api/chat/messages/{message_id}"): (
        ["message_id"],
        None,
        {401, 403, 404, 503},
        True,
    ),
    ("get", "/v1/api/chat/rooms/{room_id}"): (
        ["room_id"],
        protocol.CreatedRoomResponse,
        {401, 403, 404, 503},
        True,
    ),
    ("patch", "/v1/api/chat/rooms/{room_id}"): (
        protocol.UpdateRoomRequest,
        protocol.CreatedRoomResponse,
        {400, 401, 403, 404, 413, 503},
        True,
    ),
    ("delete", "/v1/api/chat/rooms/{room_id}"): (["room_id"], None, {401, 403, 404, 503}, True),
    ("get", "/v1/api/chat/rooms/{room_id}/members"): (
        ["room_id"],
        protocol.MembersResponse,
        {401, 403, 404, 503},
        True,
    ),
    ("post", "/v1/api/chat/rooms/{room_id}/members"): (
        protocol.UserRefRequest,
        protocol.MemberResponse,  # 201 when added, 200 when already a member
        {400, 401, 403, 404, 409, 413, 503},
        True,
    ),
    ("put", "/v1/api/chat/rooms/{room_id}/members/{user_id}"): (
        protocol.RoleRequest,
        protocol.MemberResponse,
        {400, 401, 403, 404, 413, 503},
        True,
    ),
    ("delete", "/v1/api/chat/rooms/{room_id}/members/{user_id}"): (
        ["room_id", "user_id"],
        None,
        {401, 403, 404, 503},
        True,
    ),
    ("post", "/v1/api/chat/rooms/{room_id}/bans"): (
        protocol.BanRequest,
        None,
        {400, 401, 403, 404, 413, 503},
        True,
    ),
    ("delete", "/v1/api/chat/rooms/{room_id}/bans/{user_id}"): (
        ["room_id", "user_id"],
        None,
        {401, 403, 404, 503},
        True,
    ),
    ("post", "/v1/api/chat/rooms/{room_id}/mutes"): (
        protocol.MuteRequest,
        None,
        {400, 401, 403, 404, 413, 503},
        True,
    ),
    ("delete", "/v1/api/chat/rooms/{room_id}/mutes/{user_id}"): (
        ["room_id", "user_id"],
        None,
        {401, 403, 404, 503},
        True,
    ),
    ("post", "/v1/api/chat/rooms/{room_id}/read"): (
        protocol.ReadRequest,
        protocol.ReadResponse,
        {400, 401, 403, 404, 413, 503},
        True,
    ),
    ("post", "/v1/api/chat/direct"): (
        protocol.UserRefRequest,
        protocol.CreatedRoomResponse,
        {400, 401, 404, 413, 503},
        True,
    ),
    ("get", "/healthz"): (None, protocol.HealthResponse, set(), False),
    ("get", "/readyz"): (None, protocol.HealthResponse, {503}, False),
}


# SQLite only here: the document and the fuzzing do not depend on the database.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.removeprefix("#/components/schemas/")
    return doc["components"]["schemas"][name]  # type: ignore[no-any-return]


def json_schema(doc: dict[str, Any], holder: dict[str, Any]) -> dict[str, Any]:
    return resolve(doc, holder["content"]["application/json"]["schema"])


async def fetch_doc(server: ChatServer) -> dict[str, Any]:
    res = await server.http.get(DOC)
    assert res.status_code == 200, res.text
    return res.json()  # type: ignore[no-any-return]


async def test_every_rest_route_has_request_and_response_schemas(server: ChatServer) -> None:
    doc = await fetch_doc(server)
    assert doc["openapi"].startswith("3.")
    schemas = doc["components"]["schemas"]
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")

    for (method, path), (request, ok, errors, secured) in ROUTES.items():
        op = doc["paths"][path][method]
        label = f"{method.upper()} {path}"
        # The 200 body is the model's own schema, the error bodies Sanic's error shape.
        if ok is None:
            assert "200" not in op["responses"] and "204" in op["responses"], label
        else:
            assert json_schema(doc, op["responses"]["200"]) == schemas[ok.__name__], label
        documented = {int(s) for s in op["responses"] if s not in ("200", "201", "204")}
        assert documented == errors, label
        for status in errors:
            error = protocol.NotReadyResponse if path == "/readyz" else protocol.ErrorResponse
            body = json_schema(doc, op["responses"][str(status)])
            assert body == schemas[error.__name__], (label, status)
        if isinstance(request, list):
            names = [p["name"] for p in op["parameters"]]
            assert names == request, label
            for param in op["parameters"]:
                kind = "string" if param["name"] == "session_id" else "integer"
                assert param["schema"]["type"] == kind, (label, param)
        elif request is not None:
            body_schema = json_schema(doc, op["requestBody"])
            assert body_schema == schemas[request.__name__], label
            assert body_schema["properties"] or request is protocol.RoomsRequest
        else:
            assert "requestBody" not in op, label
        assert (op.get("security") == [{"bearer": []}]) == secured, label

    # The components are the models' JSON schemas: the same definitions, not a copy.
    for model in (protocol.SignupRequest, protocol.RoomMessagesRequest, protocol.ErrorResponse):
        assert schemas[model.__name__] == model.model_json_schema()
    assert schemas["ErrorResponse"]["required"] == ["description", "status", "message"]
    assert schemas["RoomMessagesRequest"]["properties"]["roomId"]["minimum"] == 1
    user = schemas["UserOut"]
    assert user["properties"]["DeletedAt"]["nullable"] is True
    assert user["additionalProperties"] is False
    message = schemas["MessageOut"]
    assert "clientMessageId" in message["properties"]
    assert "clientMessageId" not in message["required"]
    assert "chatMessage" in message["required"]

    # Not REST: the websocket routes, the web client and /metrics stay out of it.
    for path in ("/ws", "/v1/ws", "/", "/static/{name}", "/metrics"):
        assert path not in doc["paths"]
    assert set(doc["paths"]) == {path for _, path in ROUTES}


async def test_browsable_docs(server: ChatServer) -> None:
    res = await server.http.get("/docs")
    assert res.status_code == 200
    assert "text/html" in res.headers["content-type"]
    assert "openapi.json" in res.text  # the UI and its script: tests/e2e/test_docs.py


# --------------------------------------------------------------------------- schemathesis

MAX_EXAMPLES = 25


def run_schemathesis(doc: dict[str, Any], base_url: str, token: str, label: str) -> None:
    """Generate requests for one operation of `doc` and check every answer (in a thread:
    the server runs on the test's event loop)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    method, path = label.split(" ", 1)
    operation = schemathesis.openapi.from_dict(doc)[path][method]
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]

    # Valid requests, and invalid ones (wrong types, missing fields...) that must get a 4xx.
    modes = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]

    @given(case=st.one_of(modes))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=auth(token), checks=checks, timeout=10)

    check()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("label", sorted(f"{m.upper()} {p}" for m, p in ROUTES))
async def test_schemathesis(server: ChatServer, label: str) -> None:
    doc = await fetch_doc(server)
    _, token = await server.signup()
    # Something to find: room 1, so that some generated requests can answer 200.
    await server.create_room(token, "fuzz")
    await asyncio.to_thread(run_schemathesis, doc, server.base, token, label)


async def test_the_document_describes_the_websocket_and_its_recovery_cursor(
    server: ChatServer,
) -> None:
    """The websocket is no REST route: the document's description says how v2 clients
    resume (SPEC 12: the cursor is documented in README and the OpenAPI document)."""
    doc = (await server.http.get("/docs/openapi.json")).json()
    assert doc["info"]["title"] == "chatroom-server"
    assert doc["info"]["version"] == chatroom_server.__version__
    text = doc["info"]["description"]
    for needed in ("v=2", "eventId", "since", "edit", "delete", "typing", "read"):
        assert needed in text, needed
