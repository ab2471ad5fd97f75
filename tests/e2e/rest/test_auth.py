"""Accounts and tokens over REST: signup, login and its throttle, Bearer tokens, and no
password or hash in any answer (SPEC sections 4 and 7).
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from ...conftest import ChatServer, auth, claims_for
from .conftest import (
    CREATE,
    INVALID_LOGIN,
    LOGIN,
    PASSWORD,
    ROOM_MESSAGES,
    ROOMS,
    SECRET,
    SIGNUP,
    Soft,
    assert_error,
    bad_auth_headers,
    login,
    new_email,
    post_raw,
    protected_calls,
    room_list,
    signup,
)

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
