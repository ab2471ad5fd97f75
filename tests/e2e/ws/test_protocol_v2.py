"""Protocol v2 (SPEC 12): edits, deletes and typing reach the connections that asked
for `v=2`, in order with the room's messages, and recovery replays them; a v1
connection receives exactly the frames of SPEC section 5 throughout.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from ...conftest import ChatServer, auth, recv_json
from .conftest import assert_error_body, assert_error_frame, next_frame, refused, send_json

pytestmark = pytest.mark.every_broker

V2 = "&v=2"
# What a v1 client ever gets (SPEC 5): every other event is protocol v2's.
V1_EVENTS = {"message", "join", "leave", "recovered", "error"}
MSG_KEYS = {
    "ID",
    "chatRoomId",
    "chatRoomName",
    "chatMessage",
    "chatUser",
    "chatUserId",
    "ChatMessageTs",
}


async def frames_until(ws: ClientConnection, text: str) -> list[dict[str, Any]]:
    """Every frame up to and including the `message` frame carrying `text` (a sentinel:
    whatever was sent before it reached this socket before it)."""
    got = []
    while True:
        frame = await recv_json(ws)
        got.append(frame)
        if frame["Event"] == "message" and frame["Body"]["chatMessage"] == text:
            return got


def events(frames: list[dict[str, Any]]) -> list[str]:
    return [f["Event"] for f in frames if f["Event"] not in ("join", "leave")]


async def post(ws: ClientConnection, text: str) -> dict[str, Any]:
    await send_json(ws, {"chatMessage": text})
    while True:
        frame = await next_frame(ws)
        if frame["Event"] == "message" and frame["Body"]["chatMessage"] == text:
            return frame["Body"]  # type: ignore[no-any-return]


async def next_of(ws: ClientConnection, event: str) -> dict[str, Any]:
    while True:
        frame = await next_frame(ws)
        if frame["Event"] == event:
            return frame


async def test_version_other_than_1_or_2_is_a_400(server: ChatServer) -> None:
    _, token = await server.signup()
    room = await server.create_room(token)
    for bad in ("3", "0", "two", "-1"):
        status, body = await refused(server.ws_url(f"room_id={room['ID']}&jwt={token}&v={bad}"))
        assert status == 400
        assert_error_body(400, body)
        assert body["message"].startswith("v:"), body


async def test_edit_and_delete_reach_v2_sockets_in_order_and_no_v1_socket(
    server: ChatServer,
) -> None:
    alice, a_token = await server.signup("alice")
    _, b_token = await server.signup("bob")
    room = await server.create_room(a_token)
    rid = room["ID"]
    async with (
        server.connect(rid, a_token, query_extra=V2) as a2,
        server.connect(rid, b_token, query_extra=V2) as b2,
        server.connect(rid, b_token) as b1,
    ):
        first = await post(a2, "frist")
        await send_json(a2, {"type": "edit", "id": first["ID"], "chatMessage": "first"})
        edit = await next_of(b2, "edit")
        body = edit["Body"]
        assert set(body) == MSG_KEYS | {"EditedAt", "eventId"}, body
        assert body["ID"] == first["ID"] and body["chatMessage"] == "first"
        assert body["chatUserId"] == alice["ID"] and body["ChatMessageTs"] == first["ChatMessageTs"]
        assert body["EditedAt"] >= first["ChatMessageTs"]
        assert body["eventId"] > first["ID"]
        await send_json(a2, {"type": "delete", "id": first["ID"]})
        delete = await next_of(b2, "delete")
        assert set(delete["Body"]) == {"ID", "chatRoomId", "DeletedAt", "eventId"}
        assert delete["Body"]["ID"] == first["ID"] and delete["Body"]["chatRoomId"] == rid
        assert delete["Body"]["eventId"] > body["eventId"]
        await send_json(a2, {"type": "typing"})
        typing = await next_of(b2, "typing")
        assert typing["Body"] == {
            "chatRoomId": rid,
            "user": {"ID": alice["ID"], "UserName": "alice"},
        }
        # The author's own socket saw the edit and delete too (not its own typing).
        mine = await frames_until(a2, (await post(b2, "sentinel"))["chatMessage"])
        assert [e for e in events(mine) if e != "message"] == ["edit", "delete"], mine
        # The v1 socket got the two messages, nothing else.
        seen = await frames_until(b1, "sentinel")
        assert set(events(seen)) <= V1_EVENTS, seen
        assert [f["Body"]["chatMessage"] for f in seen if f["Event"] == "message"] == [
            "frist",
            "sentinel",
        ]


async def test_history_shows_current_text_and_leaves_deleted_out(server: ChatServer) -> None:
    _, token = await server.signup()
    room = await server.create_room(token)
    rid = room["ID"]
    async with server.connect(rid, token, query_extra=V2) as ws:
        kept = await post(ws, "kept")
        edited = await post(ws, "typo")
        gone = await post(ws, "oops")
        await send_json(ws, {"type": "edit", "id": edited["ID"], "chatMessage": "fixed"})
        await next_of(ws, "edit")
        await send_json(ws, {"type": "delete", "id": gone["ID"]})
        await next_of(ws, "delete")
    res = await server.http.get(f"/v1/api/chat/rooms/{rid}/messages", headers=auth(token))
    messages = res.json()["messages"]
    assert [(m["ID"], m["chatMessage"]) for m in messages] == [
        (kept["ID"], "kept"),
        (edited["ID"], "fixed"),
    ]
    assert "EditedAt" not in messages[0] and messages[1]["EditedAt"]
    res = await server.http.post(
        "/v1/api/chat/room-messages", json={"roomId": rid}, headers=auth(token)
    )
    assert [m["chatMessage"] for m in res.json()["chats"]] == ["kept", "fixed"]


async def test_refusals_are_error_frames_and_the_socket_stays(server: ChatServer) -> None:
    _, a_token = await server.signup()
    _, b_token = await server.signup()
    room = await server.create_room(a_token, "one")
    other = await server.create_room(a_token, "two")
    async with (
        server.connect(room["ID"], a_token, query_extra=V2) as a2,
        server.connect(room["ID"], b_token, query_extra=V2) as b2,
        server.connect(other["ID"], a_token, query_extra=V2) as elsewhere,
    ):
        mine = await post(a2, "alice's")
        await next_of(b2, "message")  # bob saw it
        theirs = await post(elsewhere, "other room")
        cases: list[tuple[dict[str, Any], str]] = [
            ({"type": "edit", "id": mine["ID"], "chatMessage": "mine now"}, "forbidden"),
            ({"type": "edit", "id": 10**12, "chatMessage": "x"}, "not_found"),
            ({"type": "edit", "id": theirs["ID"], "chatMessage": "x"}, "not_found"),
            ({"type": "delete", "id": theirs["ID"]}, "not_found"),
            ({"type": "edit", "id": mine["ID"], "chatMessage": "  "}, "invalid_message"),
            ({"type": "edit", "id": "x", "chatMessage": "x"}, "invalid_message"),
            ({"type": "edit", "id": mine["ID"]}, "invalid_message"),
            ({"type": "delete"}, "invalid_message"),
            ({"type": "read", "lastReadId": -1}, "invalid_message"),
            ({"type": "shout"}, "invalid_message"),
        ]
        for frame, code in cases:
            await send_json(b2, frame)
            assert_error_frame(await next_frame(b2), code)
        # A member (not staff) cannot delete alice's message either.
        await send_json(b2, {"type": "delete", "id": mine["ID"]})
        assert_error_frame(await next_frame(b2), "forbidden")
        await post(b2, "still here")


async def test_typing_is_throttled_per_user_and_never_echoed(server: ChatServer) -> None:
    alice, a_token = await server.signup()
    _, b_token = await server.signup()
    room = await server.create_room(a_token)
    rid = room["ID"]
    async with (
        server.connect(rid, a_token, query_extra=V2) as tab1,
        server.connect(rid, a_token, query_extra=V2) as tab2,
        server.connect(rid, b_token, query_extra=V2) as bob,
    ):
        # Two tabs typing at once, twice each: bob hears alice once in the period.
        for ws in (tab1, tab2, tab1, tab2):
            await send_json(ws, {"type": "typing"})
        await post(tab1, "sentinel")
        seen = await frames_until(bob, "sentinel")
        typing = [f for f in seen if f["Event"] == "typing"]
        assert len(typing) == 1, seen
        assert typing[0]["Body"]["user"]["ID"] == alice["ID"]
        # Neither tab got alice's own typing.
        assert "typing" not in events(await frames_until(tab2, "sentinel"))


async def test_rest_edit_and_delete(server: ChatServer) -> None:
    _, a_token = await server.signup()
    _, b_token = await server.signup()
    room = await server.create_room(a_token)
    rid = room["ID"]
    async with server.connect(rid, b_token, query_extra=V2) as watcher:
        async with server.connect(rid, a_token) as a1:
            await send_json(a1, {"chatMessage": "hello"})
            msg = (await next_of(a1, "message"))["Body"]
        url = f"/v1/api/chat/messages/{msg['ID']}"
        res = await server.http.patch(url, json={"chatMessage": "hello!"}, headers=auth(a_token))
        assert res.status_code == 200, res.text
        out = res.json()["message"]
        assert out["chatMessage"] == "hello!" and out["EditedAt"] and out["ID"] == msg["ID"]
        assert (await next_of(watcher, "edit"))["Body"]["chatMessage"] == "hello!"
        # Someone else: 403 for both; bad bodies: 400 naming the field.
        res = await server.http.patch(url, json={"chatMessage": "x"}, headers=auth(b_token))
        assert res.status_code == 403 and "author" in res.json()["message"]
        res = await server.http.delete(url, headers=auth(b_token))
        assert res.status_code == 403
        for body, field in (({}, "chatMessage"), ({"chatMessage": 5}, "chatMessage")):
            res = await server.http.patch(url, json=body, headers=auth(a_token))
            assert res.status_code == 400 and res.json()["message"].startswith(field), res.text
        res = await server.http.patch(url, json={"chatMessage": " "}, headers=auth(a_token))
        assert res.status_code == 400
        res = await server.http.patch(url, content=b"{nope", headers=auth(a_token))
        assert res.status_code == 400
        res = await server.http.patch(url, json={"chatMessage": "x"})
        assert res.status_code == 401
        res = await server.http.delete(url, headers=auth(a_token))
        assert res.status_code == 204, res.text
        assert (await next_of(watcher, "delete"))["Body"]["ID"] == msg["ID"]
        # Gone: 404 for edit and delete alike, as for an ID never used.
        for method in ("patch", "delete"):
            for target in (url, "/v1/api/chat/messages/999999999"):
                kwargs: dict[str, Any] = {"json": {"chatMessage": "x"}} if method == "patch" else {}
                res = await getattr(server.http, method)(target, headers=auth(a_token), **kwargs)
                assert res.status_code == 404, res.text
                assert_error_body(404, res.json())


async def test_recovery_replays_edits_and_deletes_to_v2_only(server: ChatServer) -> None:
    _, token = await server.signup()
    room = await server.create_room(token)
    rid = room["ID"]
    async with server.connect(rid, token, query_extra=V2) as ws:
        before = await post(ws, "seen")
    async with server.connect(rid, token, query_extra=V2) as ws:
        one = await post(ws, "one")
        two = await post(ws, "two")
        await send_json(ws, {"type": "edit", "id": before["ID"], "chatMessage": "seen, edited"})
        edit = (await next_of(ws, "edit"))["Body"]
        await send_json(ws, {"type": "delete", "id": two["ID"]})
        delete = (await next_of(ws, "delete"))["Body"]
    since = f"&since={before['ID']}"
    async with server.connect(rid, token, query_extra=V2 + since) as ws:
        got = []
        while not got or got[-1]["Event"] != "recovered":
            got.append(await next_frame(ws))
    assert [(f["Event"], f["Body"].get("ID")) for f in got] == [
        ("message", one["ID"]),
        ("edit", before["ID"]),
        ("delete", two["ID"]),
        ("recovered", None),
    ]
    assert got[1]["Body"]["eventId"] == edit["eventId"]
    assert got[3]["Body"]["count"] == 3 and got[3]["Body"]["complete"] is True
    # Caught up from the last event's ID: nothing again, no duplicate at the seam.
    async with server.connect(rid, token, query_extra=f"{V2}&since={delete['eventId']}") as ws:
        frame = await next_frame(ws)
        assert frame["Event"] == "recovered" and frame["Body"]["count"] == 0
    # v1: the live messages after `since`, with their current text, nothing else.
    async with server.connect(rid, token, query_extra=f"&since={before['ID'] - 1}") as ws:
        got = []
        while not got or got[-1]["Event"] != "recovered":
            got.append(await next_frame(ws))
    assert [(f["Event"], f["Body"]["chatMessage"]) for f in got[:-1]] == [
        ("message", "seen, edited"),
        ("message", "one"),
    ]
    assert all(set(f["Body"]) == MSG_KEYS for f in got[:-1]), got


async def test_v1_frames_with_a_type_are_plain_messages(server: ChatServer) -> None:
    """A v1 client's `type` field is an unknown extra field: ignored, as SPEC 5 says."""
    _, token = await server.signup()
    room = await server.create_room(token)
    async with server.connect(room["ID"], token) as ws:
        await ws.send(json.dumps({"type": "edit", "id": 1, "chatMessage": "just text"}))
        frame = await next_frame(ws)
        assert frame["Event"] == "message" and frame["Body"]["chatMessage"] == "just text"


