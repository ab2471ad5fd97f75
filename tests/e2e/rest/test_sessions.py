"""Sessions (SPEC section 11): every token names a session that can be ended.

An ended session's token, an unknown user's and a deactivated user's get 401 on
REST and before the websocket upgrade, and the open sockets of an ended session
close with 1008. Run with the in-process broker and with real Redis.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import jwt
import pytest
from tortoise import timezone
from websockets.exceptions import InvalidStatus

from chatroom_server.db.models import SessionRow, UserRow

from ...conftest import ChatServer, auth, claims_for, close_code, recv_event
from .conftest import PASSWORD, ROOMS, SECRET, assert_error, login

pytestmark = pytest.mark.every_broker

SESSIONS = "/v1/api/auth/sessions"
LOGOUT = "/v1/api/auth/logout"
LOGOUT_ALL = "/v1/api/auth/logout-all"
REFRESH = "/v1/api/auth/refresh"
PASSWORD_PATH = "/v1/api/auth/password"
_accounts = itertools.count(1)


async def account(server: ChatServer, agent: str = "first-agent") -> tuple[dict[str, Any], str]:
    n = next(_accounts)
    res = await server.http.post(
        "/v1/api/auth/signup",
        json={
            "user_name": f"sam{n}",
            "email": f"sam{n}@example.com",
            "password": PASSWORD,
        },
        headers={"user-agent": agent},
    )
    assert res.status_code == 200, res.text
    return res.json()["user"], res.json()["token"]


async def second_login(server: ChatServer, user: dict[str, Any], agent: str) -> str:
    res = await server.http.post(
        "/v1/api/auth/login",
        json={"email": user["Email"], "password": PASSWORD},
        headers={"user-agent": agent},
    )
    assert res.status_code == 200, res.text
    return str(res.json()["token"])


def sid_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sid"])


async def assert_refused(server: ChatServer, token: str, room_id: int) -> None:
    """401 on REST and before the websocket upgrade."""
    assert_error(await server.http.get(ROOMS, headers=auth(token)), 401)
    with pytest.raises(InvalidStatus) as refused:
        async with server.connect(room_id, token):
            pass
    assert refused.value.response.status_code == 401


async def assert_works(server: ChatServer, token: str) -> None:
    res = await server.http.get(ROOMS, headers=auth(token))
    assert res.status_code == 200, res.text


async def test_login_starts_a_session_and_sessions_lists_them(server: ChatServer) -> None:
    user, first = await account(server, "first-agent")
    second = await second_login(server, user, "second-agent/1.0")
    assert sid_of(first) != sid_of(second)
    res = await server.http.get(SESSIONS, headers=auth(second))
    assert res.status_code == 200, res.text
    listed = res.json()["sessions"]
    assert {s["id"] for s in listed} == {sid_of(first), sid_of(second)}
    by_id = {s["id"]: s for s in listed}
    assert by_id[sid_of(second)]["current"] is True
    assert by_id[sid_of(first)]["current"] is False
    assert by_id[sid_of(first)]["userAgent"] == "first-agent"
    assert by_id[sid_of(second)]["userAgent"] == "second-agent/1.0"
    assert all(s["createdAt"].endswith("Z") and s["lastSeenAt"].endswith("Z") for s in listed)
    # Another user sees only their own.
    _, other = await account(server, "other")
    mine = (await server.http.get(SESSIONS, headers=auth(other))).json()["sessions"]
    assert [s["id"] for s in mine] == [sid_of(other)]


async def test_logout_ends_only_that_session_and_closes_its_sockets(server: ChatServer) -> None:
    user, first = await account(server)
    second = await second_login(server, user, "b")
    room = await server.create_room(first)
    async with (
        server.connect(room["ID"], first) as ended_ws,
        server.connect(room["ID"], second) as kept_ws,
    ):
        res = await server.http.post(LOGOUT, headers=auth(first))
        assert res.status_code == 204, res.text
        assert await close_code(ended_ws) == 1008
        assert ended_ws.close_reason == "session ended"
        await assert_refused(server, first, room["ID"])
        # The other session goes on: its socket still gets messages.
        await assert_works(server, second)
        await kept_ws.send('{"chatMessage": "still here"}')
        frame = await recv_event(kept_ws, "message")
        assert frame["Body"]["chatMessage"] == "still here"
    assert_error(await server.http.post(LOGOUT, headers=auth(first)), 401)


async def test_logout_all_ends_every_session(server: ChatServer) -> None:
    user, first = await account(server)
    second = await second_login(server, user, "b")
    legacy = jwt.encode(claims_for(user), SECRET, algorithm="HS256")  # issued this second
    await assert_works(server, legacy)
    room = await server.create_room(first)
    async with server.connect(room["ID"], first) as a, server.connect(room["ID"], legacy) as b:
        res = await server.http.post(LOGOUT_ALL, headers=auth(second))
        assert res.status_code == 204, res.text
        assert await close_code(a) == 1008
        assert await close_code(b) == 1008
    for token in (first, second, legacy):
        await assert_refused(server, token, room["ID"])
    # Logging in again starts a fresh session that works.
    fresh = (await login(server, user["Email"], PASSWORD)).json()["token"]
    await assert_works(server, fresh)


async def test_refresh_keeps_the_session_with_a_later_expiry(server: ChatServer) -> None:
    user, token = await account(server)
    old_exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    # A token issued a while ago, of the same session: refresh gives a fresh expiry.
    claims = jwt.decode(token, options={"verify_signature": False})
    older = jwt.encode({**claims, "iat": claims["iat"] - 100, "exp": old_exp - 100}, SECRET)
    res = await server.http.post(REFRESH, headers=auth(older))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["user"]["ID"] == user["ID"]
    assert "password" not in res.text.lower()
    fresh = body["token"]
    assert sid_of(fresh) == sid_of(token)
    assert jwt.decode(fresh, options={"verify_signature": False})["exp"] > old_exp - 100
    await assert_works(server, fresh)
    # Ending the session ends every token of it, refreshed or not.
    assert (await server.http.post(LOGOUT, headers=auth(fresh))).status_code == 204
    assert_error(await server.http.post(REFRESH, headers=auth(token)), 401)
    assert_error(await server.http.get(ROOMS, headers=auth(older)), 401)


async def test_refresh_of_a_token_without_session_starts_one(server: ChatServer) -> None:
    user, _ = await account(server)
    legacy = jwt.encode(claims_for(user), SECRET, algorithm="HS256")
    res = await server.http.post(REFRESH, headers=auth(legacy))
    assert res.status_code == 200, res.text
    fresh = res.json()["token"]
    listed = (await server.http.get(SESSIONS, headers=auth(fresh))).json()["sessions"]
    assert sid_of(fresh) in {s["id"] for s in listed}


async def test_end_one_session_by_id(server: ChatServer) -> None:
    user, first = await account(server)
    second = await second_login(server, user, "b")
    _, stranger = await account(server, "stranger")
    room = await server.create_room(first)
    # Not yours, or never existed: 404 alike.
    assert_error(
        await server.http.delete(f"{SESSIONS}/{sid_of(first)}", headers=auth(stranger)), 404
    )
    assert_error(await server.http.delete(f"{SESSIONS}/{'0' * 32}", headers=auth(second)), 404)
    await assert_works(server, first)
    async with server.connect(room["ID"], first) as ws:
        res = await server.http.delete(f"{SESSIONS}/{sid_of(first)}", headers=auth(second))
        assert res.status_code == 204, res.text
        assert await close_code(ws) == 1008
    await assert_refused(server, first, room["ID"])
    await assert_works(server, second)
    listed = (await server.http.get(SESSIONS, headers=auth(second))).json()["sessions"]
    assert [s["id"] for s in listed] == [sid_of(second)]
    # Ended already: 404.
    assert_error(await server.http.delete(f"{SESSIONS}/{sid_of(first)}", headers=auth(second)), 404)


async def test_password_change_ends_the_other_sessions(server: ChatServer) -> None:
    user, first = await account(server)
    second = await second_login(server, user, "b")
    room = await server.create_room(first)
    new = "a new password 2"
    assert_error(
        await server.http.post(
            PASSWORD_PATH,
            json={"oldPassword": "wrong-password", "newPassword": new},
            headers=auth(first),
        ),
        403,
        "oldPassword",
    )
    assert_error(
        await server.http.post(
            PASSWORD_PATH,
            json={"oldPassword": PASSWORD, "newPassword": "short"},
            headers=auth(first),
        ),
        400,
        "newPassword",
    )
    assert_error(
        await server.http.post(PASSWORD_PATH, json={"oldPassword": PASSWORD}, headers=auth(first)),
        400,
        "newPassword",
    )
    assert_error(
        await server.http.post(PASSWORD_PATH, json={"oldPassword": PASSWORD, "newPassword": new}),
        401,
    )
    await assert_works(server, second)  # nothing changed so far
    async with (
        server.connect(room["ID"], second) as other_ws,
        server.connect(room["ID"], first) as own_ws,
    ):
        res = await server.http.post(
            PASSWORD_PATH, json={"oldPassword": PASSWORD, "newPassword": new}, headers=auth(first)
        )
        assert res.status_code == 204, res.text
        assert await close_code(other_ws) == 1008
        await own_ws.send('{"chatMessage": "mine stays"}')
        assert (await recv_event(own_ws, "message"))["Body"]["chatMessage"] == "mine stays"
    await assert_refused(server, second, room["ID"])
    await assert_works(server, first)
    assert_error(await login(server, user["Email"], PASSWORD), 401)
    assert (await login(server, user["Email"], new)).status_code == 200


async def test_unknown_user_and_token_without_session(server: ChatServer) -> None:
    user, token = await account(server)
    room = await server.create_room(token)
    ghost = {**user, "ID": user["ID"] + 1000}
    forged = jwt.encode(claims_for(ghost), SECRET, algorithm="HS256")
    await assert_refused(server, forged, room["ID"])
    ghost_session = jwt.encode(claims_for(ghost, sid="f" * 32), SECRET, algorithm="HS256")
    await assert_refused(server, ghost_session, room["ID"])
    # A real user's token with a session ID that was never issued.
    made_up = jwt.encode(claims_for(user, sid="e" * 32), SECRET, algorithm="HS256")
    await assert_refused(server, made_up, room["ID"])
    # Tokens of earlier versions (no sid) keep working until they expire.
    legacy = jwt.encode(claims_for(user), SECRET, algorithm="HS256")
    await assert_works(server, legacy)
    async with server.connect(room["ID"], legacy) as ws:
        await ws.send('{"chatMessage": "old token"}')
        assert (await recv_event(ws, "message"))["Body"]["chatMessage"] == "old token"


class TestDeactivated:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        # No announcement reaches this server when the row changes underneath it:
        # the cache must not outlive the check for this test.
        return {"jwt_secret": SECRET, "session_cache_seconds": 0.001}

    async def test_a_deactivated_users_tokens_are_refused(self, server: ChatServer) -> None:
        user, token = await account(server)
        room = await server.create_room(token)
        legacy = jwt.encode(claims_for(user), SECRET, algorithm="HS256")
        await assert_works(server, token)
        await UserRow.filter(id=user["ID"]).update(deactivated_at=timezone.now())
        await assert_refused(server, token, room["ID"])
        await assert_refused(server, legacy, room["ID"])
        assert_error(await login(server, user["Email"], PASSWORD), 401)


async def test_sessions_endpoints_need_a_token(server: ChatServer) -> None:
    for method, path in [
        ("GET", SESSIONS),
        ("POST", LOGOUT),
        ("POST", LOGOUT_ALL),
        ("POST", REFRESH),
        ("DELETE", f"{SESSIONS}/{'a' * 32}"),
    ]:
        res = await server.http.request(method, path)
        assert_error(res, 401)
        res = await server.http.request(method, path, headers=auth("not-a-token"))
        assert_error(res, 401)


async def test_long_expired_sessions_are_pruned_at_login(server: ChatServer) -> None:
    user, _ = await account(server)
    old = timezone.now() - timedelta(days=40)
    await SessionRow.create(
        id="c" * 32, user_id=user["ID"], last_seen_at=old, expires_at=old, user_agent=None
    )
    recent = timezone.now() - timedelta(days=1)  # expired, but kept a while for the record
    await SessionRow.create(
        id="d" * 32, user_id=user["ID"], last_seen_at=recent, expires_at=recent, user_agent=None
    )
    token = await second_login(server, user, "pruner")
    assert not await SessionRow.exists(id="c" * 32)
    assert await SessionRow.exists(id="d" * 32)
    # Expired sessions are not listed.
    listed = (await server.http.get(SESSIONS, headers=auth(token))).json()["sessions"]
    assert "d" * 32 not in {s["id"] for s in listed}


async def test_logout_with_a_token_without_session_leaves_the_sessions(server: ChatServer) -> None:
    user, token = await account(server)
    legacy = jwt.encode(claims_for(user), SECRET, algorithm="HS256")
    room = await server.create_room(token)
    async with server.connect(room["ID"], token) as kept, server.connect(room["ID"], legacy) as old:
        assert (await server.http.post(LOGOUT, headers=auth(legacy))).status_code == 204
        assert await close_code(old) == 1008
        await assert_refused(server, legacy, room["ID"])
        await assert_works(server, token)
        await kept.send('{"chatMessage": "session token still fine"}')
        got = await recv_event(kept, "message")
        assert got["Body"]["chatMessage"] == "session token still fine"


async def test_a_user_agent_that_is_not_text_is_cleaned(server: ChatServer) -> None:
    res = await server.http.post(
        "/v1/api/auth/signup",
        json={"user_name": "ua", "email": "ua@example.com", "password": PASSWORD},
        headers={"user-agent": b"agent\xff\x01/1"},
    )
    assert res.status_code == 200, res.text
    listed = (await server.http.get(SESSIONS, headers=auth(res.json()["token"]))).json()
    agent = listed["sessions"][0]["userAgent"]
    assert agent.startswith("agent") and "\x01" not in agent
