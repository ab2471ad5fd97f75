"""Message history over REST: the legacy last-50 and the before/after/limit pages."""

from __future__ import annotations

from typing import Any

from ...conftest import ChatServer, auth
from .conftest import ROOM_MESSAGES, ROOMS, Soft, assert_error, seed_messages

# --------------------------------------------------------------------------- history


async def test_legacy_room_messages_returns_last_50_oldest_first(server: ChatServer) -> None:
    user, token = await server.signup()
    room = await server.create_room(token, "busy")
    other = await server.create_room(token, "other")
    ids = await seed_messages(server, room["ID"], user, 55)
    await seed_messages(server, other["ID"], user, 2)

    res = await server.http.post(ROOM_MESSAGES, json={"roomId": room["ID"]}, headers=auth(token))
    assert res.status_code == 200, res.text
    chats = res.json()["chats"]
    assert [c["ID"] for c in chats] == ids[5:]
    assert [c["chatMessage"] for c in chats] == [f"message {i}" for i in range(5, 55)]
    assert {c["chatRoomId"] for c in chats} == {room["ID"]}
    assert {c["chatRoomName"] for c in chats} == {"busy"}
    assert {c["chatUserId"] for c in chats} == {user["ID"]}
    assert {c["chatUser"] for c in chats} == {user["UserName"]}


async def test_history_before_after_limit(server: ChatServer) -> None:
    user, token = await server.signup()
    room = await server.create_room(token)
    other = await server.create_room(token, "other")
    ids = await seed_messages(server, room["ID"], user, 55)
    await seed_messages(server, other["ID"], user, 3)
    path = f"{ROOMS}/{room['ID']}/messages"

    async def page(**params: Any) -> tuple[list[int], bool]:
        res = await server.http.get(path, params=params, headers=auth(token))
        assert res.status_code == 200, f"{params}: {res.text}"
        body = res.json()
        assert set(body) == {"messages", "hasMore"}
        return [m["ID"] for m in body["messages"]], body["hasMore"]

    # Default: the newest 50, oldest first; hasMore says older ones exist.
    assert await page() == (ids[5:], True)
    assert await page(limit="", before="") == (ids[5:], True)
    assert await page(limit=10) == (ids[45:], True)
    assert await page(limit=55) == (ids, False)
    assert await page(limit=200) == (ids, False)
    assert await page(limit=1) == (ids[54:], True)
    # before: the newest `limit` strictly older than that ID.
    assert await page(before=ids[10], limit=5) == (ids[5:10], True)
    assert await page(before=ids[5], limit=5) == (ids[0:5], False)
    assert await page(before=ids[3], limit=5) == (ids[0:3], False)
    assert await page(before=ids[0]) == ([], False)
    assert await page(before=ids[54]) == (ids[4:54], True)
    # after: the oldest `limit` strictly newer than that ID; hasMore says newer ones exist.
    assert await page(after=ids[0], limit=10) == (ids[1:11], True)
    assert await page(after=ids[44], limit=10) == (ids[45:55], False)
    assert await page(after=ids[49], limit=10) == (ids[50:55], False)
    assert await page(after=ids[54]) == ([], False)
    assert await page(after=0, limit=3) == (ids[0:3], True)
    # Paging backwards with `before` visits every message exactly once.
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 20}
    while True:
        got, more = await page(**params)
        seen = got + seen
        if not more:
            break
        params["before"] = got[0]
    assert seen == ids


async def test_history_bad_query_parameter_is_400_naming_it(server: ChatServer) -> None:
    _, token = await server.signup()
    room = await server.create_room(token)
    path = f"{ROOMS}/{room['ID']}/messages"
    res = await server.http.get(path, headers=auth(token))
    assert res.json() == {"messages": [], "hasMore": False}
    soft = Soft()
    for param, value in [
        ("limit", "0"),
        ("limit", "201"),
        ("limit", "abc"),
        ("limit", "-1"),
        ("limit", "1.5"),
        ("limit", "10abc"),
        ("limit", "99999999999999999999999"),
        ("limit", "²"),
        ("before", "abc"),
        ("before", "-5"),
        ("before", "1e3"),
        ("before", "²"),
        ("after", "abc"),
        ("after", "-1"),
        ("after", "0x10"),
        ("after", "³"),
    ]:
        with soft.case(f"{param}={value!r}"):
            res = await server.http.get(path, params={param: value}, headers=auth(token))
            assert_error(res, 400, param)
    soft.done()