class TestEditWindow:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"edit_window": 0.000001}  # every message is older than that

    async def test_edit_after_the_window_is_refused_delete_is_not(self, server: ChatServer) -> None:
        _, token = await server.signup()
        room = await server.create_room(token)
        async with server.connect(room["ID"], token, query_extra=V2) as ws:
            msg = await post(ws, "too late")
            await send_json(ws, {"type": "edit", "id": msg["ID"], "chatMessage": "x"})
            error = await next_frame(ws)
            assert_error_frame(error, "forbidden")
            assert "seconds" in error["Body"]["chatMessage"]
            res = await server.http.patch(
                f"/v1/api/chat/messages/{msg['ID']}", json={"chatMessage": "x"}, headers=auth(token)
            )
            assert res.status_code == 403
            await send_json(ws, {"type": "delete", "id": msg["ID"]})
            assert (await next_of(ws, "delete"))["Body"]["ID"] == msg["ID"]


async def test_a_read_frame_moves_the_marker_and_tells_the_users_other_v2_sockets(
    server: ChatServer,
) -> None:
    _, a_token = await server.signup()
    _, b_token = await server.signup()
    room = await server.create_room(a_token, "one")
    other = await server.create_room(a_token, "two")
    rid = room["ID"]
    async with (
        server.connect(rid, b_token, query_extra=V2) as reader,
        server.connect(other["ID"], b_token, query_extra=V2) as other_tab,
        server.connect(other["ID"], b_token) as v1_tab,
        server.connect(rid, a_token, query_extra=V2) as author,
    ):
        sent = [await post(author, f"m{i}") for i in range(3)]
        res = await server.http.get(f"/v1/api/chat/rooms/{rid}", headers=auth(b_token))
        assert (res.json()["chatRoom"]["unread"], res.json()["chatRoom"]["lastReadId"]) == (3, None)
        await send_json(reader, {"type": "read", "lastReadId": sent[1]["ID"]})
        read = await next_of(other_tab, "read")
        assert read["Body"] == {"chatRoomId": rid, "lastReadId": sent[1]["ID"]}
        res = await server.http.get(f"/v1/api/chat/rooms/{rid}", headers=auth(b_token))
        assert (res.json()["chatRoom"]["unread"], res.json()["chatRoom"]["lastReadId"]) == (
            1,
            sent[1]["ID"],
        )
        # Backwards: nothing moves, nobody is told (the next event is the next move).
        await send_json(reader, {"type": "read", "lastReadId": sent[0]["ID"]})
        await send_json(reader, {"type": "read", "lastReadId": sent[2]["ID"]})
        read = await next_of(other_tab, "read")
        assert read["Body"] == {"chatRoomId": rid, "lastReadId": sent[2]["ID"]}
        await post(author, "sentinel")
        assert "read" not in events(await frames_until(reader, "sentinel"))
        # The origin socket never got its own read; the v1 tab never got any.
        await send_json(v1_tab, {"chatMessage": "v1 sentinel"})
        seen = await frames_until(v1_tab, "v1 sentinel")
        assert set(events(seen)) <= V1_EVENTS, seen


