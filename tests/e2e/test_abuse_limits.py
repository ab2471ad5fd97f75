"""The abuse limits of SPEC section 11, one test per row, against a real server.

Each limit is set small, bites at N+1, and the next user or address is not
affected. Per-address rules bind the client to another loopback address
(127.0.0.2, 127.0.0.3, ...), which the server on 127.0.0.1 sees as the peer.
Run with the in-process counters and with the shared ones in real Redis.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ..conftest import TIMEOUT, ChatServer, auth, eventually, recv_event

pytestmark = pytest.mark.every_broker

SIGNUP = "/v1/api/auth/signup"
LOGIN = "/v1/api/auth/login"
_n = itertools.count(1)


def from_address(server: ChatServer, address: str, **headers: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(
        base_url=server.base, transport=transport, timeout=TIMEOUT, headers=headers
    )


@pytest.fixture
async def clients(server: ChatServer) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    made = {a: from_address(server, a) for a in ("127.0.0.2", "127.0.0.3")}
    yield made
    for client in made.values():
        await client.aclose()


def assert_limited(res: httpx.Response, *needles: str) -> None:
    assert res.status_code == 429, res.text
    body = res.json()
    assert body["status"] == 429 and set(body) == {"description", "status", "message"}
    for needle in needles:
        assert needle in body["message"], body
    assert int(res.headers["Retry-After"]) >= 1


async def signup(http: httpx.AsyncClient) -> httpx.Response:
    n = next(_n)
    return await http.post(
        SIGNUP,
        json={"user_name": f"l{n}", "email": f"limit{n}@example.com", "password": "password1"},
    )


def ws(server: ChatServer, room_id: int, token: str, address: str = "127.0.0.1") -> Any:
    return connect(
        server.ws_url(f"room_id={room_id}&jwt={token}"),
        local_addr=(address, 0),
        max_queue=None,
    )


async def upgrade_status(server: ChatServer, room_id: int, token: str, address: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with ws(server, room_id, token, address):
            pass
    response = refused.value.response
    assert b"limit" in response.body, response.body
    return response.status_code


LIMITS = {
    "user_connections": 3,
    "ip_connections": 4,
    "user_rate": 0.01,
    "user_burst": 3,
    "login_ip_rate": 5,
    "login_failures": 2,
    "signup_ip_rate": 6,
    "room_create_rate": 2,
}


@pytest.fixture
def server_settings() -> dict[str, Any]:
    return dict(LIMITS)


async def test_connections_per_user_and_per_address(server: ChatServer) -> None:
    async with from_address(server, "127.0.0.1") as http:
        (alice, a_token), (bob, b_token) = [
            (r.json()["user"], r.json()["token"]) for r in [await signup(http), await signup(http)]
        ]
    room = await server.create_room(a_token)
    rid = room["ID"]
    # Per user: three sockets (from two addresses), the fourth is refused on any address.
    async with (
        ws(server, rid, a_token, "127.0.0.2") as first,
        ws(server, rid, a_token, "127.0.0.2"),
        ws(server, rid, a_token, "127.0.0.3"),
    ):
        assert await upgrade_status(server, rid, a_token, "127.0.0.4") == 429
        # Bob on the same address is not affected; he fills 127.0.0.2 to its limit of 4.
        async with ws(server, rid, b_token, "127.0.0.2"), ws(server, rid, b_token, "127.0.0.2"):
            assert await upgrade_status(server, rid, b_token, "127.0.0.2") == 429
            async with ws(server, rid, b_token, "127.0.0.5") as elsewhere:
                assert elsewhere.response.status_code == 101  # another address: admitted
        await first.close()

        # The closed socket's slot comes back (released when its handler ends).
        async def admitted() -> bool:
            try:
                async with ws(server, rid, a_token, "127.0.0.6"):
                    return True
            except InvalidStatus:
                return False

        await eventually(admitted, "a freed connection slot", interval=0.05)


async def raw_upgrade_without_key(server: ChatServer, room_id: int, token: str) -> bytes:
    """An upgrade request that passes every check but whose handshake websockets
    refuses (no Sec-WebSocket-Key): the handler never runs."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            f"GET /v1/ws?room_id={room_id}&jwt={token} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        return await asyncio.wait_for(reader.readline(), TIMEOUT)
    finally:
        writer.close()


