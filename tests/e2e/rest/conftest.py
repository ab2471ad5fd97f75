"""The REST suites (test_auth, test_rooms, test_history, test_requests): every REST error
path of SPEC sections 4 and 7, and the happy paths beside them, against the real server.

Each error answer must be JSON in Sanic's shape `{"description", "status", "message"}`,
never HTML and never a traceback; where it matters the message names the field or
parameter. Every test runs on SQLite and on PostgreSQL (see tests/conftest.py).

Starting a server per test is the expensive part, so related cases share one test and
one server; `Soft` collects every failing case of such a test before failing it, so a
single regression does not hide the others.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest

from chatroom_server.db.store import Draft
from chatroom_server.domain import Identity
from chatroom_server.services import rooms as room_service

from ...conftest import ChatServer, auth, claims_for

# The server's JWT secret, set through the `server_settings` fixture so that tests can
# forge expired or wrongly-signed tokens with the very key the server uses.
SECRET = "rest-errors-test-secret-0123456789"
OTHER_SECRET = "some-other-secret-0123456789-abcdef"

ERROR_KEYS = {"description", "status", "message"}
INVALID_LOGIN = "invalid login credentials"
PASSWORD = "password1"

SIGNUP = "/v1/api/auth/signup"
LOGIN = "/v1/api/auth/login"
CREATE = "/v1/api/chat/create"
ROOMS = "/v1/api/chat/rooms"
ROOM_MESSAGES = "/v1/api/chat/room-messages"


@pytest.fixture
def server_settings() -> dict[str, Any]:
    return {"jwt_secret": SECRET}


@pytest.fixture(autouse=True)
async def no_hash_in_any_response(server: ChatServer) -> AsyncIterator[None]:
    """Whatever a test does, no response body ever carries a password hash."""
    seen: list[tuple[str, str]] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        seen.append((f"{response.request.method} {response.request.url.path}", response.text))

    server.http.event_hooks["response"].append(record)
    yield
    for where, text in seen:
        assert "password_hash" not in text, f"{where} leaked a hash field: {text[:300]}"
        assert "$2b$" not in text, f"{where} leaked a bcrypt hash: {text[:300]}"


# --------------------------------------------------------------------------- helpers


class Soft:
    """Collect failed checks of many cases; `done()` fails the test listing them all."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    @contextlib.contextmanager
    def case(self, label: str) -> Iterator[None]:
        try:
            yield
        except AssertionError as exc:
            self.failures.append(f"[{label}] {exc}")

    def done(self) -> None:
        if self.failures:
            pytest.fail(
                f"{len(self.failures)} case(s) failed:\n" + "\n".join(self.failures),
                pytrace=False,
            )


def assert_error(res: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    """`res` is a JSON error in Sanic's shape with `status`; its message contains `needles`."""
    assert res.status_code == status, f"expected {status}, got {res.status_code}: {res.text[:300]}"
    ctype = res.headers.get("content-type", "")
    assert ctype.startswith("application/json"), f"not JSON ({ctype!r}): {res.text[:300]}"
    assert "Traceback" not in res.text and "<html" not in res.text.lower(), res.text[:300]
    body = res.json()
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, body
    assert body["status"] == status, body
    assert isinstance(body["description"], str) and body["description"], body
    assert isinstance(body["message"], str) and body["message"], body
    for needle in needles:
        assert needle.lower() in body["message"].lower(), f"{needle!r} not in {body}"
    return body


_emails = iter(range(1, 1_000_000))


def new_email() -> str:
    return f"person{next(_emails)}@example.com"


async def signup(
    server: ChatServer,
    *,
    user_name: str | None = None,
    email: str | None = None,
    password: str = PASSWORD,
) -> httpx.Response:
    # A name of its own by default: names that look alike are one name (409).
    return await server.http.post(
        SIGNUP,
        json={
            "user_name": f"person{next(_emails)}" if user_name is None else user_name,
            "email": new_email() if email is None else email,
            "password": password,
        },
    )


async def login(server: ChatServer, email: str, password: str) -> httpx.Response:
    return await server.http.post(LOGIN, json={"email": email, "password": password})


async def post_raw(
    server: ChatServer, path: str, content: bytes, token: str | None = None
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if token:
        headers.update(auth(token))
    return await server.http.post(path, content=content, headers=headers)


async def room_list(server: ChatServer, token: str) -> list[dict[str, Any]]:
    res = await server.http.get(ROOMS, headers=auth(token))
    assert res.status_code == 200, res.text
    return res.json()["chatRooms"]  # type: ignore[no-any-return]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def protected_calls(room_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every Bearer-protected REST call, with a body that would otherwise succeed."""
    return [
        ("GET", ROOMS, None),
        ("POST", ROOMS, {}),
        ("POST", CREATE, {"name": "created without a valid token"}),
        ("POST", ROOM_MESSAGES, {"roomId": room_id}),
        ("GET", f"{ROOMS}/{room_id}/messages", None),
    ]


def bad_auth_headers(user: dict[str, Any], good: str) -> dict[str, dict[str, str]]:
    """Authorization headers that must all be refused with 401, by what is wrong."""
    header, payload, signature = good.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged.update(UserName="mallory", UserID=forged["UserID"] + 1, sub=str(forged["UserID"] + 1))
    forged_payload = b64url(json.dumps(forged).encode())
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    none_payload = b64url(json.dumps(claims_for(user)).encode())
    now = int(time.time())
    expired = claims_for(user, iat=now - 7200, exp=now - 60)
    return {
        "no Authorization header": {},
        "empty Authorization header": {"Authorization": ""},
        "Bearer without a token": {"Authorization": "Bearer"},
        "valid token under the Basic scheme": {"Authorization": f"Basic {good}"},
        "valid token under the Token scheme": {"Authorization": f"Token {good}"},
        "valid token without any scheme": {"Authorization": good},
        "garbage": auth("not-a-jwt"),
        "tampered signature": auth(f"{header}.{payload}.{flipped}"),
        "tampered claims": auth(f"{header}.{forged_payload}.{signature}"),
        "signature stripped": auth(f"{header}.{payload}."),
        "alg none": auth(f"{none_header}.{none_payload}."),
        "alg none with a signature": auth(f"{none_header}.{none_payload}.{signature}"),
        "expired": auth(jwt.encode(expired, SECRET, algorithm="HS256")),
        "no exp claim": auth(jwt.encode(claims_for(user, exp=None), SECRET, algorithm="HS256")),
        "another secret": auth(jwt.encode(claims_for(user), OTHER_SECRET, algorithm="HS256")),
        "HS512 with the right secret": auth(
            jwt.encode(claims_for(user), SECRET, algorithm="HS512")
        ),
        "HS384 with the right secret": auth(
            jwt.encode(claims_for(user), SECRET, algorithm="HS384")
        ),
    }


async def seed_messages(
    server: ChatServer, room_id: int, user: dict[str, Any], count: int
) -> list[int]:
    """Store `count` messages directly through the server's store; return their IDs in order."""
    room = await room_service.get_room(room_id)
    author = Identity(user["ID"], user["UserName"], user["Email"], int(time.time()) + 3600)
    results = await server.app.ctx.store.store_batch(
        [Draft(room, author, f"message {i}") for i in range(count)]
    )
    ids = [result[0].id for result in results if isinstance(result, tuple)]
    assert len(ids) == count
    assert ids == sorted(ids)
    return ids
