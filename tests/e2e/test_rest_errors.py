"""Every REST error path of SPEC sections 4 and 7, against the real running server.

Each error answer must be JSON in Sanic's shape `{"description", "status", "message"}`,
never HTML and never a traceback; where it matters the message names the field or
parameter. Every test runs on SQLite and on PostgreSQL (see conftest.py).

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

from chatroom_server.domain import Identity
from chatroom_server.services import rooms as room_service
from chatroom_server.services.messages import store_message

from ..conftest import ChatServer, auth, claims_for

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
    user_name: str = "person",
    email: str | None = None,
    password: str = PASSWORD,
) -> httpx.Response:
    return await server.http.post(
        SIGNUP,
        json={
            "user_name": user_name,
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


async def seed_messages(room_id: int, user: dict[str, Any], count: int) -> list[int]:
    """Store `count` messages directly through the service; return their IDs in order."""
    room = await room_service.get_room(room_id)
    author = Identity(user["ID"], user["UserName"], user["Email"], int(time.time()) + 3600)
    ids = [(await store_message(room, author, f"message {i}"))[0].id for i in range(count)]
    assert ids == sorted(ids)
    return ids


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


# --------------------------------------------------------------------------- signup


async def test_signup_missing_fields_and_wrong_types_name_the_field(server: ChatServer) -> None:
    soft = Soft()
    for missing in ("user_name", "email", "password"):
        body: dict[str, Any] = {"user_name": "someone", "email": new_email(), "password": PASSWORD}
        del body[missing]
        with soft.case(f"missing {missing}"):
            assert_error(await server.http.post(SIGNUP, json=body), 400, missing)
    for field, value in [
        ("email", 12345),
        ("email", None),
        ("email", ["a@example.com"]),
        ("user_name", 42),
        ("user_name", None),
        ("user_name", {"first": "x"}),
        ("password", 12345678),
        ("password", None),
        ("password", True),
    ]:
        body = {"user_name": "someone", "email": new_email(), "password": PASSWORD}
        body[field] = value
        with soft.case(f"{field}={value!r}"):
            assert_error(await server.http.post(SIGNUP, json=body), 400, field)
    soft.done()


async def test_signup_invalid_email_is_400(server: ChatServer) -> None:
    soft = Soft()
    for email in [
        "not-an-email",
        "user@",
        "@example.com",
        "a b@example.com",
        "user@@example.com",
        "",
        "   ",
        "a" * 250 + "@example.com",
    ]:
        with soft.case(f"email={email[:40]!r}"):
            assert_error(await signup(server, email=email), 400, "email")
    soft.done()


async def test_signup_user_name_is_1_to_64_characters_after_trimming(server: ChatServer) -> None:
    soft = Soft()
    for user_name in ("", " ", "   \t  ", "a" * 65, "é" * 65, " " + "c" * 65 + " "):
        with soft.case(f"user_name={user_name[:10]!r}... ({len(user_name)} chars)"):
            assert_error(await signup(server, user_name=user_name), 400, "user_name")
    # 64 characters are fine, even with blanks around them and even when multi-byte.
    for user_name, stored in (("  " + "b" * 64 + "  ", "b" * 64), ("é" * 64, "é" * 64), ("x", "x")):
        with soft.case(f"accept {len(user_name)} chars"):
            res = await signup(server, user_name=user_name)
            assert res.status_code == 200, res.text
            assert res.json()["user"]["UserName"] == stored
    soft.done()


async def test_duplicate_email_in_other_case_is_409(server: ChatServer) -> None:
    res = await signup(server, email="Alice.Smith@Example.COM")
    assert res.status_code == 200, res.text
    assert res.json()["user"]["Email"] == "alice.smith@example.com"

    for email in ("alice.smith@example.com", "ALICE.SMITH@EXAMPLE.COM", "aLiCe.smith@example.com"):
        assert_error(await signup(server, email=email, password="another-password"), 409)

    # The first account is intact and reachable under any case of its address.
    res = await login(server, "ALICE.smith@example.com", PASSWORD)
    assert res.status_code == 200, res.text
    assert res.json()["user"]["Email"] == "alice.smith@example.com"
    assert_error(await login(server, "alice.smith@example.com", "another-password"), 401)


async def test_signup_password_outside_8_to_72_bytes_is_400(server: ChatServer) -> None:
    soft = Soft()
    for password, size in [
        ("a" * 7, 7),
        ("", 0),
        ("a" * 73, 73),
        ("é" * 37, 74),  # only 37 characters, but 74 bytes
        ("😀" * 19, 76),  # 19 characters, 76 bytes
        ("a" * 71 + "é", 73),
        ("x" * 1000, 1000),
    ]:
        assert len(password.encode("utf-8")) == size
        email = new_email()
        with soft.case(f"{len(password)} characters, {size} bytes"):
            body = assert_error(
                await signup(server, email=email, password=password), 400, "password"
            )
            if password:
                assert password not in body["message"], "the error echoes the password"
            # Nothing was created: the address can still sign up with a valid password.
            res = await signup(server, email=email, password=PASSWORD)
            assert res.status_code == 200, res.text
    soft.done()


async def test_signup_password_of_8_to_72_bytes_is_accepted(server: ChatServer) -> None:
    soft = Soft()
    for password in [
        "a" * 8,
        "é" * 4,  # 4 characters, 8 bytes
        "a" * 72,
        "é" * 36,  # 36 characters, 72 bytes
        "😀" * 18,  # 18 characters, 72 bytes
    ]:
        email = new_email()
        with soft.case(f"{len(password)} characters, {len(password.encode())} bytes"):
            res = await signup(server, email=email, password=password)
            assert res.status_code == 200, res.text
            res = await login(server, email, password)
            assert res.status_code == 200, res.text
    soft.done()


async def test_long_password_is_never_silently_truncated(server: ChatServer) -> None:
    """bcrypt only reads 72 bytes: a longer login password must not match the first 72."""
    email = new_email()
    password = "p" * 72
    assert (await signup(server, email=email, password=password)).status_code == 200
    for longer in (password + "x", password + "é", password + "p" * 100):
        body = assert_error(await login(server, email, longer), 400, "password")
        assert longer not in body["message"]
    assert (await login(server, email, password)).status_code == 200


# --------------------------------------------------------------------------- login


async def test_wrong_password_and_unknown_email_answer_the_same(server: ChatServer) -> None:
    email = new_email()
    assert (await signup(server, email=email)).status_code == 200

    wrong_password = await login(server, email, "wrong-password")
    unknown_email = await login(server, new_email(), "wrong-password")
    unknown_email_right_password = await login(server, new_email(), PASSWORD)
    other_case_wrong = await login(server, email.upper(), "Password1")

    assert assert_error(wrong_password, 401)["message"] == INVALID_LOGIN
    for res in (unknown_email, unknown_email_right_password, other_case_wrong):
        assert_error(res, 401)
        assert res.content == wrong_password.content


async def test_login_missing_fields_and_wrong_types_name_the_field(server: ChatServer) -> None:
    soft = Soft()
    for missing in ("email", "password"):
        body: dict[str, Any] = {"email": new_email(), "password": PASSWORD}
        del body[missing]
        with soft.case(f"missing {missing}"):
            assert_error(await server.http.post(LOGIN, json=body), 400, missing)
    for field, value in [
        ("email", 12345),
        ("email", None),
        ("email", ["x@example.com"]),
        ("password", 12345678),
        ("password", None),
        ("password", ["pw"]),
    ]:
        body = {"email": new_email(), "password": PASSWORD}
        body[field] = value
        with soft.case(f"{field}={value!r}"):
            assert_error(await server.http.post(LOGIN, json=body), 400, field)
    soft.done()


# --------------------------------------------------------------------------- rooms: create


async def test_create_room_bad_name_is_400(server: ChatServer) -> None:
    _, token = await server.signup()
    soft = Soft()
    bad: list[dict[str, Any]] = [
        {},
        {"title": "x"},
        {"name": None},
        {"name": 123},
        {"name": ["x"]},
        {"name": {"x": 1}},
        {"name": True},
        {"name": ""},
        {"name": " "},
        {"name": " \t  "},
        {"name": "a" * 101},
        {"name": "日" * 101},
        {"name": "  " + "a" * 101},
    ]
    for body in bad:
        with soft.case(f"body={json.dumps(body)[:40]}"):
            res = await server.http.post(CREATE, json=body, headers=auth(token))
            assert_error(res, 400, "name")
    soft.done()
    assert await room_list(server, token) == []


async def test_create_room_name_limit_counts_characters_after_trimming(
    server: ChatServer,
) -> None:
    _, token = await server.signup()
    for name, stored in (
        ("a" * 100, "a" * 100),
        ("日" * 100, "日" * 100),
        ("   " + "b" * 100 + "  ", "b" * 100),
        ("x", "x"),
    ):
        res = await server.http.post(CREATE, json={"name": name}, headers=auth(token))
        assert res.status_code == 200, res.text
        assert res.json()["chatRoom"]["name"] == stored


# --------------------------------------------------------------------------- room-messages body


async def test_room_messages_bad_room_id_is_400_naming_it(server: ChatServer) -> None:
    _, token = await server.signup()
    room = await server.create_room(token)
    soft = Soft()
    for body in [
        {},
        {"roomID": room["ID"]},
        {"roomId": None},
        {"roomId": "abc"},
        {"roomId": [room["ID"]]},
        {"roomId": {"id": 1}},
        {"roomId": True},
        {"roomId": 1.5},
        {"roomId": ""},
        {"roomId": "1abc"},
    ]:
        with soft.case(f"body={json.dumps(body)}"):
            res = await server.http.post(ROOM_MESSAGES, json=body, headers=auth(token))
            assert_error(res, 400, "roomId")
    # Seed clients send the ID as a number or as a string; both are fine.
    for value in (room["ID"], str(room["ID"])):
        with soft.case(f"roomId={value!r} accepted"):
            res = await server.http.post(ROOM_MESSAGES, json={"roomId": value}, headers=auth(token))
            assert res.status_code == 200, res.text
            assert res.json() == {"chats": []}
    soft.done()


# --------------------------------------------------------------------------- tokens


async def test_bad_tokens_are_401_on_every_protected_route(server: ChatServer) -> None:
    user, good = await server.signup()
    room = await server.create_room(good, "existing")
    soft = Soft()
    for kind, headers in bad_auth_headers(user, good).items():
        for method, path, body in protected_calls(room["ID"]):
            with soft.case(f"{kind}: {method} {path}"):
                res = await server.http.request(method, path, json=body, headers=headers)
                assert_error(res, 401)
    soft.done()
    # Nothing was created by any refused call.
    assert await room_list(server, good) == [room]


async def test_valid_tokens_are_accepted_everywhere(server: ChatServer) -> None:
    """The counterpart of the 401 test: the server's own token, and one built with its
    secret and HS256, work on every route (so each refusal above is about the one thing
    that bad token gets wrong, e.g. its expiry or its algorithm)."""
    user, issued = await server.signup()
    room = await server.create_room(issued, "existing")
    assert jwt.get_unverified_header(issued)["alg"] == "HS256"
    decoded = jwt.decode(issued, SECRET, algorithms=["HS256"])
    assert decoded["sub"] == str(user["ID"]) and decoded["UserID"] == user["ID"]
    assert decoded["exp"] > decoded["iat"]

    handmade = jwt.encode(claims_for(user), SECRET, algorithm="HS256")
    for token in (issued, handmade):
        for method, path, body in protected_calls(room["ID"]):
            res = await server.http.request(method, path, json=body, headers=auth(token))
            assert res.status_code == 200, f"{method} {path}: {res.text}"


async def test_protected_routes_check_the_token_before_the_body(server: ChatServer) -> None:
    """An anonymous caller learns nothing from validation: even bad bodies get 401."""
    for path in (CREATE, ROOM_MESSAGES):
        assert_error(await post_raw(server, path, b"{not json"), 401)
        assert_error(await server.http.post(path, json={"name": "", "roomId": "abc"}), 401)


# ----------------------------------------------------------------- unknown / deleted rooms


async def test_unknown_room_is_404(server: ChatServer) -> None:
    _, token = await server.signup()
    room = await server.create_room(token)
    for room_id in (room["ID"] + 1000, 999_999_999):
        res = await server.http.post(ROOM_MESSAGES, json={"roomId": room_id}, headers=auth(token))
        assert_error(res, 404)
        assert_error(await server.http.get(f"{ROOMS}/{room_id}/messages", headers=auth(token)), 404)


async def test_out_of_range_room_id_is_404_not_a_server_error(server: ChatServer) -> None:
    """IDs beyond a 64-bit integer name no room; they must not reach the database."""
    _, token = await server.signup()
    soft = Soft()
    for room_id in (2**63, 2**70):
        with soft.case(f"room-messages roomId={room_id}"):
            res = await server.http.post(
                ROOM_MESSAGES, json={"roomId": room_id}, headers=auth(token)
            )
            assert res.status_code in (400, 404), res.text
            assert_error(res, res.status_code)
        with soft.case(f"GET rooms/{room_id}/messages"):
            res = await server.http.get(f"{ROOMS}/{room_id}/messages", headers=auth(token))
            assert_error(res, 404)
    soft.done()


async def test_deleted_room_is_404_and_leaves_the_list(server: ChatServer) -> None:
    user, token = await server.signup()
    keep = await server.create_room(token, "keep")
    gone = await server.create_room(token, "gone")
    await seed_messages(gone["ID"], user, 3)
    res = await server.http.get(f"{ROOMS}/{gone['ID']}/messages", headers=auth(token))
    assert res.status_code == 200 and len(res.json()["messages"]) == 3

    await room_service.delete_room(gone["ID"])

    res = await server.http.post(ROOM_MESSAGES, json={"roomId": gone["ID"]}, headers=auth(token))
    assert_error(res, 404)
    res = await server.http.get(f"{ROOMS}/{gone['ID']}/messages", headers=auth(token))
    assert_error(res, 404)
    for method in ("GET", "POST"):
        res = await server.http.request(method, ROOMS, json={}, headers=auth(token))
        assert res.status_code == 200
        assert res.json() == {"chatRooms": [keep]}
    # The room that stays is unaffected.
    res = await server.http.post(ROOM_MESSAGES, json={"roomId": keep["ID"]}, headers=auth(token))
    assert res.status_code == 200 and res.json() == {"chats": []}


async def test_presence_errors(server: ChatServer) -> None:
    """GET /v1/api/chat/rooms/<id>/presence: Bearer, 404 for unknown or deleted rooms."""
    user, token = await server.signup()
    room = await server.create_room(token)
    path = f"{ROOMS}/{room['ID']}/presence"

    res = await server.http.get(path, headers=auth(token))
    assert res.status_code == 200, res.text
    assert res.json() == {"users": [], "connections": 0}

    soft = Soft()
    for kind, headers in bad_auth_headers(user, token).items():
        with soft.case(kind):
            assert_error(await server.http.get(path, headers=headers), 401)
    soft.done()

    res = await server.http.get(f"{ROOMS}/{room['ID'] + 1000}/presence", headers=auth(token))
    assert_error(res, 404)
    await room_service.delete_room(room["ID"])
    assert_error(await server.http.get(path, headers=auth(token)), 404)


# --------------------------------------------------------------------------- history


async def test_legacy_room_messages_returns_last_50_oldest_first(server: ChatServer) -> None:
    user, token = await server.signup()
    room = await server.create_room(token, "busy")
    other = await server.create_room(token, "other")
    ids = await seed_messages(room["ID"], user, 55)
    await seed_messages(other["ID"], user, 2)

    res = await server.http.post(ROOM_MESSAGES, json={"roomId": room["ID"]}, headers=auth(token))
    assert res.status_code == 200, res.text
    chats = res.json()["chats"]
    assert [c["ID"] for c in chats] == ids[5:]
    assert [c["chatMessage"] for c in chats] == [f"message {i}" for i in range(5, 55)]
    assert {c["chatRoomId"] for c in chats} == {room["ID"]}
    assert {c["chatRoomName"] for c in chats} == {"busy"}
    assert {c["chatUserId"] for c in chats} == {user["ID"]}
    assert {c["chatUser"] for c in chats} == {user["UserName"]}


async def test_history_before_after_limit(server: ChatServer) -> None:
    user, token = await server.signup()
    room = await server.create_room(token)
    other = await server.create_room(token, "other")
    ids = await seed_messages(room["ID"], user, 55)
    await seed_messages(other["ID"], user, 3)
    path = f"{ROOMS}/{room['ID']}/messages"

    async def page(**params: Any) -> tuple[list[int], bool]:
        res = await server.http.get(path, params=params, headers=auth(token))
        assert res.status_code == 200, f"{params}: {res.text}"
        body = res.json()
        assert set(body) == {"messages", "hasMore"}
        return [m["ID"] for m in body["messages"]], body["hasMore"]

    # Default: the newest 50, oldest first; hasMore says older ones exist.
    assert await page() == (ids[5:], True)
    assert await page(limit="", before="") == (ids[5:], True)
    assert await page(limit=10) == (ids[45:], True)
    assert await page(limit=55) == (ids, False)
    assert await page(limit=200) == (ids, False)
    assert await page(limit=1) == (ids[54:], True)
    # before: the newest `limit` strictly older than that ID.
    assert await page(before=ids[10], limit=5) == (ids[5:10], True)
    assert await page(before=ids[5], limit=5) == (ids[0:5], False)
    assert await page(before=ids[3], limit=5) == (ids[0:3], False)
    assert await page(before=ids[0]) == ([], False)
    assert await page(before=ids[54]) == (ids[4:54], True)
    # after: the oldest `limit` strictly newer than that ID; hasMore says newer ones exist.
    assert await page(after=ids[0], limit=10) == (ids[1:11], True)
    assert await page(after=ids[44], limit=10) == (ids[45:55], False)
    assert await page(after=ids[49], limit=10) == (ids[50:55], False)
    assert await page(after=ids[54]) == ([], False)
    assert await page(after=0, limit=3) == (ids[0:3], True)
    # Paging backwards with `before` visits every message exactly once.
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 20}
    while True:
        got, more = await page(**params)
        seen = got + seen
        if not more:
            break
        params["before"] = got[0]
    assert seen == ids


async def test_history_bad_query_parameter_is_400_naming_it(server: ChatServer) -> None:
    _, token = await server.signup()
    room = await server.create_room(token)
    path = f"{ROOMS}/{room['ID']}/messages"
    res = await server.http.get(path, headers=auth(token))
    assert res.json() == {"messages": [], "hasMore": False}
    soft = Soft()
    for param, value in [
        ("limit", "0"),
        ("limit", "201"),
        ("limit", "abc"),
        ("limit", "-1"),
        ("limit", "1.5"),
        ("limit", "10abc"),
        ("limit", "99999999999999999999999"),
        ("limit", "²"),
        ("before", "abc"),
        ("before", "-5"),
        ("before", "1e3"),
        ("before", "²"),
        ("after", "abc"),
        ("after", "-1"),
        ("after", "0x10"),
        ("after", "³"),
    ]:
        with soft.case(f"{param}={value!r}"):
            res = await server.http.get(path, params={param: value}, headers=auth(token))
            assert_error(res, 400, param)
    soft.done()


# --------------------------------------------------------------------------- login throttling


class TestLoginThrottle:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"jwt_secret": SECRET, "login_failures": 3}

    async def test_locked_out_after_failures_even_with_right_password(
        self, server: ChatServer
    ) -> None:
        victim, bystander = new_email(), new_email()
        for email in (victim, bystander):
            assert (await signup(server, email=email)).status_code == 200

        for _ in range(3):
            assert_error(await login(server, victim, "wrong-password"), 401)

        for password in ("wrong-password", PASSWORD):
            res = await login(server, victim, password)
            assert_error(res, 429)
            retry_after = res.headers.get("Retry-After")
            assert retry_after is not None and retry_after.isdigit(), res.headers
            assert 0 < int(retry_after) <= 900

        # The same address in another case is the same account: still locked.
        assert_error(await login(server, victim.upper(), PASSWORD), 429)

        # Another email is unaffected, for the right and for a wrong password.
        res = await login(server, bystander, PASSWORD)
        assert res.status_code == 200, res.text
        assert_error(await login(server, bystander, "wrong-password"), 401)

        # An unknown address is throttled like a known one (else a 429 would tell an
        # attacker which addresses have an account).
        ghost = new_email()
        for _ in range(3):
            assert_error(await login(server, ghost, "wrong-password"), 401)
        res = await login(server, ghost, "wrong-password")
        assert_error(res, 429)
        assert int(res.headers["Retry-After"]) > 0

    async def test_failures_below_the_limit_do_not_lock(self, server: ChatServer) -> None:
        email = new_email()
        assert (await signup(server, email=email)).status_code == 200
        for _ in range(2):
            assert_error(await login(server, email, "wrong-password"), 401)
        res = await login(server, email, PASSWORD)
        assert res.status_code == 200, res.text


async def test_default_throttle_locks_on_the_eleventh_attempt(server: ChatServer) -> None:
    email = new_email()
    assert (await signup(server, email=email)).status_code == 200
    for attempt in range(10):
        assert_error(await login(server, email, f"wrong-password-{attempt}"), 401)
    res = await login(server, email, PASSWORD)
    assert_error(res, 429)
    assert int(res.headers["Retry-After"]) > 0


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
        fields = {"user_name": "padded", "email": new_email(), "password": PASSWORD, "pad": ""}
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


# --------------------------------------------------------------------------- secrets


async def test_no_response_carries_a_password_or_its_hash(server: ChatServer) -> None:
    password = "Sup3r-secret-pw!"
    email = new_email()
    responses = [await signup(server, email=email, password=password)]
    assert responses[0].status_code == 200
    token = responses[0].json()["token"]
    responses += [
        await signup(server, email=email, password=password),  # 409
        await login(server, email, password),
        await login(server, email, password + "x"),  # 401
        await server.http.post(
            SIGNUP, json={"user_name": "", "email": new_email(), "password": password}
        ),
        await server.http.get(ROOMS, headers=auth(token)),
    ]
    assert [r.status_code for r in responses] == [200, 409, 200, 401, 400, 200]
    for res in responses:
        assert "password_hash" not in res.text
        assert "$2b$" not in res.text
        assert password not in res.text
    for res in (responses[0], responses[2]):
        user = res.json()["user"]
        assert set(user) == {"ID", "CreatedAt", "UpdatedAt", "DeletedAt", "UserName", "Email"}
        claims = jwt.decode(res.json()["token"], SECRET, algorithms=["HS256"])
        assert not any("pass" in key.lower() for key in claims)
