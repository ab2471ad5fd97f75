"""Ordering, recovery with `since`, idempotent sends: the guarantees of SPEC section 5."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from chatroom_server.domain import Identity, Message
from chatroom_server.errors import NotFound, StorageError
from chatroom_server.realtime.sequencer import Sequencer
from chatroom_server.services import messages as message_service
from chatroom_server.services import rooms as room_service
from chatroom_server.services.messages import Draft
from chatroom_server.services.writer import AfterCommit, MessageWriter, StoreBatch

from ..conftest import ChatServer, auth, eventually, recv_event, recv_json

# Everything here runs with the in-process broker and with Redis.
pytestmark = pytest.mark.every_broker


@pytest.fixture
def server_settings() -> dict[str, Any]:
    return {"ws_rate": 1000.0, "ws_burst": 1000}


def identity(user: dict[str, Any]) -> Identity:
    return Identity(user["ID"], user["UserName"], user["Email"], int(time.time()) + 3600)


def stores(server: ChatServer) -> list[StoreBatch]:
    """The ORM's way of storing a batch, and the server's own when it differs (SQLite's)."""
    served = server.app.ctx.hub.writer.store
    orm: StoreBatch = message_service.store_batch
    return [orm] if served == orm else [orm, served]


def collect_batches(into: list[list[Message]]) -> AfterCommit:
    """An after-commit hook that keeps each commit's messages."""

    async def after_commit(messages: list[Message]) -> None:
        into.append(messages)

    return after_commit


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
    for i in range(1005):
        await message_service.store_message(room, who, f"m{i}")
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


async def test_concurrent_stores_commit_in_seq_order(server: ChatServer) -> None:
    """Without any in-process lock, the room row lock keeps ID order == seq order."""
    users = [identity((await server.signup())[0]) for _ in range(4)]
    _, token = await server.signup()
    room = await room_service.get_room((await server.create_room(token))["ID"])

    async def writer(who: Identity) -> list[Message]:
        return [(await message_service.store_message(room, who, "x"))[0] for _ in range(15)]

    results = await asyncio.gather(*(writer(u) for u in users))
    stored = sorted((m for batch in results for m in batch), key=lambda m: m.id)
    assert [m.seq for m in stored] == list(range(1, 61))
    assert await room_service.last_seq(room.id) == 60


async def test_group_commit_batches_concurrent_messages_in_seq_order(server: ChatServer) -> None:
    """Messages sent while a commit runs share the next one, and keep their order."""
    users = [identity((await server.signup())[0]) for _ in range(4)]
    _, token = await server.signup()
    for store in stores(server):
        rooms = [
            await room_service.get_room((await server.create_room(token))["ID"]) for _ in range(3)
        ]
        published: list[list[Message]] = []
        writer = MessageWriter(collect_batches(published), store=store)
        results = await asyncio.gather(
            *(
                writer.submit(rooms[i % 3], users[i % 4], f"m{i}")
                for i in range(120)  # all waiting at once: few transactions carry them
            )
        )
        assert [text for text in (m.text for m, _ in results)] == [f"m{i}" for i in range(120)]
        assert not any(resend for _, resend in results)
        assert len(published) < 120 // 4, "concurrent messages were committed one by one"
        flat = [m for batch in published for m in batch]
        assert [m.id for m in flat] == sorted(m.id for m, _ in results)
        for room in rooms:
            mine = [m for m in flat if m.room_id == room.id]
            assert [m.seq for m in mine] == list(range(1, 41))  # published in seq order
            assert [m.id for m in mine] == sorted(m.id for m in mine)
            assert await room_service.last_seq(room.id) == 40


async def test_messages_queued_right_after_a_commit_share_the_next(server: ChatServer) -> None:
    """Frames read in the loop turns after a commit (its fan-out held the loop) share one."""
    who = identity((await server.signup())[0])
    _, token = await server.signup()
    room = await room_service.get_room((await server.create_room(token))["ID"])
    loop = asyncio.get_running_loop()
    batches: list[list[Message]] = []
    later: list[asyncio.Future[tuple[Message, bool]]] = []

    def submit_after(turns: int, text: str) -> None:
        if turns == 0:
            later.append(writer.submit(room, who, text))
        else:
            loop.call_soon(submit_after, turns - 1, text)

    async def after_commit(messages: list[Message]) -> None:
        batches.append(messages)
        if len(batches) == 1:
            # As frames read from sockets arrive: a few hops after the fan-out.
            for turns, text in ((2, "b"), (3, "c"), (4, "d")):
                submit_after(turns, text)

    writer = MessageWriter(after_commit, store=stores(server)[-1])
    await writer.submit(room, who, "a")
    await eventually(lambda: len(later) == 3, "the three later submits")
    await asyncio.gather(*later)
    assert [[m.text for m in batch] for batch in batches] == [["a"], ["b", "c", "d"]]


async def test_store_batch_resends_repeats_and_gone_rooms(server: ChatServer) -> None:
    who = identity((await server.signup())[0])
    _, token = await server.signup()
    for store in stores(server):
        room = await room_service.get_room((await server.create_room(token))["ID"])
        gone = await room_service.get_room((await server.create_room(token))["ID"])
        await room_service.delete_room(gone.id)
        results = await store(
            [
                Draft(room, who, "first", "c-1"),
                Draft(room, who, "first again", "c-1"),  # the same send twice in one batch
                Draft(gone, who, "lost", None),
                Draft(room, who, "second", None),
            ]
        )
        first, repeat, lost, second = results
        assert isinstance(first, tuple) and first[1] is False and first[0].text == "first"
        assert repeat == (first[0], True)
        assert isinstance(lost, NotFound)
        assert isinstance(second, tuple) and (second[0].seq, second[1]) == (2, False)
        for other in stores(server):  # either way finds what the other stored
            (again,) = await other([Draft(room, who, "first", "c-1")])
            assert again == (first[0], True)
        assert await room_service.last_seq(room.id) == 2


async def test_ids_of_a_batch_are_found_even_when_not_the_newest(server: ChatServer) -> None:
    """IDs handed out out of order (a PostgreSQL sequence cache) still match up."""
    from tortoise.transactions import in_transaction

    from chatroom_server.services.messages import NewRow, _new_ids

    who = identity((await server.signup())[0])
    _, token = await server.signup()
    room = await room_service.get_room((await server.create_room(token))["ID"])
    (older, _), (newer, _) = [
        await message_service.store_message(room, who, text) for text in ("older", "newer")
    ]
    async with in_transaction() as conn:
        row = NewRow(
            0, room.id, who.user_id, who.user_name, "older", None, older.seq, older.created_at
        )
        # As if "older" were this batch's only row while a newer ID already existed.
        assert await _new_ids(conn, [row]) == {(room.id, older.seq): older.id}
    assert newer.id > older.id


async def test_one_bad_message_does_not_sink_its_batch(server: ChatServer) -> None:
    who = identity((await server.signup())[0])
    ghost = Identity(10**9, "ghost", "ghost@example.com", who.expires_at)  # no such user
    _, token = await server.signup()
    for store in stores(server):
        room = await room_service.get_room((await server.create_room(token))["ID"])
        batches: list[list[Message]] = []
        writer = MessageWriter(collect_batches(batches), store=store)
        outcomes = await asyncio.gather(
            writer.submit(room, who, "a"),
            writer.submit(room, ghost, "refused by the database"),
            writer.submit(room, who, "b"),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], StorageError)
        assert [o[0].text for o in outcomes if isinstance(o, tuple)] == ["a", "b"]
        published = [m for batch in batches for m in batch]
        assert [m.text for m in published] == ["a", "b"]
        assert [m.seq for m in published] == [1, 2]


