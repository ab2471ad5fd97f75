"""How and when the server closes a socket: token expiry, deleted room, shutdown,
pings unanswered, a peer that closed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from chatroom_server.services import rooms as room_service

from ...conftest import (
    TIMEOUT,
    ChatServer,
    close_code,
    eventually,
    make_settings,
    recv_event,
    recv_json,
    start_server,
)
from .conftest import hub_user_ids, refused, works

# Everything here runs with the in-process broker and with Redis.
pytestmark = [pytest.mark.every_broker, pytest.mark.every_ws_path]


# --------------------------------------------------------------------------- token expiry


class TestTokenExpiry:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"token_ttl": 2}

    async def test_socket_closes_with_1008_when_the_token_expires(self, server: ChatServer) -> None:
        user, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        async with server.connect(rid, token) as ws:
            await works(ws, rid, "while the token is valid")
            assert await close_code(ws, timeout=6) == 1008
            # Closed because of the expiry, not before it.
            assert time.time() >= exp - 0.5
        await eventually(
            lambda: user["ID"] not in hub_user_ids(server, rid),
            "the expired connection leaves the hub",
        )
        status, _ = await refused(server.ws_url(f"room_id={rid}&jwt={token}"))
        assert status == 401
        # A fresh token still works.
        _, fresh = await server.signup()
        async with server.connect(rid, fresh) as ws:
            await works(ws, rid, "fresh token")


# --------------------------------------------------------------------------- room deleted


async def test_deleting_a_room_closes_its_sockets_with_1001(server: ChatServer) -> None:
    _, alice_token = await server.signup()
    _, bob_token = await server.signup()
    rid = (await server.create_room(alice_token))["ID"]
    other = (await server.create_room(alice_token, "other"))["ID"]
    async with (
        server.connect(rid, alice_token) as a1,
        server.connect(rid, alice_token) as a2,
        server.connect(rid, bob_token) as b,
        server.connect(other, bob_token) as elsewhere,
    ):
        await works(a1, rid, "before the delete")
        await room_service.delete_room(rid)
        codes = await asyncio.gather(*(close_code(ws) for ws in (a1, a2, b)))
        assert codes == [1001, 1001, 1001]
        await eventually(
            lambda: rid not in server.app.ctx.hub.rooms(), "the deleted room leaves the hub"
        )
        # Sockets in other rooms are untouched.
        await works(elsewhere, other, "other room still open")
    status, _ = await refused(server.ws_url(f"room_id={rid}&jwt={alice_token}"))
    assert status == 404


# --------------------------------------------------------------------------- shutdown


@pytest.mark.parametrize("internals", ["auto", "off"], ids=["fast", "public"])
async def test_server_shutdown_closes_sockets_with_1001(database_url: str, internals: str) -> None:
    srv, stop = await start_server(make_settings(database_url, internals=internals))
    stopped = False
    try:
        _, token = await srv.signup()
        r1 = (await srv.create_room(token, "one"))["ID"]
        r2 = (await srv.create_room(token, "two"))["ID"]
        async with srv.connect(r1, token) as ws1, srv.connect(r2, token) as ws2:
            await works(ws1, r1, "before shutdown")
            await works(ws2, r2, "before shutdown")
            stopping = asyncio.create_task(stop())
            stopped = True
            codes = await asyncio.gather(close_code(ws1), close_code(ws2))
            await asyncio.wait_for(stopping, TIMEOUT)
            assert codes == [1001, 1001]
    finally:
        if not stopped:
            await stop()


@pytest.mark.parametrize("internals", ["auto", "off"], ids=["fast", "public"])
async def test_a_reader_behind_at_shutdown_gets_every_stored_message_then_1001(
    database_url: str, internals: str
) -> None:
    settings = make_settings(database_url, internals=internals, ws_rate=1000.0, ws_burst=1000)
    srv, stop = await start_server(settings)
    stopped = False
    try:
        _, token = await srv.signup()
        rid = (await srv.create_room(token))["ID"]
        async with srv.connect(rid, token) as reader, srv.connect(rid, token) as sender:
            sent = []
            for i in range(300):  # the reader reads none of these until the server stops
                await sender.send(json.dumps({"chatMessage": f"m{i}"}))
                sent.append((await recv_event(sender, "message"))["Body"]["ID"])
            stopping = asyncio.create_task(stop())
            stopped = True
            got: list[int] = []
            with contextlib.suppress(ConnectionClosed):
                while True:
                    frame = await recv_json(reader)
                    if frame["Event"] == "message":
                        got.append(frame["Body"]["ID"])
            await asyncio.wait_for(stopping, TIMEOUT)
            assert got == sent
            assert reader.close_code == 1001
    finally:
        if not stopped:
            await stop()


class TestPing:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"ping_interval": 0.3}

    async def test_a_peer_that_answers_pings_stays(self, server: ChatServer) -> None:
        _, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        keepalive = server.app.ctx.keepalive
        async with server.connect(rid, token) as ws:
            first = keepalive.rounds
            # The client library answers every ping; three rounds later it is still here.
            await eventually(lambda: keepalive.rounds >= first + 3, "three ping rounds")
            await works(ws, rid, "after the pings")
            assert server.app.ctx.hub.connection_count == 1

    async def test_a_peer_that_never_answers_pings_is_dropped(self, server: ChatServer) -> None:
        _, token = await server.signup()
        room = await server.create_room(token)
        # A raw socket: it completes the handshake, then never reads, so never pongs.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            (
                f"GET /ws?room_id={room['ID']}&jwt={token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert b" 101 " in status
        hub = server.app.ctx.hub
        await eventually(lambda: hub.connection_count == 1, "the socket to join the hub")
        await eventually(lambda: hub.connection_count == 0, "the silent peer to be dropped")
        writer.close()


@pytest.mark.fast_ws_path
async def test_a_socket_whose_peer_closed_is_written_to_no_more(server: ChatServer) -> None:
    """The peer's close frame marks the transport closed at once, before the handler ends."""
    from chatroom_server.web.internals.fast import SanicTransport, WatchedProtocol

    _, token = await server.signup()
    rid = (await server.create_room(token))["ID"]
    hub = server.app.ctx.hub
    async with server.connect(rid, token) as ws:
        await eventually(lambda: len(hub.connections(rid)) == 1, "the socket in the hub")
        (conn,) = hub.connections(rid)
        transport = conn.transport
        assert isinstance(transport, SanicTransport)
        assert transport.open and transport.watched
        assert type(transport.proto) is WatchedProtocol
        transport.write(b"\x81\x02hi", 1)  # a text frame "hi": the client reads it
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hi"
        await ws.close()
    assert transport.open is False
    with pytest.raises(ConnectionError):
        transport.write(b"\x81\x02hi", 1)
