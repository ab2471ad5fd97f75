"""A room change no broker carried (Redis was away, or another tool wrote it) still
reaches open sockets: every process re-checks its sockets' room access against the
database (realtime/room_events.py). Here the rows are written behind the server's
back, as a lost announcement would leave them, with a short sweep interval."""

from __future__ import annotations

from typing import Any

import pytest

from chatroom_server.db.models import RoomBanRow, RoomMemberRow, RoomMuteRow

from ..conftest import ChatServer, auth, close_code, eventually, recv_event


@pytest.fixture
def server_settings() -> dict[str, Any]:
    return {"session_cache_seconds": 0.3, "session_recheck": 0.1}


async def test_a_ban_written_elsewhere_closes_the_socket(server: ChatServer) -> None:
    _, owner = await server.signup()
    pest, pest_token = await server.signup()
    rid = (await server.create_room(owner, "lobby"))["ID"]
    async with server.connect(rid, pest_token) as ws:
        await recv_event(ws, "join")
        await RoomBanRow.create(room_id=rid, user_id=pest["ID"], reason="spam")
        assert await close_code(ws) == 1008
        assert ws.close_reason == "banned from the room"


async def test_a_membership_removed_elsewhere_closes_the_socket(server: ChatServer) -> None:
    _, owner = await server.signup()
    guest, guest_token = await server.signup()
    res = await server.http.post(
        "/v1/api/chat/create",
        json={"name": "inner circle", "visibility": "private"},
        headers=auth(owner),
    )
    rid = res.json()["chatRoom"]["ID"]
    await server.http.post(
        f"/v1/api/chat/rooms/{rid}/members", json={"userId": guest["ID"]}, headers=auth(owner)
    )
    async with server.connect(rid, guest_token) as ws:
        await recv_event(ws, "join")
        await RoomMemberRow.filter(room_id=rid, user_id=guest["ID"]).delete()
        assert await close_code(ws) == 1008
        assert ws.close_reason == "removed from the room"


async def test_a_mute_written_elsewhere_reaches_the_socket(server: ChatServer) -> None:
    _, owner = await server.signup()
    talker, talker_token = await server.signup()
    rid = (await server.create_room(owner, "lobby"))["ID"]
    async with server.connect(rid, talker_token) as ws:
        await recv_event(ws, "join")
        await RoomMuteRow.create(room_id=rid, user_id=talker["ID"])
        hub = server.app.ctx.hub
        await eventually(
            lambda: all(c.muted_until > 0 for c in hub.connections(rid)), "the sweep mutes"
        )
        await ws.send('{"chatMessage": "still here?"}')
        assert (await recv_event(ws, "error"))["Body"]["code"] == "muted"
        await RoomMuteRow.filter(room_id=rid, user_id=talker["ID"]).delete()
        await eventually(
            lambda: all(c.muted_until == 0 for c in hub.connections(rid)), "the sweep unmutes"
        )
        await ws.send('{"chatMessage": "yes"}')
        assert (await recv_event(ws, "message"))["Body"]["chatMessage"] == "yes"
