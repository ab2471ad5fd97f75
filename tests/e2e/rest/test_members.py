"""Rooms with members (SPEC 10): private and direct rooms, roles, kicks, bans, mutes, as
clients use them against the real server, on SQLite and PostgreSQL. The full grid of
who-may-do-what is tests/e2e/test_permissions.py; this file follows the flows and the
error answers."""

from __future__ import annotations

from typing import Any

from ...conftest import ChatServer, auth, close_code, recv_event
from .conftest import ROOMS, Soft, assert_error

CHAT = "/v1/api/chat"


async def _private(server: ChatServer, token: str, name: str = "secret") -> dict[str, Any]:
    res = await server.http.post(
        f"{CHAT}/create", json={"name": name, "visibility": "private"}, headers=auth(token)
    )
    assert res.status_code == 200, res.text
    room: dict[str, Any] = res.json()["chatRoom"]
    return room


async def _listed(server: ChatServer, token: str) -> list[int]:
    res = await server.http.get(ROOMS, headers=auth(token))
    assert res.status_code == 200, res.text
    return [r["ID"] for r in res.json()["chatRooms"]]


async def test_a_private_room_does_not_exist_for_a_stranger(server: ChatServer) -> None:
    owner, owner_token = await server.signup()
    _, stranger = await server.signup()
    room = await _private(server, owner_token)
    assert room["visibility"] == "private"
    assert room["ownerId"] == owner["ID"]
    assert room["role"] == "owner"
    rid = room["ID"]
    got = await server.http.get(f"{CHAT}/rooms/{rid}", headers=auth(owner_token))
    assert got.json() == {"chatRoom": room}
    listed = await server.http.get(ROOMS, headers=auth(owner_token))
    assert listed.json()["chatRooms"] == [room]
    assert rid in await _listed(server, owner_token)
    assert rid not in await _listed(server, stranger)

    never = rid + 1000
    soft = Soft()
    for method, path, body in [
        ("GET", f"{CHAT}/rooms/{{}}", None),
        ("GET", f"{CHAT}/rooms/{{}}/members", None),
        ("GET", f"{CHAT}/rooms/{{}}/messages", None),
        ("GET", f"{CHAT}/rooms/{{}}/presence", None),
        ("PATCH", f"{CHAT}/rooms/{{}}", {"name": "x"}),
        ("DELETE", f"{CHAT}/rooms/{{}}", None),
        ("POST", f"{CHAT}/rooms/{{}}/bans", {"userId": owner["ID"]}),
    ]:
        hidden = await server.http.request(
            method, path.format(rid), json=body, headers=auth(stranger)
        )
        unused = await server.http.request(
            method, path.format(never), json=body, headers=auth(stranger)
        )
        with soft.case(f"{method} {path}"):
            assert hidden.status_code == 404
            # The very answer an ID never used gets, but for the number itself.
            assert hidden.text == unused.text.replace(str(never), str(rid))
    res = await server.http.post(
        f"{CHAT}/room-messages", json={"roomId": rid}, headers=auth(stranger)
    )
    with soft.case("room-messages"):
        assert_error(res, 404, f"Room {rid} does not exist.")
    soft.done()

    # ...nor on the websocket: 404 before the upgrade.
    try:
        async with server.connect(rid, stranger):
            raise AssertionError("a stranger opened a private room's websocket")
    except Exception as exc:
        assert "404" in str(exc)


async def test_invite_by_name_then_kick_closes_the_socket(server: ChatServer) -> None:
    _, owner = await server.signup()
    guest, guest_token = await server.signup()
    rid = (await _private(server, owner))["ID"]
    res = await server.http.post(
        f"{CHAT}/rooms/{rid}/members", json={"userName": guest["UserName"]}, headers=auth(owner)
    )
    assert res.status_code == 201, res.text
    assert res.json() == {
        "member": {"user": {"ID": guest["ID"], "UserName": guest["UserName"]}, "role": "member"}
    }
    again = await server.http.post(
        f"{CHAT}/rooms/{rid}/members", json={"userId": guest["ID"]}, headers=auth(owner)
    )
    assert again.status_code == 200 and again.json() == res.json()
    assert rid in await _listed(server, guest_token)
    members = await server.http.get(f"{CHAT}/rooms/{rid}/members", headers=auth(guest_token))
    assert [m["role"] for m in members.json()["members"]] == ["owner", "member"]

    async with server.connect(rid, guest_token) as ws:
        await recv_event(ws, "join")
        kick = await server.http.delete(
            f"{CHAT}/rooms/{rid}/members/{guest['ID']}", headers=auth(owner)
        )
        assert kick.status_code == 204, kick.text
        assert await close_code(ws) == 1008
        assert ws.close_reason == "removed from the room"
    assert rid not in await _listed(server, guest_token)
    gone = await server.http.get(f"{CHAT}/rooms/{rid}", headers=auth(guest_token))
    assert_error(gone, 404, f"Room {rid} does not exist.")


