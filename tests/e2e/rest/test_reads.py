"""Read markers and unread counts over REST (SPEC 10 and 12), on SQLite and PostgreSQL.

POST /v1/api/chat/rooms/<id>/read moves the caller's marker forward (never back) to
the room's message with the largest ID at most the one named; ROOM's `unread` counts
the room's live messages after the marker, not the caller's own and not deleted
ones; edits and deletes (rows of their own in the messages table, written here
directly as the edit API would) never count.
"""

from __future__ import annotations

import json
from typing import Any

from tortoise import timezone
from tortoise.transactions import in_transaction

from chatroom_server.db.models import MessageRow, RoomRow
from chatroom_server.domain import DELETE, EDIT

from ...conftest import ChatServer, auth
from .conftest import ROOMS, Soft, assert_error, room_list, seed_messages

CHAT = "/v1/api/chat"
MAX_ID = 2**63 - 1


async def mark(server: ChatServer, token: str, room_id: int, last_read_id: Any) -> dict[str, Any]:
    res = await server.http.post(
        f"{ROOMS}/{room_id}/read", json={"lastReadId": last_read_id}, headers=auth(token)
    )
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    assert set(body) == {"chatRoomId", "lastReadId", "unread"} and body["chatRoomId"] == room_id
    return body


async def seen_as(server: ChatServer, token: str, room_id: int) -> tuple[int, int | None]:
    """(unread, lastReadId) of the room, as GET room and the room list (GET, POST, a
    page) all show it: they must agree."""
    res = await server.http.get(f"{ROOMS}/{room_id}", headers=auth(token))
    assert res.status_code == 200, res.text
    room = res.json()["chatRoom"]
    for method, params in (("GET", {}), ("POST", {}), ("GET", {"limit": 1000})):
        listed = await server.http.request(method, ROOMS, params=params, headers=auth(token))
        (same,) = [r for r in listed.json()["chatRooms"] if r["ID"] == room_id]
        assert same == room, (method, params)
    return room["unread"], room["lastReadId"]


async def add_change(room_id: int, user: dict[str, Any], kind: int, target_id: int) -> int:
    """An edit or delete row, as the edit API stores one: the room's next seq."""
    async with in_transaction():
        room = await RoomRow.get(id=room_id)
        seq = room.last_seq + 1
        row = await MessageRow.create(
            room_id=room_id,
            user_id=user["ID"],
            user_name=user["UserName"],
            text="changed" if kind == EDIT else "",
            seq=seq,
            kind=kind,
            target_id=target_id,
        )
        await RoomRow.filter(id=room_id).update(last_seq=seq)
    if kind == DELETE:
        await MessageRow.filter(id=target_id).update(
            deleted_at=timezone.now(), deleted_by_id=user["ID"]
        )
    elif kind == EDIT:
        await MessageRow.filter(id=target_id).update(edited_at=timezone.now())
    return int(row.id)


async def test_the_marker_moves_forward_only_to_rows_of_this_room(server: ChatServer) -> None:
    reader, token = await server.signup()
    writer, _ = await server.signup()
    a = (await server.create_room(token, "a"))["ID"]
    b = (await server.create_room(token, "b"))["ID"]
    # IDs interleave between the rooms: a1 < b1 < a2 < a3 < b2.
    (a1,) = await seed_messages(server, a, writer, 1)
    (b1,) = await seed_messages(server, b, writer, 1)
    a2, a3 = await seed_messages(server, a, writer, 2)
    (b2,) = await seed_messages(server, b, writer, 1)
    assert await seen_as(server, token, a) == (3, None)

    # 0 and an ID before the room's first message: nothing to mark yet.
    assert await mark(server, token, a, 0) == {"chatRoomId": a, "lastReadId": None, "unread": 3}
    assert (await mark(server, token, b, a1))["lastReadId"] is None
    # Another room's message: the largest of this room's IDs below it.
    assert await mark(server, token, a, b1) == {"chatRoomId": a, "lastReadId": a1, "unread": 2}
    assert await seen_as(server, token, a) == (2, a1)
    assert await mark(server, token, a, a3) == {"chatRoomId": a, "lastReadId": a3, "unread": 0}
    # Never back: an older ID (or 0) answers with the marker as it stays.
    for older in (a2, a1, 0, b1):
        assert await mark(server, token, a, older) == {
            "chatRoomId": a,
            "lastReadId": a3,
            "unread": 0,
        }
    # Beyond the newest: the newest, and later messages are unread again.
    (a4,) = await seed_messages(server, a, writer, 1)
    assert await seen_as(server, token, a) == (1, a3)
    assert await mark(server, token, a, MAX_ID) == {"chatRoomId": a, "lastReadId": a4, "unread": 0}
    assert await mark(server, token, b, b2 + 10**6) == {
        "chatRoomId": b,
        "lastReadId": b2,
        "unread": 0,
    }
    # The marker is the caller's: a newcomer has read nothing.
    _, newcomer = await server.signup()
    assert await seen_as(server, newcomer, a) == (4, None)
    # IDs as strings, as seed clients send IDs.
    assert (await mark(server, token, b, str(b1)))["lastReadId"] == b2


