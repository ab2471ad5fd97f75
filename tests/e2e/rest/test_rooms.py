"""Rooms over REST: creating them, the room-messages body, unknown and deleted rooms,
presence (SPEC sections 4 and 7).
"""

from __future__ import annotations

import json
from typing import Any

from chatroom_server.services import rooms as room_service

from ...conftest import ChatServer, auth
from .conftest import (
    CREATE,
    ROOM_MESSAGES,
    ROOMS,
    Soft,
    assert_error,
    bad_auth_headers,
    room_list,
    seed_messages,
)

# --------------------------------------------------------------------------- rooms: create


async def test_create_room_bad_name_is_400(server: ChatServer) -> None:
    _, token = await server.signup()
    soft = Soft()
    bad: list[dict[str, Any]] = [
        {},
        {"title": "x"},
        {"name": None},
        {"name": 123},
        {"name": ["x"]},
        {"name": {"x": 1}},
        {"name": True},
        {"name": ""},
        {"name": " "},
        {"name": " \t  "},
        {"name": "a" * 101},
        {"name": "日" * 101},
        {"name": "  " + "a" * 101},
    ]
    for body in bad:
        with soft.case(f"body={json.dumps(body)[:40]}"):
            res = await server.http.post(CREATE, json=body, headers=auth(token))
            assert_error(res, 400, "name")
    soft.done()
    assert await room_list(server, token) == []


async def test_create_room_name_limit_counts_characters_after_trimming(
    server: ChatServer,
) -> None:
    _, token = await server.signup()
    for name, stored in (
        ("a" * 100, "a" * 100),
        ("日" * 100, "日" * 100),
        ("   " + "b" * 100 + "  ", "b" * 100),
        ("x", "x"),
    ):
        res = await server.http.post(CREATE, json={"name": name}, headers=auth(token))
        assert res.status_code == 200, res.text
        assert res.json()["chatRoom"]["name"] == stored


# --------------------------------------------------------------------------- room-messages body


async def test_room_messages_bad_room_id_is_400_naming_it(server: ChatServer) -> None:
    _, token = await server.signup()
    room = await server.create_room(token)
    soft = Soft()
    for body in [
        {},
        {"roomID": room["ID"]},
        {"roomId": None},
        {"roomId": "abc"},
        {"roomId": [room["ID"]]},
        {"roomId": {"id": 1}},
        {"roomId": True},
        {"roomId": 1.5},
        {"roomId": ""},
        {"roomId": "1abc"},
    ]:
        with soft.case(f"body={json.dumps(body)}"):
            res = await server.http.post(ROOM_MESSAGES, json=body, headers=auth(token))
            assert_error(res, 400, "roomId")
    # Seed clients send the ID as a number or as a string; both are fine.
    for value in (room["ID"], str(room["ID"])):
        with soft.case(f"roomId={value!r} accepted"):
            res = await server.http.post(ROOM_MESSAGES, json={"roomId": value}, headers=auth(token))
            assert res.status_code == 200, res.text
            assert res.json() == {"chats": []}
    soft.done()


# ----------------------------------------------------------------- unknown / deleted rooms


async def test_unknown_room_is_404(server: ChatServer) -> None:
    _, token = await server.signup()
    room = await server.create_room(token)
    for room_id in (room["ID"] + 1000, 999_999_999):
        res = await server.http.post(ROOM_MESSAGES, json={"roomId": room_id}, headers=auth(token))
        assert_error(res, 404)
        assert_error(await server.http.get(f"{ROOMS}/{room_id}/messages", headers=auth(token)), 404)


async def test_out_of_range_room_id_is_404_not_a_server_error(server: ChatServer) -> None:
    """IDs beyond a 64-bit integer name no room; they must not reach the database."""
    _, token = await server.signup()
    soft = Soft()
    for room_id in (2**63, 2**70):
        with soft.case(f"room-messages roomId={room_id}"):
            res = await server.http.post(
                ROOM_MESSAGES, json={"roomId": room_id}, headers=auth(token)
            )
            assert res.status_code in (400, 404), res.text
            assert_error(res, res.status_code)
        with soft.case(f"GET rooms/{room_id}/messages"):
            res = await server.http.get(f"{ROOMS}/{room_id}/messages", headers=auth(token))
            assert_error(res, 404)
    soft.done()


async def test_deleted_room_is_404_and_leaves_the_list(server: ChatServer) -> None:
    user, token = await server.signup()
    keep = await server.create_room(token, "keep")
    gone = await server.create_room(token, "gone")
    await seed_messages(server, gone["ID"], user, 3)
    res = await server.http.get(f"{ROOMS}/{gone['ID']}/messages", headers=auth(token))
    assert res.status_code == 200 and len(res.json()["messages"]) == 3

    await room_service.delete_room(gone["ID"])

    res = await server.http.post(ROOM_MESSAGES, json={"roomId": gone["ID"]}, headers=auth(token))
    assert_error(res, 404)
    res = await server.http.get(f"{ROOMS}/{gone['ID']}/messages", headers=auth(token))
    assert_error(res, 404)
    for method in ("GET", "POST"):
        res = await server.http.request(method, ROOMS, json={}, headers=auth(token))
        assert res.status_code == 200
        assert res.json() == {"chatRooms": [keep]}
    # The room that stays is unaffected.
    res = await server.http.post(ROOM_MESSAGES, json={"roomId": keep["ID"]}, headers=auth(token))
    assert res.status_code == 200 and res.json() == {"chats": []}


async def test_presence_errors(server: ChatServer) -> None:
    """GET /v1/api/chat/rooms/<id>/presence: Bearer, 404 for unknown or deleted rooms."""
    user, token = await server.signup()
    room = await server.create_room(token)
    path = f"{ROOMS}/{room['ID']}/presence"

    res = await server.http.get(path, headers=auth(token))
    assert res.status_code == 200, res.text
    assert res.json() == {"users": [], "connections": 0}

    soft = Soft()
    for kind, headers in bad_auth_headers(user, token).items():
        with soft.case(kind):
            assert_error(await server.http.get(path, headers=headers), 401)
    soft.done()

    res = await server.http.get(f"{ROOMS}/{room['ID'] + 1000}/presence", headers=auth(token))
    assert_error(res, 404)
    await room_service.delete_room(room["ID"])
    assert_error(await server.http.get(path, headers=auth(token)), 404)