async def test_mute_refuses_sends_and_stores_nothing(server: ChatServer) -> None:
    _, owner = await server.signup()
    talker, talker_token = await server.signup()
    room = await server.create_room(owner, "public")
    rid = room["ID"]
    async with server.connect(rid, talker_token) as ws:
        await recv_event(ws, "join")
        res = await server.http.post(
            f"{CHAT}/rooms/{rid}/mutes", json={"userId": talker["ID"]}, headers=auth(owner)
        )
        assert res.status_code == 204, res.text
        await ws.send('{"chatMessage": "can you hear me"}')
        error = await recv_event(ws, "error")
        assert error["Body"]["code"] == "muted"
        unmute = await server.http.delete(
            f"{CHAT}/rooms/{rid}/mutes/{talker['ID']}", headers=auth(owner)
        )
        assert unmute.status_code == 204
        await ws.send('{"chatMessage": "and now"}')
        echo = await recv_event(ws, "message")
        assert echo["Body"]["chatMessage"] == "and now"
    history = await server.http.get(f"{CHAT}/rooms/{rid}/messages", headers=auth(owner))
    assert [m["chatMessage"] for m in history.json()["messages"]] == ["and now"]


async def test_a_ban_closes_the_socket_and_refuses_the_public_room(server: ChatServer) -> None:
    _, owner = await server.signup()
    pest, pest_token = await server.signup()
    rid = (await server.create_room(owner, "lobby"))["ID"]
    async with server.connect(rid, pest_token) as ws:
        await recv_event(ws, "join")
        res = await server.http.post(
            f"{CHAT}/rooms/{rid}/bans",
            json={"userId": pest["ID"], "reason": "spam"},
            headers=auth(owner),
        )
        assert res.status_code == 204, res.text
        assert await close_code(ws) == 1008
        assert ws.close_reason == "banned from the room"
    for path in (f"{CHAT}/rooms/{rid}", f"{CHAT}/rooms/{rid}/messages"):
        refused = await server.http.get(path, headers=auth(pest_token))
        assert_error(refused, 403, "You are banned from this room.")
    try:
        async with server.connect(rid, pest_token):
            raise AssertionError("a banned user opened the websocket")
    except Exception as exc:
        assert "403" in str(exc)
    lifted = await server.http.delete(f"{CHAT}/rooms/{rid}/bans/{pest['ID']}", headers=auth(owner))
    assert lifted.status_code == 204
    back = await server.http.get(f"{CHAT}/rooms/{rid}", headers=auth(pest_token))
    assert back.status_code == 200 and back.json()["chatRoom"]["role"] is None


async def test_direct_rooms_are_one_per_pair(server: ChatServer) -> None:
    alice, alice_token = await server.signup()
    bob, bob_token = await server.signup()
    _, carol = await server.signup()
    first = await server.http.post(
        f"{CHAT}/direct", json={"userName": bob["UserName"]}, headers=auth(alice_token)
    )
    assert first.status_code == 200, first.text
    room = first.json()["chatRoom"]
    assert room["visibility"] == "direct" and room["ownerId"] is None and room["role"] == "member"
    back = await server.http.post(
        f"{CHAT}/direct", json={"userId": alice["ID"]}, headers=auth(bob_token)
    )
    assert back.json()["chatRoom"]["ID"] == room["ID"]
    assert room["ID"] not in await _listed(server, carol)
    soft = Soft()
    for method, path, body, status, text in [
        ("POST", "/members", {"userId": alice["ID"]}, 403, "nobody can be added"),
        ("PATCH", "", {"name": "ours"}, 403, "cannot be renamed"),
        ("DELETE", f"/members/{bob['ID']}", None, 403, "cannot be left"),
    ]:
        token = bob_token if path.startswith("/members/") else alice_token
        res = await server.http.request(
            method, f"{CHAT}/rooms/{room['ID']}{path}", json=body, headers=auth(token)
        )
        with soft.case(f"{method} {path}"):
            assert res.status_code == status, res.text
            assert text in res.json()["message"]
    soft.done()
    myself = await server.http.post(
        f"{CHAT}/direct", json={"userId": alice["ID"]}, headers=auth(alice_token)
    )
    assert myself.status_code == 400