async def test_a_failed_upgrade_gives_its_slot_back(server: ChatServer) -> None:
    _, token = await server.signup()
    rid = (await server.create_room(token))["ID"]
    # Three failed handshakes in a row, under a limit of 3 connections: had any
    # of them kept its slot, the real socket after them would be refused.
    for _ in range(3):
        status_line = await raw_upgrade_without_key(server, rid, token)
        assert status_line.split()[1] not in (b"101", b"429"), status_line
    async with ws(server, rid, token) as sock:
        assert sock.response.status_code == 101


async def test_message_rate_across_a_users_sockets(server: ChatServer) -> None:
    async with from_address(server, "127.0.0.1") as http:
        (_, a_token), (_, b_token) = [
            (r.json()["user"], r.json()["token"]) for r in [await signup(http), await signup(http)]
        ]
    room = await server.create_room(a_token)
    rid = room["ID"]
    async with ws(server, rid, a_token) as one, ws(server, rid, a_token) as two:
        # Burst of 3 for the user, spread over two sockets: the fourth is refused.
        for i, sock in enumerate((one, two, one)):
            await sock.send(f'{{"chatMessage": "m{i}"}}')
            while (await recv_event(sock, "message"))["Body"]["chatMessage"] != f"m{i}":
                pass
        await two.send('{"chatMessage": "m3"}')
        refused = await recv_event(two, "error")
        assert refused["Body"]["code"] == "rate_limited"
        assert "across all connections" in refused["Body"]["chatMessage"]
        # The connection stays; another user is not limited by this one.
        async with ws(server, rid, b_token) as other:
            await other.send('{"chatMessage": "bob speaks"}')
            got = await recv_event(other, "message")
            while got["Body"]["chatMessage"] != "bob speaks":
                got = await recv_event(other, "message")
        stored = await server.http.get(f"/v1/api/chat/rooms/{rid}/messages", headers=auth(a_token))
        texts = [m["chatMessage"] for m in stored.json()["messages"]]
        assert texts == ["m0", "m1", "m2", "bob speaks"]


async def test_login_attempts_per_address(
    server: ChatServer, clients: dict[str, httpx.AsyncClient]
) -> None:
    here, there = clients["127.0.0.2"], clients["127.0.0.3"]
    for attempt in range(5):  # any emails: the address is what is counted
        res = await here.post(LOGIN, json={"email": f"x{attempt}@example.com", "password": "p"})
        assert res.status_code == 401, res.text
    assert_limited(
        await here.post(LOGIN, json={"email": "y@example.com", "password": "p"}),
        "login attempts from this address",
        "5 a minute",
    )
    res = await there.post(LOGIN, json={"email": "y@example.com", "password": "p"})
    assert res.status_code == 401, res.text


async def test_failed_logins_lock_the_address_not_the_owner(
    server: ChatServer, clients: dict[str, httpx.AsyncClient]
) -> None:
    attacker, owner = clients["127.0.0.2"], clients["127.0.0.3"]
    user = (await signup(owner)).json()["user"]
    for _ in range(2):
        res = await attacker.post(LOGIN, json={"email": user["Email"], "password": "guess1234"})
        assert res.status_code == 401
    # Locked at the attacker's address, right password included...
    assert_limited(
        await attacker.post(LOGIN, json={"email": user["Email"], "password": "password1"}),
        "failed logins",
    )
    # ...while the owner logs in from theirs.
    res = await owner.post(LOGIN, json={"email": user["Email"], "password": "password1"})
    assert res.status_code == 200, res.text


