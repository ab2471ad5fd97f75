"""Any request: malformed bodies, the body size limit, unknown routes and methods."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ...conftest import ChatServer, auth
from .conftest import (
    CREATE,
    LOGIN,
    PASSWORD,
    ROOM_MESSAGES,
    ROOMS,
    SECRET,
    SIGNUP,
    Soft,
    assert_error,
    new_email,
    post_raw,
    room_list,
)

# --------------------------------------------------------------------------- request bodies


async def test_malformed_non_object_and_empty_bodies_are_400(server: ChatServer) -> None:
    _, token = await server.signup()
    soft = Soft()
    for path in (SIGNUP, LOGIN, CREATE, ROOM_MESSAGES):
        for raw in (b'{"email": ', b"{'email': 'a@b.c'}", b"not json at all", b'{"a":1}}'):
            with soft.case(f"{path} malformed {raw!r}"):
                assert_error(await post_raw(server, path, raw, token), 400, "json")
        for raw in (b"[]", b'[{"name": "x", "roomId": 1}]', b'"text"', b"42", b"null", b"true"):
            with soft.case(f"{path} non-object {raw!r}"):
                assert_error(await post_raw(server, path, raw, token), 400)
        with soft.case(f"{path} empty body"):
            assert_error(await post_raw(server, path, b"", token), 400)
        with soft.case(f"{path} no body and no content-type"):
            assert_error(await server.http.post(path, headers=auth(token)), 400)
    soft.done()
    assert await room_list(server, token) == []


# --------------------------------------------------------------------------- body size


async def test_two_mib_body_is_413_json(server: ChatServer) -> None:
    _, token = await server.signup()
    big = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    for path in (SIGNUP, LOGIN, CREATE):
        assert_error(await post_raw(server, path, big, token), 413)

    # Without a Content-Length (chunked), the limit still holds.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"pad": "'
        for _ in range(32):
            yield b"x" * 65536
        yield b'"}'

    res = await server.http.post(
        SIGNUP, content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in res.request.headers
    assert_error(res, 413)


class TestSmallBodyLimit:
    LIMIT = 4096

    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"jwt_secret": SECRET, "max_body_bytes": self.LIMIT}

    @staticmethod
    def signup_body(size: int) -> bytes:
        email = new_email()  # and a name of its own: look-alike names are one name
        fields = {"user_name": email.split("@")[0], "email": email, "password": PASSWORD, "pad": ""}
        fields["pad"] = "x" * (size - len(json.dumps(fields).encode()))
        raw = json.dumps(fields).encode()
        assert len(raw) == size
        return raw

    async def test_body_up_to_the_limit_is_accepted_past_it_413(self, server: ChatServer) -> None:
        for size in (self.LIMIT - 1, self.LIMIT):
            res = await post_raw(server, SIGNUP, self.signup_body(size))
            assert res.status_code == 200, f"{size} bytes: {res.text}"
        assert_error(await post_raw(server, SIGNUP, self.signup_body(self.LIMIT + 1)), 413)


# --------------------------------------------------------------------------- routing


async def test_unknown_route_is_404_and_wrong_method_405_json(server: ChatServer) -> None:
    _, token = await server.signup()
    soft = Soft()
    for method, path in [
        ("GET", "/v1/api/nope"),
        ("POST", "/v1/api/auth/nope"),
        ("GET", "/no/such/page"),
        ("POST", "/v1/api/chat/nope"),
        ("GET", f"{ROOMS}/abc/messages"),
    ]:
        with soft.case(f"{method} {path}"):
            res = await server.http.request(method, path, json={}, headers=auth(token))
            assert_error(res, 404)
    for method, path in [
        ("GET", SIGNUP),
        ("GET", LOGIN),
        ("PUT", CREATE),
        ("DELETE", ROOMS),
        ("PATCH", ROOM_MESSAGES),
        ("POST", f"{ROOMS}/1/messages"),
    ]:
        with soft.case(f"{method} {path}"):
            res = await server.http.request(method, path, json={}, headers=auth(token))
            assert_error(res, 405)
    soft.done()