async def test_roles_and_their_refusals(server: ChatServer) -> None:
    _, owner = await server.signup()
    mod, mod_token = await server.signup()
    other_mod, _ = await server.signup()
    member, member_token = await server.signup()
    owner_user = (await server.http.get("/v1/api/auth/sessions", headers=auth(owner))).status_code
    assert owner_user == 200
    rid = (await _private(server, owner))["ID"]
    for user in (mod, other_mod, member):
        res = await server.http.post(
            f"{CHAT}/rooms/{rid}/members", json={"userId": user["ID"]}, headers=auth(owner)
        )
        assert res.status_code == 201
    for user in (mod, other_mod):
        res = await server.http.put(
            f"{CHAT}/rooms/{rid}/members/{user['ID']}",
            json={"role": "moderator"},
            headers=auth(owner),
        )
        assert res.status_code == 200 and res.json()["member"]["role"] == "moderator"
    room = (await server.http.get(f"{CHAT}/rooms/{rid}", headers=auth(owner))).json()["chatRoom"]
    owner_id = room["ownerId"]
    soft = Soft()
    cases: list[tuple[str, str, str, Any, int, str]] = [
        (
            "member invites",
            member_token,
            "POST /members",
            {"userId": 1},
            403,
            "owner or a moderator",
        ),
        (
            "mod kicks mod",
            mod_token,
            f"DELETE /members/{other_mod['ID']}",
            None,
            403,
            "other moderators",
        ),
        ("mod bans owner", mod_token, "POST /bans", {"userId": owner_id}, 403, "owner cannot"),
        (
            "mod sets role",
            mod_token,
            f"PUT /members/{member['ID']}",
            {"role": "moderator"},
            403,
            "Only the room's owner",
        ),
        ("owner leaves", owner, f"DELETE /members/{owner_id}", None, 403, "owner cannot leave"),
        ("bad role", owner, f"PUT /members/{member['ID']}", {"role": "owner"}, 400, "role"),
        ("no user", owner, "POST /members", {}, 400, "userId or userName"),
        ("both", owner, "POST /members", {"userId": 1, "userName": "x"}, 400, "userId or userName"),
        (
            "unknown name",
            owner,
            "POST /members",
            {"userName": "nobody-here"},
            404,
            "does not exist",
        ),
        (
            "ban seconds",
            owner,
            "POST /bans",
            {"userId": member["ID"], "seconds": 0},
            400,
            "seconds",
        ),
        ("ban self", owner, "POST /bans", {"userId": owner_id}, 400, "yourself"),
        ("mod deletes", mod_token, "DELETE ", None, 403, "Only the room's owner may delete"),
    ]
    for label, token, route, body, status, text in cases:
        method, _, path = route.partition(" ")
        res = await server.http.request(
            method, f"{CHAT}/rooms/{rid}{path.strip()}", json=body, headers=auth(token)
        )
        with soft.case(label):
            assert res.status_code == status, res.text
            assert text in res.json()["message"], res.text
    soft.done()
    # A moderator may kick a plain member; the member may leave on their own.
    kicked = await server.http.delete(
        f"{CHAT}/rooms/{rid}/members/{member['ID']}", headers=auth(mod_token)
    )
    assert kicked.status_code == 204
    left = await server.http.delete(
        f"{CHAT}/rooms/{rid}/members/{mod['ID']}", headers=auth(mod_token)
    )
    assert left.status_code == 204
    members = await server.http.get(f"{CHAT}/rooms/{rid}/members", headers=auth(owner))
    assert [m["user"]["ID"] for m in members.json()["members"]] == [owner_id, other_mod["ID"]]


async def test_going_private_closes_strangers_and_delete_closes_everyone(
    server: ChatServer,
) -> None:
    _, owner = await server.signup()
    _, visitor = await server.signup()
    rid = (await server.create_room(owner, "soon private"))["ID"]
    async with server.connect(rid, visitor) as ws, server.connect(rid, owner) as mine:
        await recv_event(ws, "join")
        res = await server.http.patch(
            f"{CHAT}/rooms/{rid}", json={"visibility": "private"}, headers=auth(owner)
        )
        assert res.status_code == 200 and res.json()["chatRoom"]["visibility"] == "private"
        assert await close_code(ws) == 1008
        assert ws.close_reason == "room is private now"
        deleted = await server.http.delete(f"{CHAT}/rooms/{rid}", headers=auth(owner))
        assert deleted.status_code == 204
        assert await close_code(mine) == 1001
        assert mine.close_reason == "room deleted"


async def test_a_rename_reaches_live_messages(server: ChatServer) -> None:
    _, owner = await server.signup()
    rid = (await server.create_room(owner, "old name"))["ID"]
    async with server.connect(rid, owner) as ws:
        await recv_event(ws, "join")
        res = await server.http.patch(
            f"{CHAT}/rooms/{rid}", json={"name": "  new name "}, headers=auth(owner)
        )
        assert res.status_code == 200 and res.json()["chatRoom"]["name"] == "new name"

        async def renamed() -> bool:
            await ws.send('{"chatMessage": "which room?"}')
            frame = await recv_event(ws, "message")
            return bool(frame["Body"]["chatRoomName"] == "new name")

        # The rename is read back asynchronously: at most a message or two later.
        for _ in range(50):
            if await renamed():
                break
        else:
            raise AssertionError("live messages kept the old room name")
    bad = await server.http.patch(f"{CHAT}/rooms/{rid}", json={"name": ""}, headers=auth(owner))
    assert_error(bad, 400, "name")
    bad = await server.http.patch(
        f"{CHAT}/rooms/{rid}", json={"visibility": "direct"}, headers=auth(owner)
    )
    assert_error(bad, 400, "visibility")