async def test_signups_per_address(
    server: ChatServer, clients: dict[str, httpx.AsyncClient]
) -> None:
    for _ in range(6):
        assert (await signup(clients["127.0.0.2"])).status_code == 200
    assert_limited(await signup(clients["127.0.0.2"]), "signups from this address", "6 an hour")
    assert (await signup(clients["127.0.0.3"])).status_code == 200


async def test_rooms_created_per_user(server: ChatServer) -> None:
    _, token = await server.signup()
    _, other = await server.signup()
    for i in range(2):
        await server.create_room(token, f"room {i}")
    res = await server.http.post(
        "/v1/api/chat/create", json={"name": "one more"}, headers=auth(token)
    )
    assert_limited(res, "rooms created by this user", "2 an hour")
    await server.create_room(other, "someone else's")
    names = [
        r["name"]
        for r in (await server.http.get("/v1/api/chat/rooms", headers=auth(token))).json()[
            "chatRooms"
        ]
    ]
    assert "one more" not in names


class TestBehindAProxy:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {**LIMITS, "proxies_count": 1}

    async def test_the_forwarded_address_is_the_client(self, server: ChatServer) -> None:
        first = from_address(server, "127.0.0.2", **{"X-Forwarded-For": "203.0.113.7"})
        second = from_address(server, "127.0.0.2", **{"X-Forwarded-For": "203.0.113.8"})
        async with first, second:
            for i in range(5):  # other emails each time: the address is what counts
                res = await first.post(LOGIN, json={"email": f"a{i}@example.com", "password": "p"})
                assert res.status_code == 401
            assert_limited(
                await first.post(LOGIN, json={"email": "b@example.com", "password": "p"}),
                "login attempts from this address",
            )
            # Same proxy (same TCP peer), another client behind it: not limited.
            res = await second.post(LOGIN, json={"email": "a@example.com", "password": "p"})
            assert res.status_code == 401, res.text

    async def test_the_forwarded_address_counts_for_websockets(self, server: ChatServer) -> None:
        _, token = await server.signup()
        _, other = await server.signup()
        rid = (await server.create_room(token))["ID"]

        def via_proxy(user_token: str, client: str) -> Any:
            return connect(
                server.ws_url(f"room_id={rid}&jwt={user_token}"),
                additional_headers={"X-Forwarded-For": client},
                max_queue=None,
            )

        # Two users, four sockets, one forwarded address: its limit of 4 is reached.
        async with (
            via_proxy(token, "203.0.113.9"),
            via_proxy(token, "203.0.113.9"),
            via_proxy(other, "203.0.113.9"),
            via_proxy(other, "203.0.113.9"),
        ):
            with pytest.raises(InvalidStatus) as refused:
                async with via_proxy(other, "203.0.113.9"):
                    pass
            assert refused.value.response.status_code == 429
            assert b"from this address (limit 4)" in refused.value.response.body
            async with via_proxy(other, "203.0.113.10") as elsewhere:  # same proxy peer
                assert elsewhere.response.status_code == 101


async def test_without_proxies_the_forwarded_header_is_ignored(server: ChatServer) -> None:
    # CHATROOM_PROXIES_COUNT unset: a client cannot pick its address with the header.
    for i in range(6):
        spoofed = from_address(server, "127.0.0.7", **{"X-Forwarded-For": f"198.51.100.{i}"})
        async with spoofed:
            res = await spoofed.post(LOGIN, json={"email": f"s{i}@example.com", "password": "p"})
        if i < 5:
            assert res.status_code == 401, res.text
        else:
            assert_limited(res, "login attempts from this address")


async def test_guessing_the_current_password_counts_as_failed_logins(server: ChatServer) -> None:
    _, token = await server.signup()
    for _ in range(2):
        res = await server.http.post(
            "/v1/api/auth/password",
            json={"oldPassword": "a wrong guess", "newPassword": "whatever123"},
            headers=auth(token),
        )
        assert res.status_code == 403, res.text
    res = await server.http.post(
        "/v1/api/auth/password",
        json={"oldPassword": "password1", "newPassword": "whatever123"},
        headers=auth(token),
    )
    assert_limited(res, "failed logins")
