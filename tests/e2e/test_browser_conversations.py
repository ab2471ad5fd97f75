"""The web client's conversations (SPEC 12, protocol v2) in a real headless Chromium:
editing and deleting messages (one's own, and others' as a room's owner or
moderator), "alice is typing…", and unread badges that clear when the room is read,
in another tab of the same user too.

Fixtures and helpers: browser_support.py. Every wait is Playwright's `expect` (or a
websocket event); the room list is polled every 5 s by the page, within `expect`'s
10 s. A few waits are shorter on purpose: where the client's fallback (a typing
line's expiry) would otherwise hide a broken feature.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Locator, Page, Route, WebSocket, expect

from ..conftest import ChatServer, auth
from .browser_support import (
    Browsing,
    create_room,
    message,
    no_trouble,
    open_room,
    room_id,
    room_sockets,
    second_tab,
    send,
    sign_up,
    token_of,
)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def server_settings() -> dict[str, Any]:
    return {"ping_interval": 2.0, "ws_rate": 1000.0, "ws_burst": 1000}


def action(page: Page, text: str, verb: str) -> Locator:
    """A message's own action button (Edit, Delete, Yes, delete, Cancel)."""
    return message(page, text).get_by_role("button", name=verb, exact=True)


def badge(page: Page, room: str) -> Locator:
    """The unread badge beside a room in the list."""
    button = page.get_by_role("button", name=room, exact=True)
    return page.locator("#rooms li, #directs li").filter(has=button).locator(".badge")


async def history(server: ChatServer, token: str, room: int) -> list[dict[str, Any]]:
    res = await server.http.get(f"/v1/api/chat/rooms/{room}/messages", headers=auth(token))
    assert res.status_code == 200, res.text
    return res.json()["messages"]  # type: ignore[no-any-return]


async def room_state(server: ChatServer, token: str, room: int) -> tuple[int, int | None]:
    """The user's (unread, lastReadId) in the room, as the server has them."""
    res = await server.http.get(f"/v1/api/chat/rooms/{room}", headers=auth(token))
    assert res.status_code == 200, res.text
    body = res.json()["chatRoom"]
    return body["unread"], body["lastReadId"]


