"""The `read` event (SPEC 12): a marker that moved reaches the same user's other v2
sockets, in every room, once; never a v1 socket, another user's, or the socket that
moved it. With the in-process broker and with Redis.

"Nothing came" is checked with a sentinel: the socket sends a message and waits for
its echo; a `read` frame for it would have been written before (the REST call tells
this process's sockets before it answers).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from chatroom_server.db.store import Draft
from chatroom_server.domain import Identity
from chatroom_server.services import rooms as room_service

from ...conftest import ChatServer, auth, recv_event, recv_json

pytestmark = pytest.mark.every_broker

V2 = "&v=2"


async def store(server: ChatServer, room_id: int, user: dict[str, Any], count: int) -> list[int]:
    room = await room_service.get_room(room_id)
    author = Identity(user["ID"], user["UserName"], user["Email"], int(time.time()) + 3600)
    results = await server.app.ctx.store.store_batch(
        [Draft(room, author, f"stored {i}") for i in range(count)]
    )
    return [r[0].id for r in results if isinstance(r, tuple)]


async def reads_before_sentinel(ws: ClientConnection, text: str) -> list[dict[str, Any]]:
    """Send `text`; the bodies of the `read` frames that came before its echo."""
    await ws.send(json.dumps({"chatMessage": text}))
    reads: list[dict[str, Any]] = []
    while True:
        frame = await recv_json(ws)
        if frame["Event"] == "message" and frame["Body"]["chatMessage"] == text:
            return reads
        if frame["Event"] == "read":
            reads.append(frame["Body"])


async def mark(server: ChatServer, token: str, room_id: int, last_read_id: int) -> dict[str, Any]:
    res = await server.http.post(
        f"/v1/api/chat/rooms/{room_id}/read", json={"lastReadId": last_read_id}, headers=auth(token)
    )
    assert res.status_code == 200, res.text
    return res.json()  # type: ignore[no-any-return]


async def test_a_rest_read_reaches_the_users_v2_sockets_in_every_room(server: ChatServer) -> None:
    me, token = await server.signup()
    other, other_token = await server.signup()
    a, b, c = [(await server.create_room(other_token, n))["ID"] for n in ("a", "b", "c")]
    ids = await store(server, a, other, 3)
    async with (
        server.connect(a, token, query_extra=V2) as mine_a,
        server.connect(b, token, query_extra=V2) as mine_b,
        server.connect(c, token) as mine_v1,
        server.connect(a, other_token, query_extra=V2) as theirs,
    ):
        # Each is its user's first socket in its room: its own join says it is in.
        for ws in (mine_a, mine_b, mine_v1, theirs):
            await recv_event(ws, "join")

        assert await mark(server, token, a, ids[1]) == {
            "chatRoomId": a,
            "lastReadId": ids[1],
            "unread": 1,
        }
        want = {"chatRoomId": a, "lastReadId": ids[1]}
        for ws in (mine_a, mine_b):  # REST has no origin socket: every v2 one hears it
            assert (await recv_event(ws, "read"))["Body"] == want
            assert await reads_before_sentinel(ws, "once") == []
        assert await reads_before_sentinel(mine_v1, "v1 hears nothing") == []
        assert await reads_before_sentinel(theirs, "nor another user") == []

        # A call that does not move the marker tells nobody.
        assert (await mark(server, token, a, ids[0]))["lastReadId"] == ids[1]
        assert await reads_before_sentinel(mine_b, "not moved") == []
        # Moving it again does.
        await mark(server, token, a, ids[2])
        assert (await recv_event(mine_b, "read"))["Body"] == {"chatRoomId": a, "lastReadId": ids[2]}


async def test_the_socket_that_moved_the_marker_is_not_told(server: ChatServer) -> None:
    me, token = await server.signup()
    a = (await server.create_room(token, "a"))["ID"]
    b = (await server.create_room(token, "b"))["ID"]
    async with (
        server.connect(a, token, query_extra=V2) as origin,
        server.connect(b, token, query_extra=V2) as other_tab,
    ):
        for ws in (origin, other_tab):
            await recv_event(ws, "join")
        (conn,) = server.app.ctx.hub.connections(a)
        assert conn.user_id == me["ID"] and conn.version == 2
        # What the websocket session does after a {"type": "read"} frame moved it.
        await server.app.ctx.read_fanout.announce(me["ID"], a, 7, origin_conn=conn)
        assert (await recv_event(other_tab, "read"))["Body"] == {"chatRoomId": a, "lastReadId": 7}
        assert await reads_before_sentinel(origin, "not me") == []
        assert await reads_before_sentinel(other_tab, "once") == []