async def test_a_v1_socket_gets_nothing_of_what_v2_users_do(server: ChatServer) -> None:
    """SPEC 12: everything a v1 socket receives while v2 users send, edit, delete,
    type and read is SPEC 5's frames: the messages, with their fields exactly."""
    _, a_token = await server.signup()
    _, b_token = await server.signup()
    room = await server.create_room(a_token)
    rid = room["ID"]
    async with (
        server.connect(rid, b_token) as old_client,
        server.connect(rid, a_token, query_extra=V2) as alice,
        server.connect(rid, b_token, query_extra=V2) as bob,
    ):
        first = await post(alice, "first")
        await send_json(alice, {"type": "typing"})
        await send_json(bob, {"type": "typing"})
        await send_json(alice, {"type": "edit", "id": first["ID"], "chatMessage": "first!"})
        await next_of(bob, "edit")
        second = await post(bob, "second")
        await send_json(bob, {"type": "read", "lastReadId": second["ID"]})
        await send_json(alice, {"type": "read", "lastReadId": second["ID"]})
        await send_json(bob, {"type": "delete", "id": second["ID"]})
        await next_of(alice, "delete")
        res = await server.http.post(
            f"/v1/api/chat/rooms/{rid}/read",
            json={"lastReadId": first["ID"]},
            headers=auth(b_token),
        )
        assert res.status_code == 200, res.text
        await post(alice, "sentinel")
        seen = [f for f in await frames_until(old_client, "sentinel") if f["Event"] != "join"]
        assert [(f["Event"], f["Body"]["chatMessage"]) for f in seen] == [
            ("message", "first"),
            ("message", "second"),
            ("message", "sentinel"),
        ], seen
        assert all(set(f["Body"]) == MSG_KEYS for f in seen), seen
