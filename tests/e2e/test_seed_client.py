"""A client written for the Go server works unchanged, end to end."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from websockets.asyncio.client import connect

from chatroom_server.settings import Settings

from ..conftest import ChatServer, auth, recv_event, recv_json

# Everything here runs with the in-process broker and with Redis.
pytestmark = [pytest.mark.every_broker, pytest.mark.every_ws_path]

# The abuse limits at their defaults (the suite raises them elsewhere): a seed-era
# client works unchanged with the settings a server ships with.
ABUSE_LIMITS = (
    "user_connections",
    "ip_connections",
    "user_rate",
    "user_burst",
    "login_ip_rate",
    "login_failures",
    "signup_ip_rate",
    "room_create_rate",
    "header_timeout",
)


@pytest.fixture
def server_settings() -> dict[str, Any]:
    defaults = Settings()
    return {name: getattr(defaults, name) for name in ABUSE_LIMITS}


TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def test_seed_flow(server: ChatServer) -> None:
    http = server.http
    # Sign up and log in, as the Go server's document shows.
    res = await http.post(
        "/v1/api/auth/signup",
        json={"user_name": "user", "email": "Email@Mail.com", "password": "password1"},
    )
    assert res.status_code == 200
    body = res.json()
    assert set(body) == {"user", "token"}
    user = body["user"]
    assert set(user) == {"ID", "CreatedAt", "UpdatedAt", "DeletedAt", "UserName", "Email"}
    assert user["UserName"] == "user" and user["Email"] == "email@mail.com"
    assert TS.match(user["CreatedAt"]) and TS.match(user["UpdatedAt"])
    assert user["DeletedAt"] is None

    res = await http.post(
        "/v1/api/auth/login", json={"email": "email@mail.com", "password": "password1"}
    )
    assert res.status_code == 200
    token = res.json()["token"]
    assert res.json()["user"]["ID"] == user["ID"]

    # Create a room, list it with GET and with POST {}.
    res = await http.post("/v1/api/chat/create", json={"name": "Chat name"}, headers=auth(token))
    assert res.status_code == 200
    room = res.json()["chatRoom"]
    # The Go server's fields; SPEC 10 adds visibility, ownerId and role beside them.
    assert {"ID", "CreatedAt", "UpdatedAt", "DeletedAt", "name"} <= set(room)
    assert room["name"] == "Chat name" and room["DeletedAt"] is None

    for method in ("GET", "POST"):
        kwargs = {"json": {}} if method == "POST" else {}
        res = await http.request(method, "/v1/api/chat/rooms", headers=auth(token), **kwargs)
        assert res.status_code == 200
        assert res.json() == {"chatRooms": [room]}

    # Two clients in the room: one on /v1/ws, one on /ws with the query reversed.
    other, other_token = await server.signup("bob")
    rid = room["ID"]
    async with (
        connect(server.ws_url(f"room_id={rid}&jwt={token}", "/v1/ws")) as alice_ws,
        connect(server.ws_url(f"jwt={other_token}&room_id={rid}", "/ws")) as bob_ws,
    ):
        await alice_ws.send(json.dumps({"chatRoomId": rid, "chatMessage": "hello bob"}))
        for ws in (alice_ws, bob_ws):
            frame = await recv_event(ws, "message")
            assert frame["Type"] == 1
            b = frame["Body"]
            assert b["chatMessage"] == "hello bob"
            assert b["chatUser"] == "user"
            assert b["chatUserId"] == user["ID"]
            assert b["chatRoomId"] == rid and b["chatRoomName"] == "Chat name"
            assert TS.match(b["ChatMessageTs"])
            assert isinstance(b["ID"], int)
        await bob_ws.send(json.dumps({"chatRoomId": rid, "chatMessage": "hi user"}))
        frame = await recv_event(alice_ws, "message")
        assert frame["Body"]["chatUser"] == "bob"
        assert frame["Body"]["chatUserId"] == other["ID"]

    # History, legacy and paginated, oldest first.
    res = await http.post("/v1/api/chat/room-messages", json={"roomId": rid}, headers=auth(token))
    assert res.status_code == 200
    chats = res.json()["chats"]
    assert [c["chatMessage"] for c in chats] == ["hello bob", "hi user"]
    assert set(chats[0]) == {
        "ID",
        "chatRoomId",
        "chatRoomName",
        "chatMessage",
        "chatUser",
        "chatUserId",
        "ChatMessageTs",
    }
    res = await http.get(f"/v1/api/chat/rooms/{rid}/messages", headers=auth(token))
    assert res.json()["messages"] == chats and res.json()["hasMore"] is False


async def test_join_and_leave_are_system_lines(server: ChatServer) -> None:
    alice, alice_token = await server.signup("alice")
    bob, bob_token = await server.signup("bob")
    room = await server.create_room(alice_token)
    async with server.connect(room["ID"], alice_token) as alice_ws:
        joined = await recv_event(alice_ws, "join")
        assert joined["Body"]["chatUserId"] == -1
        assert joined["Body"]["user"] == {"ID": alice["ID"], "UserName": "alice"}
        async with server.connect(room["ID"], bob_token):
            frame = await recv_event(alice_ws, "join")
            assert frame["Body"]["chatMessage"] == "bob joined"
            assert frame["Body"]["chatRoomId"] == room["ID"]
        frame = await recv_event(alice_ws, "leave")
        assert frame["Body"]["chatMessage"] == "bob left"
        assert frame["Body"]["user"]["ID"] == bob["ID"]


async def test_messages_arrive_in_id_order_with_concurrent_senders(server: ChatServer) -> None:
    _, t1 = await server.signup()
    _, t2 = await server.signup()
    _, t3 = await server.signup()
    room = await server.create_room(t1)
    rid = room["ID"]
    per_sender = 15
    async with (
        server.connect(rid, t1) as a,
        server.connect(rid, t2) as b,
        server.connect(rid, t3) as listener,
    ):
        for i in range(per_sender):
            await a.send(json.dumps({"chatMessage": f"a{i}"}))
            await b.send(json.dumps({"chatMessage": f"b{i}"}))
        received = []
        while len(received) < 2 * per_sender:
            frame = await recv_json(listener)
            if frame["Event"] == "message":
                received.append(frame["Body"])
    ids = [m["ID"] for m in received]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for prefix in "ab":
        mine = [m["chatMessage"] for m in received if m["chatMessage"].startswith(prefix)]
        assert mine == [f"{prefix}{i}" for i in range(per_sender)]
