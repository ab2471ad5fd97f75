"""Ordering, recovery with `since`, idempotent sends: the guarantees of SPEC section 5."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from chatroom_server.db.store import Draft
from chatroom_server.services import rooms as room_service

from ..conftest import ChatServer, auth, identity, recv_event, recv_json

# Everything here runs with the in-process broker and with Redis.
pytestmark = [pytest.mark.every_broker, pytest.mark.every_ws_path]


@pytest.fixture
def server_settings() -> dict[str, Any]:
    return {"ws_rate": 1000.0, "ws_burst": 1000}


async def history_ids(server: ChatServer, token: str, room_id: int) -> list[int]:
    res = await server.http.get(
        f"/v1/api/chat/rooms/{room_id}/messages", params={"limit": 200}, headers=auth(token)
    )
    return [m["ID"] for m in res.json()["messages"]]


async def test_reconnect_with_since_gets_exactly_the_missed_then_live(server: ChatServer) -> None:
    _, token = await server.signup("ann")
    _, other = await server.signup("bob")
    rid = (await server.create_room(token))["ID"]
    async with server.connect(rid, other) as bob:
        await bob.send(json.dumps({"chatMessage": "seen"}))
        last_seen = (await recv_event(bob, "message"))["Body"]["ID"]
    # Bob is away: three messages arrive.
    async with server.connect(rid, token) as ann:
        for i in range(3):
            await ann.send(json.dumps({"chatMessage": f"missed {i}"}))
            await recv_event(ann, "message")
        async with server.connect(rid, other, query_extra=f"&since={last_seen}") as bob:
            replay = []
            while True:
                frame = await recv_json(bob)
                if frame["Event"] == "recovered":
                    break
                if frame["Event"] == "message":
                    replay.append(frame["Body"]["chatMessage"])
            assert replay == ["missed 0", "missed 1", "missed 2"]
            assert frame["Body"] == {
                "chatUserId": -1,
                "chatMessage": "",
                "count": 3,
                "complete": True,
            }
            await ann.send(json.dumps({"chatMessage": "live"}))
            live = await recv_event(bob, "message")
            assert live["Body"]["chatMessage"] == "live"


async def test_no_gap_and_no_duplicate_at_the_seam(server: ChatServer) -> None:
    _, token = await server.signup()
    _, other = await server.signup()
    rid = (await server.create_room(token))["ID"]
    total = 40
    async with server.connect(rid, token) as sender:
        # Messages flow while the second client reconnects with since=0.
        async def send_all() -> None:
            for i in range(total):
                await sender.send(json.dumps({"chatMessage": f"n{i}"}))
                await asyncio.sleep(0)

        sending = asyncio.create_task(send_all())
        async with server.connect(rid, other, query_extra="&since=0") as late:
            got: list[int] = []
            while len(got) < total:
                frame = await recv_json(late)
                if frame["Event"] == "message":
                    got.append(frame["Body"]["ID"])
            await sending
    stored = await history_ids(server, token, rid)
    assert got == stored  # every stored message once, in ID order, across the seam


async def test_replay_is_capped_at_1000_with_complete_false(server: ChatServer) -> None:
    user, token = await server.signup()
    rid = (await server.create_room(token))["ID"]
    room = await room_service.get_room(rid)
    who = identity(user)
    await server.app.ctx.store.store_batch([Draft(room, who, f"m{i}") for i in range(1005)])
    async with server.connect(rid, token, query_extra="&since=0") as ws:
        count = 0
        while True:
            frame = await recv_json(ws)
            if frame["Event"] == "recovered":
                break
            count += frame["Event"] == "message"
    assert count == 1000
    assert frame["Body"]["count"] == 1000 and frame["Body"]["complete"] is False


async def test_bad_since_is_400(server: ChatServer) -> None:
    from websockets.exceptions import InvalidStatus

    _, token = await server.signup()
    rid = (await server.create_room(token))["ID"]
    for bad in ("abc", "-1", "1.5"):
        with pytest.raises(InvalidStatus) as refused:
            async with server.connect(rid, token, query_extra=f"&since={bad}"):
                pass
        assert refused.value.response.status_code == 400


async def test_resend_with_same_client_message_id_stores_one_row(server: ChatServer) -> None:
    _, token = await server.signup()
    _, other = await server.signup()
    rid = (await server.create_room(token))["ID"]
    frame = {"chatRoomId": rid, "chatMessage": "once", "clientMessageId": "c-1"}
    async with server.connect(rid, other) as watcher:
        async with server.connect(rid, token) as first:
            await first.send(json.dumps(frame))
            original = (await recv_event(first, "message"))["Body"]
            assert original["clientMessageId"] == "c-1"
        # "Dropped connection": the same send again on a new socket.
        async with server.connect(rid, token) as second:
            await second.send(json.dumps(frame))
            again = (await recv_event(second, "message"))["Body"]
            assert again == original
            # The same id in another room or by another user is a different message.
            await second.send(json.dumps({**frame, "clientMessageId": "c-2"}))
            fresh = (await recv_event(second, "message"))["Body"]
            assert fresh["ID"] > original["ID"]
        # The watcher saw "once" exactly once, then "c-2".
        seen = []
        while len(seen) < 2:
            f = await recv_json(watcher)
            if f["Event"] == "message":
                seen.append(f["Body"]["ID"])
        assert seen == [original["ID"], fresh["ID"]]
    assert await history_ids(server, token, rid) == [original["ID"], fresh["ID"]]


async def test_clients_leaving_mid_send_never_wedge_the_database(server: ChatServer) -> None:
    """A sender that closes right after sending may cancel its handler while the
    message is being stored; the store must finish or not start, never hang."""
    _, token = await server.signup()
    rid = (await server.create_room(token))["ID"]
    for i in range(15):
        async with server.connect(rid, token) as ws:
            await ws.send(json.dumps({"chatMessage": f"bye {i}", "clientMessageId": f"b{i}"}))
    # The database still answers, and a normal send still goes through.
    res = await server.http.get(f"/v1/api/chat/rooms/{rid}/messages", headers=auth(token))
    assert res.status_code == 200
    async with server.connect(rid, token) as ws:
        await ws.send(json.dumps({"chatMessage": "after"}))
        # The last goodbyes may still be committing as this one joins: it sees them live.
        seen = [(await recv_event(ws, "message"))["Body"]["chatMessage"]]
        while seen[-1] != "after":
            seen.append((await recv_event(ws, "message"))["Body"]["chatMessage"])
        assert all(text.startswith("bye ") for text in seen[:-1]), seen


async def test_closed_connections_leave_nothing_behind(server: ChatServer) -> None:
    import gc

    from sanic.server.websockets.impl import WebsocketImplProtocol

    from chatroom_server.realtime.connection import Connection

    # Ours, and on the fast path Sanic's websocket objects too (which its HTTP timeout
    # timer would keep for up to 30 s: the fast path cancels it; the public path
    # cannot, and Sanic's objects linger there until the timer fires).
    kinds: tuple[type, ...] = (Connection,)
    if server.app.ctx.wire.name == "fast":
        kinds = (Connection, WebsocketImplProtocol)

    def live_connections() -> int:
        gc.collect()
        return sum(isinstance(o, kinds) for o in gc.get_objects())

    _, token = await server.signup()
    rid = (await server.create_room(token))["ID"]
    async with server.connect(rid, token) as ws:  # warm up
        await ws.send(json.dumps({"chatMessage": "w"}))
        await recv_event(ws, "message")
    baseline = live_connections()
    for i in range(30):
        async with server.connect(rid, token) as ws:
            await ws.send(json.dumps({"chatMessage": f"m{i}"}))
            await recv_event(ws, "message")
    hub = server.app.ctx.hub
    for _ in range(100):  # the last handler may still be finishing its cleanup
        if hub.connection_count == 0:
            break
        await asyncio.sleep(0.01)
    assert hub.connection_count == 0 and hub.rooms() == []
    assert live_connections() <= baseline