# ------------------------------------------------------------------ the sequencer alone


def make_sequencer(database: list[tuple[int, int]]) -> tuple[Sequencer, list[int]]:
    """A sequencer over a fake 'database' of (seq, id) rows; returns it and what it emitted."""
    emitted: list[int] = []

    async def fetch(after: int) -> list[tuple[Message, str]]:
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        return [
            (Message(mid, 1, "r", "t", 1, "u", now, None, seq), f"frame{mid}")
            for seq, mid in database
            if seq > after
        ]

    return Sequencer(lambda mid, frame: emitted.append(mid), fetch), emitted


async def test_sequencer_orders_drops_duplicates_and_backfills() -> None:
    database = [(1, 10), (2, 11), (3, 12), (4, 13)]
    seq, emitted = make_sequencer(database)
    seq.offer(1, 10, "frame10")  # before start(): held
    seq.start(0)
    assert emitted == [10]
    seq.offer(1, 10, "frame10")  # duplicate
    seq.offer(4, 13, "frame13")  # ahead of a hole: held, back-fill starts
    assert emitted == [10]
    for _ in range(100):
        if emitted == [10, 11, 12, 13]:
            break
        await asyncio.sleep(0)  # let the back-fill task run; it needs no time, only turns
    assert emitted == [10, 11, 12, 13]
    seq.offer(3, 12, "frame12")  # late original of a back-filled one: dropped
    assert emitted == [10, 11, 12, 13]
    seq.close()


async def test_sequencer_resync_picks_up_what_the_broker_lost() -> None:
    database = [(1, 10), (2, 11)]
    seq, emitted = make_sequencer(database)
    seq.start(0)
    seq.resync()
    for _ in range(100):
        if emitted == [10, 11]:
            break
        await asyncio.sleep(0)
    assert emitted == [10, 11]
    seq.close()


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

    def live_connections() -> int:
        # Ours, and Sanic's websocket objects (which its HTTP timeout timer would keep).
        gc.collect()
        kinds = (Connection, WebsocketImplProtocol)
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