async def test_unread_leaves_out_own_deleted_messages_and_changes(server: ChatServer) -> None:
    me, token = await server.signup()
    other, other_token = await server.signup()
    room = (await server.create_room(other_token))["ID"]
    first = await seed_messages(server, room, other, 3)
    assert await seen_as(server, token, room) == (3, None)
    # My own message: what came before it counts as read, my message itself never counts.
    (mine,) = await seed_messages(server, room, me, 1)
    assert await seen_as(server, token, room) == (0, None)
    later = await seed_messages(server, room, other, 4)
    assert await seen_as(server, token, room) == (4, None)
    assert await seen_as(server, other_token, room) == (0, None)  # theirs, after mine

    # Edits and deletes are rows of their own after the marker: never unread.
    await add_change(room, other, EDIT, later[0])
    await add_change(room, other, EDIT, first[0])
    assert await seen_as(server, token, room) == (4, None)
    await add_change(room, other, DELETE, later[1])  # a deleted message leaves the count
    assert await seen_as(server, token, room) == (3, None)
    await add_change(room, other, DELETE, mine)  # my own, deleted by the room's owner
    assert await seen_as(server, token, room) == (3, None)
    # A message deleted before my marker changes nothing either.
    await mark(server, token, room, later[2])
    assert await seen_as(server, token, room) == (1, later[2])
    await add_change(room, other, DELETE, later[0])
    assert await seen_as(server, token, room) == (1, later[2])
    # The marker may land on a change row (the newest row): nothing is left unread.
    newest = await MessageRow.filter(room_id=room).order_by("-id").first()
    assert newest is not None and newest.kind == DELETE
    assert await mark(server, token, room, MAX_ID) == {
        "chatRoomId": room,
        "lastReadId": newest.id,
        "unread": 0,
    }
    assert (await seen_as(server, other_token, room))[0] == 0
    # Decided: the user's newest row of their own is what they "wrote last", an edit
    # or a delete of theirs included (one probe of the (room_id, user_id, seq) index):
    # what came before it counts as read, like before a message of theirs.
    await seed_messages(server, room, other, 1)
    assert await seen_as(server, token, room) == (1, newest.id)
    await add_change(room, me, EDIT, mine)
    assert await seen_as(server, token, room) == (0, newest.id)


async def test_who_may_mark_a_room_read(server: ChatServer) -> None:
    owner, owner_token = await server.signup()
    _, stranger = await server.signup()
    banned, banned_token = await server.signup()
    res = await server.http.post(
        f"{CHAT}/create",
        json={"name": "secret", "visibility": "private"},
        headers=auth(owner_token),
    )
    private = res.json()["chatRoom"]["ID"]
    public = (await server.create_room(owner_token, "public"))["ID"]
    await seed_messages(server, private, owner, 2)
    never = private + 1000

    # A private room does not exist for a stranger: the 404 of an ID never used.
    hidden = await server.http.post(
        f"{ROOMS}/{private}/read", json={"lastReadId": 1}, headers=auth(stranger)
    )
    unused = await server.http.post(
        f"{ROOMS}/{never}/read", json={"lastReadId": 1}, headers=auth(stranger)
    )
    assert_error(hidden, 404, f"Room {private} does not exist.")
    assert hidden.text == unused.text.replace(str(never), str(private))
    # Banned from a public room: 403; the owner (a member) may.
    ban = await server.http.post(
        f"{ROOMS}/{public}/bans", json={"userId": banned["ID"]}, headers=auth(owner_token)
    )
    assert ban.status_code == 204, ban.text
    refused = await server.http.post(
        f"{ROOMS}/{public}/read", json={"lastReadId": 1}, headers=auth(banned_token)
    )
    assert_error(refused, 403, "banned")
    assert (await mark(server, owner_token, private, MAX_ID))["unread"] == 0
    assert (await mark(server, stranger, public, 1))["lastReadId"] is None
    # No token: 401.
    res = await server.http.post(f"{ROOMS}/{public}/read", json={"lastReadId": 1})
    assert_error(res, 401)


async def test_bad_bodies_are_400_naming_last_read_id(server: ChatServer) -> None:
    _, token = await server.signup()
    room = (await server.create_room(token))["ID"]
    soft = Soft()
    bodies: list[Any] = [
        {},
        {"lastReadID": 1},
        {"lastReadId": None},
        {"lastReadId": -1},
        {"lastReadId": MAX_ID + 1},
        {"lastReadId": 1.5},
        {"lastReadId": True},
        {"lastReadId": "abc"},
        {"lastReadId": [1]},
        {"lastReadId": {"id": 1}},
    ]
    for body in bodies:
        with soft.case(json.dumps(body)):
            res = await server.http.post(f"{ROOMS}/{room}/read", json=body, headers=auth(token))
            assert_error(res, 400, "lastReadId")
    for raw in (b"", b"not json", b"[1]"):
        with soft.case(repr(raw)):
            res = await server.http.post(
                f"{ROOMS}/{room}/read",
                content=raw,
                headers={**auth(token), "content-type": "application/json"},
            )
            assert_error(res, 400)
    soft.done()
    assert [(r["unread"], r["lastReadId"]) for r in await room_list(server, token)] == [(0, None)]
