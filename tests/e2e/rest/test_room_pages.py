"""The room list in pages (SPEC section 11): `?limit=N&after=ID` on GET and POST, the
pages joining to the full list; without parameters, every room as the seed had it."""

from __future__ import annotations

from typing import Any

from chatroom_server.services import rooms as room_service

from ...conftest import ChatServer, auth
from .conftest import ROOMS, Soft, assert_error, room_list


async def _rooms(server: ChatServer, token: str, count: int) -> list[dict[str, Any]]:
    return [await server.create_room(token, f"room {n}") for n in range(count)]


async def _page(
    server: ChatServer, token: str, method: str = "GET", **params: Any
) -> dict[str, Any]:
    res = await server.http.request(method, ROOMS, params=params, headers=auth(token))
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("application/json")
    return res.json()  # type: ignore[no-any-return]


async def test_pages_join_to_the_full_list(server: ChatServer) -> None:
    _, token = await server.signup()
    made = await _rooms(server, token, 23)
    for gone in (made[3], made[10], made[22]):  # deleted rooms leave every page
        await room_service.delete_room(gone["ID"])

    full = await room_list(server, token)
    assert [r["ID"] for r in full] == sorted(
        r["ID"] for r in made if r not in (made[3], made[10], made[22])
    )
    for method in ("GET", "POST"):
        pages: list[list[dict[str, Any]]] = []
        after: int | None = None
        while True:
            params: dict[str, Any] = {"limit": 6}
            if after is not None:
                params["after"] = after
            body = await _page(server, token, method, **params)
            assert set(body) == {"chatRooms", "nextAfter"}
            pages.append(body["chatRooms"])
            after = body["nextAfter"]
            if after is None:
                break
            assert after == body["chatRooms"][-1]["ID"]
        assert [len(p) for p in pages] == [6, 6, 6, 2], method
        assert [r for page in pages for r in page] == full, method


async def test_the_seed_form_lists_every_room_without_next_after(server: ChatServer) -> None:
    _, token = await server.signup()
    made = await _rooms(server, token, 3)
    for method in ("GET", "POST"):
        body = await _page(server, token, method)
        assert set(body) == {"chatRooms"}
        assert [r["ID"] for r in body["chatRooms"]] == [r["ID"] for r in made]
        assert body["chatRooms"][0] == made[0]  # the same ROOM shape as create returns


async def test_a_page_that_ends_the_list_has_no_next(server: ChatServer) -> None:
    _, token = await server.signup()
    made = await _rooms(server, token, 4)
    exact = await _page(server, token, limit=4)
    assert [r["ID"] for r in exact["chatRooms"]] == [r["ID"] for r in made]
    assert exact["nextAfter"] is None
    # `after` alone pages too, at up to 1000 rooms.
    rest = await _page(server, token, after=made[1]["ID"])
    assert [r["ID"] for r in rest["chatRooms"]] == [made[2]["ID"], made[3]["ID"]]
    assert rest["nextAfter"] is None
    # Beyond the last ID: an empty page, and no next.
    for after in (made[-1]["ID"], made[-1]["ID"] + 1000, 2**63 - 1):
        assert await _page(server, token, after=after, limit=10) == {
            "chatRooms": [],
            "nextAfter": None,
        }
    assert (await _page(server, token, limit=1000))["nextAfter"] is None
    assert (await _page(server, token, limit=1))["nextAfter"] == made[0]["ID"]


async def test_bad_page_parameters_are_400_naming_the_parameter(server: ChatServer) -> None:
    _, token = await server.signup()
    await _rooms(server, token, 2)
    soft = Soft()
    bad = {
        "limit": ["0", "1001", "-1", "abc", "1.5", "1e3", " 5", "١٠"],
        "after": ["-1", "x", str(2**63), "0x10", "1.0"],
    }
    for name, values in bad.items():
        for value in values:
            for method in ("GET", "POST"):
                with soft.case(f"{method} {name}={value!r}"):
                    res = await server.http.request(
                        method, ROOMS, params={name: value}, headers=auth(token)
                    )
                    assert_error(res, 400, name)
    soft.done()


async def test_the_json_the_database_builds_is_what_room_json_builds(server: ChatServer) -> None:
    """The list is JSON built by SQL (db/room_list.py): the rooms in it are what create
    returned (protocol.room_json), escapes and timestamps included, full or paged."""
    from datetime import UTC, datetime

    from chatroom_server.db.models import RoomRow

    _, token = await server.signup()
    names = ['quote " and \\ backslash', "ünïcødé 日本 🎉", "tab\tand\u2028line", "plain"]
    made = [await server.create_room(token, name) for name in names]
    # A time on a whole second, and one long ago: SQLite's text has no fraction then.
    await RoomRow.filter(id=made[0]["ID"]).update(
        created_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        updated_at=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    )
    full = (await _page(server, token))["chatRooms"]
    paged = (await _page(server, token, limit=10))["chatRooms"]
    assert full == paged
    assert [r["name"] for r in full] == names
    assert full[0]["CreatedAt"] == "2024-01-02T03:04:05.000000Z"
    assert full[0]["UpdatedAt"] == "1999-12-31T23:59:59.999999Z"
    assert full[1:] == made[1:]