async def test_edit_own_message(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    await sign_up(bob, server, "bob")
    await open_room(bob, "lobby")
    await send(alice, "frist")
    await send(alice, "keep me")
    await expect(message(bob, "keep me")).to_be_visible()

    # Escape cancels: nothing changes, anywhere.
    await action(alice, "frist", "Edit").click()
    box = alice.get_by_label("Edit message")
    await expect(box).to_be_focused()
    await expect(box).to_have_value("frist")
    await box.fill("never mind")
    await box.press("Escape")
    await expect(box).to_have_count(0)
    await expect(message(alice, "frist").locator(".edited")).to_have_count(0)
    await expect(action(alice, "frist", "Edit")).to_be_focused()

    # Enter saves: both pages show the new text, marked "(edited)".
    await action(alice, "frist", "Edit").click()
    await box.fill("first")
    await box.press("Enter")
    await expect(box).to_have_count(0)
    for page in (alice, bob):
        await expect(message(page, "first").locator(".edited")).to_have_text("(edited)")
        await expect(message(page, "frist")).to_have_count(0)
    await expect(bob.locator("#messages li.msg .text")).to_have_text(["first", "keep me"])

    # Missed while offline: replayed on reconnect, from the cursor past the edit
    # (its eventId is larger than every message ID).
    sockets = room_sockets(bob)
    await bob.context.set_offline(True)
    await expect(bob.locator("#status")).to_contain_text("Offline")
    await action(alice, "keep me", "Edit").click()
    await box.fill("kept")
    await box.press("Enter")
    await expect(message(alice, "kept").locator(".edited")).to_have_text("(edited)")
    await bob.context.set_offline(False)
    await expect(message(bob, "kept").locator(".edited")).to_have_text("(edited)")
    await expect(bob.locator("#messages li.msg .text")).to_have_text(["first", "kept"])
    lobby = await room_id(bob)
    newest_message = max(m["ID"] for m in await history(server, await token_of(bob), lobby))
    (url,) = sockets
    query = parse_qs(urlsplit(url).query)
    assert query["v"] == ["2"]
    assert int(query["since"][0]) > newest_message, "the cursor counts the edit's eventId"

    # History shows the current text, marked edited, after a reload.
    await bob.reload()
    await expect(bob.locator("#messages li.msg .text")).to_have_text(["first", "kept"])
    await expect(bob.locator("#messages li.msg .edited")).to_have_count(2)
    no_trouble(browsing)


async def test_delete_own_message(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    await sign_up(bob, server, "bob")
    await open_room(bob, "lobby")
    await send(alice, "oops")
    await send(alice, "stays")
    await expect(message(bob, "stays")).to_be_visible()

    # It asks first, in place (no page dialog): Cancel keeps the message.
    await action(alice, "oops", "Delete").click()
    await expect(message(alice, "oops").get_by_role("group")).to_have_text(
        re.compile("Delete for everyone?")
    )
    await action(alice, "oops", "Cancel").click()
    await expect(action(alice, "oops", "Yes, delete")).to_have_count(0)
    await expect(action(alice, "oops", "Delete")).to_be_focused()

    await action(alice, "oops", "Delete").click()
    await action(alice, "oops", "Yes, delete").click()
    for page in (alice, bob):
        await expect(message(page, "oops")).to_have_count(0)
        await expect(page.locator("#messages li.msg .text")).to_have_text(["stays"])
    await bob.reload()
    await expect(bob.locator("#messages li.msg .text")).to_have_text(["stays"])
    no_trouble(browsing)


async def test_owner_deletes_a_members_message(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    await sign_up(bob, server, "bob")
    await open_room(bob, "lobby")
    await send(alice, "welcome")
    await send(bob, "spam")
    await expect(message(alice, "spam")).to_be_visible()

    # Bob, no staff here: his own message has both actions, alice's none.
    await expect(action(bob, "spam", "Edit")).to_have_count(1)
    await expect(action(bob, "spam", "Delete")).to_have_count(1)
    await expect(message(bob, "welcome").locator(".msg-actions button")).to_have_count(0)
    # Alice owns the room: she may delete bob's message, not edit it.
    await expect(action(alice, "spam", "Edit")).to_have_count(0)
    await action(alice, "spam", "Delete").click()
    await action(alice, "spam", "Yes, delete").click()
    for page in (alice, bob):
        await expect(message(page, "spam")).to_have_count(0)
    await expect(message(bob, "welcome")).to_be_visible()
    no_trouble(browsing)


async def test_a_moderators_actions_follow_the_role(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await sign_up(bob, server, "bob")
    _, carol_token = await server.signup("carol")
    await create_room(alice, "staff", private=True)
    staff = await room_id(alice)
    alice_auth = auth(await token_of(alice))
    members = f"/v1/api/chat/rooms/{staff}/members"
    for name in ("bob", "carol"):
        res = await server.http.post(members, json={"userName": name}, headers=alice_auth)
        assert res.status_code == 201, res.text
    await expect(alice.get_by_role("button", name="staff (private)")).to_be_visible()
    await open_room(bob, "staff", private=True)
    async with server.connect(staff, carol_token) as ws:
        await ws.send(json.dumps({"chatRoomId": staff, "chatMessage": "carol's note"}))
        await expect(message(bob, "carol's note")).to_be_visible()

    # A member: nothing on carol's message.
    await expect(message(bob, "carol's note").locator(".msg-actions button")).to_have_count(0)
    # Made a moderator, bob may delete it (at the page's next room-list poll).
    listed = (await server.http.get(members, headers=alice_auth)).json()["members"]
    bob_id = next(m["user"]["ID"] for m in listed if m["user"]["UserName"] == "bob")
    res = await server.http.put(
        f"{members}/{bob_id}", json={"role": "moderator"}, headers=alice_auth
    )
    assert res.status_code == 200, res.text
    await expect(action(bob, "carol's note", "Delete")).to_be_visible()
    await expect(action(bob, "carol's note", "Edit")).to_have_count(0)
    await action(bob, "carol's note", "Delete").click()
    await action(bob, "carol's note", "Yes, delete").click()
    await expect(message(alice, "carol's note")).to_have_count(0)
    await expect(message(bob, "carol's note")).to_have_count(0)
    assert await history(server, carol_token, staff) == []
    no_trouble(browsing)


async def test_typing_indicator(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    carol = await browsing.page("carol")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    for page, name in ((bob, "bob"), (carol, "carol")):
        await sign_up(page, server, name)
        await open_room(page, "lobby")
    composer = {page: page.get_by_label("Message", exact=True) for page in (alice, bob)}

    # Alice types: the others see it, she does not; it goes away by itself.
    await composer[alice].fill("hel")
    for page in (bob, carol):
        await expect(page.locator("#typing")).to_have_text("alice is typing…")
        await expect(page.locator("#typing .who")).to_have_text(["alice"])
    await expect(alice.locator("#typing")).to_have_text("")
    await expect(bob.locator("#typing")).to_have_text("")

    # Two at once; alice's message ends hers at once (well before the expiry).
    await composer[alice].fill("hello")
    await expect(carol.locator("#typing")).to_have_text("alice is typing…")
    await composer[bob].fill("hi")
    await expect(carol.locator("#typing")).to_have_text("alice and bob are typing…")
    await expect(alice.locator("#typing")).to_have_text("bob is typing…")
    await composer[alice].press("Enter")
    await expect(message(carol, "hello")).to_be_visible()
    await expect(carol.locator("#typing")).to_have_text("bob is typing…", timeout=1500)
    await expect(carol.locator("#typing")).to_have_text("")
    no_trouble(browsing)


async def test_unread_badges_clear_when_read_in_any_tab(
    server: ChatServer, browsing: Browsing
) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    lobby = await room_id(alice)
    await create_room(alice, "side")
    await sign_up(bob, server, "bob")
    await open_room(bob, "side")
    token = await token_of(bob)
    # Bob's second tab (another page, the same session), also in "side".
    other = await second_tab(browsing, server, bob)
    other_sockets: list[WebSocket] = []
    other.on("websocket", lambda ws: other_sockets.append(ws))
    await open_room(other, "side")

    await open_room(alice, "lobby")
    await send(alice, "one")
    await send(alice, "two")
    # Messages in a room not open: a badge on it in both tabs, none on the open room.
    for page in (bob, other):
        await expect(badge(page, "lobby")).to_have_text("2 unread")
        await expect(
            page.get_by_role("button", name="lobby", exact=True)
        ).to_have_accessible_description("2 unread")
        await expect(badge(page, "side")).to_have_count(0)
    assert await room_state(server, token, lobby) == (2, None)

    # The second tab's room list is held back from now on (it still says 2 unread):
    # only the `read` event can clear its badge.
    stale = (await server.http.get("/v1/api/chat/rooms", headers=auth(token))).text

    async def held_back(route: Route) -> None:
        if route.request.method == "GET":
            await route.fulfill(status=200, content_type="application/json", body=stale)
        else:
            await route.continue_()

    await other.route("**/v1/api/chat/rooms", held_back)

    # Opening the room reads it: its badge goes here, and in the other tab.
    await open_room(bob, "lobby")
    await expect(badge(bob, "lobby")).to_have_count(0)
    await expect(badge(other, "lobby")).to_have_count(0)
    newest = max(m["ID"] for m in await history(server, token, lobby))
    assert await room_state(server, token, lobby) == (0, newest)

    # A message arriving in the open room (the tab visible) is read at once: the
    # other tab hears of it (after the server stored it).
    (socket,) = other_sockets

    def read_beyond(payload: str | bytes) -> bool:
        frame = json.loads(payload)
        body = frame["Body"]
        return bool(
            frame["Event"] == "read" and body["chatRoomId"] == lobby and body["lastReadId"] > newest
        )

    async with socket.expect_event("framereceived", predicate=read_beyond):
        await send(alice, "three")
        await expect(message(bob, "three")).to_be_visible()
    newest = max(m["ID"] for m in await history(server, token, lobby))
    assert await room_state(server, token, lobby) == (0, newest)

    # Back in "side", the room list has no badge on lobby; a new message brings one.
    await open_room(bob, "side")
    await expect(badge(bob, "lobby")).to_have_count(0)
    await send(alice, "four")
    await expect(badge(bob, "lobby")).to_have_text("1 unread")
    no_trouble(browsing)
