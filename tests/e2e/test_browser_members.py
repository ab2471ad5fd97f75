"""The web client's rooms with members (SPEC 10) in a real headless Chromium: private
rooms and invitations, the member list with roles, direct messages, kick, ban, mute,
the moderator's limits, leaving, and the folded member list at phone width.

Fixtures and helpers: browser_support.py. Every wait is Playwright's `expect`; the
room list is polled every 5 s by the page, within `expect`'s 10 s.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Locator, Page, Route, expect

from ..conftest import ChatServer, auth
from .browser_support import (
    PHONE,
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


def member(page: Page, name: str) -> Locator:
    """One entry of the open room's member list, by user name."""
    who = page.locator(".who", has_text=re.compile(f"^{re.escape(name)}$"))
    return page.locator("#members li.member").filter(has=who)


def action(page: Page, verb: str, name: str) -> Locator:
    return page.get_by_role("button", name=f"{verb} {name}", exact=True)


async def act(page: Page, verb: str, name: str) -> None:
    """Open the member's actions (a disclosure) if closed, and click one."""
    entry = member(page, name)
    if not await entry.locator("details").evaluate("(d) => d.open"):
        await entry.locator("summary").click()
    await action(page, verb, name).click()


async def invite(page: Page, name: str) -> None:
    await page.get_by_label("Invite someone").fill(name)
    await page.get_by_role("button", name="Invite", exact=True).click()
    await expect(page.locator("#members-note")).to_have_text(f"{name} is a member now.")
    await expect(member(page, name).locator(".role")).to_have_text("member")


async def test_private_room_invite_and_roles(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    await create_room(alice, "design", private=True)
    await sign_up(bob, server, "bob")

    # The list marks the private room with a lock, read out as "(private)".
    private = alice.get_by_role("button", name="design (private)", exact=True)
    await expect(private).to_be_visible()
    await expect(private.locator("svg.lock")).to_have_count(1)
    await expect(
        alice.get_by_role("button", name="lobby", exact=True).locator("svg")
    ).to_have_count(0)
    await expect(alice.locator("#room-kind")).to_have_text("Private room: members only")
    await expect(alice.locator("#members .who")).to_have_text(["alice"])
    await expect(alice.locator("#members li")).to_have_text(["alice owner (you)"])
    # Bob is not a member: the room does not exist for him.
    await expect(bob.get_by_role("button", name="lobby", exact=True)).to_be_visible()
    await expect(bob.locator("#rooms li")).to_have_count(1)

    # Inviting by name: an unknown name is refused in the server's words.
    await alice.get_by_label("Invite someone").fill("nobody")
    await alice.get_by_role("button", name="Invite", exact=True).click()
    await expect(alice.locator("#members-note")).to_have_text('User "nobody" does not exist.')
    await invite(alice, "bob")
    await expect(alice.locator("#members .who")).to_have_text(["alice", "bob"])
    await expect(alice.locator("#members .role")).to_have_text(["owner", "member"])
    await expect(alice.get_by_role("button", name="Leave room")).to_be_hidden()

    # Bob's list shows it at the next poll; he sees the members and their roles.
    await open_room(bob, "design", private=True)
    await expect(bob.locator("#members .who")).to_have_text(["alice", "bob"])
    await expect(bob.locator("#members .role")).to_have_text(["owner", "member"])
    await expect(member(bob, "bob")).to_have_text("bob member (you)")
    # A plain member: no invite box, no moderation, but a direct message and Leave.
    await expect(bob.get_by_label("Invite someone")).to_be_hidden()
    await member(bob, "alice").locator("summary").click()
    await expect(action(bob, "Message", "alice")).to_be_visible()
    for verb in ("Kick", "Ban", "Mute", "Make moderator"):
        await expect(action(bob, verb, "alice")).to_have_count(0)
    await expect(bob.get_by_role("button", name="Leave room")).to_be_visible()

    await send(alice, "members only")
    await expect(message(bob, "members only")).to_be_visible()
    no_trouble(browsing)


async def test_direct_messages_from_the_list_and_by_name(
    server: ChatServer, browsing: Browsing
) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    carol = await browsing.page("carol")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    await sign_up(bob, server, "bob")
    await open_room(bob, "lobby")

    # In a public room the list shows who else is there; Message opens a direct room.
    await expect(member(alice, "bob").locator(".role")).to_have_text("visitor")
    await act(alice, "Message", "bob")
    await expect(alice.locator("#room-title")).to_have_text("bob")
    await expect(alice.locator("#room-kind")).to_have_text("Direct messages")
    await expect(alice.locator("#status")).to_have_text("Connected")
    await expect(alice.locator("#directs-title")).to_be_visible()
    await expect(alice.locator("#directs .room-name")).to_have_text(["bob"])
    # The two of them, no actions, nobody to invite, nothing to leave.
    await expect(alice.locator("#members .who")).to_have_text(["alice", "bob"])
    await expect(alice.locator("#members details")).to_have_count(0)
    await expect(alice.get_by_label("Invite someone")).to_be_hidden()
    await expect(alice.get_by_role("button", name="Leave room")).to_be_hidden()
    await send(alice, "psst, bob")

    # Bob sees it under Direct messages, by alice's name (and its unread badge).
    await expect(bob.locator("#directs .room-name")).to_have_text(["alice"])
    await expect(bob.locator("#directs .badge")).to_have_text(["1 unread"])
    await bob.locator("#directs").get_by_role("button", name="alice", exact=True).click()
    await expect(bob.locator("#room-title")).to_have_text("alice")
    await expect(message(bob, "psst, bob")).to_be_visible()

    # By name: carol writes to alice; asking again from either side is the same room.
    await sign_up(carol, server, "carol")
    await carol.get_by_label("Message someone").fill("carol")
    await carol.get_by_role("button", name="Start chat").click()
    await expect(carol.locator("#direct-error")).to_have_text(
        "A direct room needs another user; you named yourself."
    )
    await carol.get_by_label("Message someone").fill("alice")
    await carol.get_by_role("button", name="Start chat").click()
    await expect(carol.locator("#room-title")).to_have_text("alice")
    await expect(carol.locator("#status")).to_have_text("Connected")
    await send(carol, "hello from carol")
    await expect(alice.locator("#directs .room-name")).to_have_text(["bob", "carol"])
    await alice.get_by_label("Message someone").fill("carol")
    await alice.get_by_role("button", name="Start chat").click()
    await expect(alice.locator("#room-title")).to_have_text("carol")
    await expect(message(alice, "hello from carol")).to_be_visible()
    await expect(alice.locator("#directs li")).to_have_count(2)
    # Bob never sees carol's room.
    await expect(bob.locator("#directs .room-name")).to_have_text(["alice"])
    no_trouble(browsing)


async def test_kick_from_the_member_list(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await sign_up(bob, server, "bob")
    await create_room(alice, "secret", private=True)
    await invite(alice, "bob")
    await open_room(bob, "secret", private=True)
    secret = await room_id(bob)
    await expect(alice.locator("#online li")).to_have_text(["alice (you)", "bob"])

    sockets = room_sockets(bob)
    await act(alice, "Kick", "bob")
    await expect(alice.locator("#members-note")).to_have_text("bob was removed.")
    await expect(alice.locator("#members .who")).to_have_text(["alice"])

    # Bob's page says why, goes back to the list, where the room is no more.
    await expect(bob.locator("#notice")).to_have_text("You were removed from “secret”.")
    await expect(bob.locator("#room-title")).to_have_text("Pick a room")
    await expect(bob.get_by_role("button", name="secret (private)")).to_have_count(0)
    await expect(bob.locator("#status")).to_have_text("Not connected")
    assert await bob.evaluate("location.hash") == ""
    # ... and does not knock again: alice sees him gone and talks on meanwhile.
    await expect(alice.locator("#online li")).to_have_text(["alice (you)"])
    await send(alice, "after bob")
    await expect(message(alice, "after bob")).to_be_visible()
    assert [u for u in sockets if f"room_id={secret}&" in u] == []

    # Deleting the room (1001) ends it for alice's other tab the same way.
    other = await second_tab(browsing, server, alice, f"/#room-{secret}")
    await expect(other.locator("#status")).to_have_text("Connected")
    res = await server.http.delete(
        f"/v1/api/chat/rooms/{secret}", headers=auth(await token_of(alice))
    )
    assert res.status_code == 204
    await expect(other.locator("#notice")).to_have_text("“secret” has been deleted.")
    await expect(other.locator("#room-title")).to_have_text("Pick a room")
    no_trouble(browsing)


async def test_ban_and_mute(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    carol = await browsing.page("carol")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    lobby = await room_id(alice)
    await sign_up(bob, server, "bob")
    await open_room(bob, "lobby")
    await sign_up(carol, server, "carol")
    await open_room(carol, "lobby")
    await expect(alice.locator("#members .who")).to_have_text(["alice", "bob", "carol"])

    # Mute: carol still reads, her send comes back as a notice and is not stored.
    await act(alice, "Mute", "carol")
    await expect(alice.locator("#members-note")).to_have_text("carol is muted.")
    await send(carol, "can you hear me")
    await expect(carol.locator("#room-status")).to_have_text(
        "Muted: You are muted in this room; the message was not sent."
    )
    await expect(carol.locator("#messages li.failed")).to_have_count(1)
    await send(alice, "carol is muted")
    await expect(message(carol, "carol is muted")).to_be_visible()
    await expect(message(bob, "carol is muted")).to_be_visible()
    await expect(message(bob, "can you hear me")).to_have_count(0)
    res = await server.http.get(
        f"/v1/api/chat/rooms/{lobby}/messages", headers=auth(await token_of(alice))
    )
    assert [m["chatMessage"] for m in res.json()["messages"]] == ["carol is muted"]

    # Kicked from a public room: carol is told and taken back to the list, and her
    # page does not reconnect by itself; she may come back (the room is public).
    sockets = room_sockets(carol)
    await act(alice, "Kick", "carol")
    await expect(carol.locator("#notice")).to_have_text("You were removed from “lobby”.")
    await expect(carol.locator("#room-title")).to_have_text("Pick a room")
    await expect(carol.locator("#status")).to_have_text("Not connected")
    await expect(alice.locator("#members .who")).to_have_text(["alice", "bob"])
    assert sockets == []
    await open_room(carol, "lobby")
    await expect(carol.locator("#notice")).to_have_text("")
    await expect(alice.locator("#members .who")).to_have_text(["alice", "bob", "carol"])

    # Ban: bob's page says so and leaves the room; coming back is refused in words.
    await act(alice, "Ban", "bob")
    await expect(alice.locator("#members-note")).to_have_text("bob is banned.")
    await expect(bob.locator("#notice")).to_have_text("You were banned from “lobby”.")
    await expect(bob.locator("#room-title")).to_have_text("Pick a room")
    await bob.get_by_role("button", name="lobby", exact=True).click()
    await expect(bob.locator("#notice")).to_have_text("You are banned from this room.")
    await expect(bob.locator("#room-title")).to_have_text("Pick a room")
    await expect(alice.locator("#members .who")).to_have_text(["alice", "carol"])
    no_trouble(browsing)


async def test_moderator_cannot_act_on_the_owner(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await sign_up(bob, server, "bob")
    carol, _ = await server.signup("carol")
    await create_room(alice, "staff", private=True)
    await invite(alice, "bob")
    await invite(alice, "carol")
    await act(alice, "Make moderator", "bob")
    await expect(alice.locator("#members-note")).to_have_text("bob is a moderator now.")
    await expect(alice.locator("#members .role")).to_have_text(["owner", "moderator", "member"])
    await expect(action(alice, "Make member", "bob")).to_be_visible()

    await open_room(bob, "staff", private=True)
    await expect(bob.locator("#members .role")).to_have_text(["owner", "moderator", "member"])
    # The owner: a direct message, nothing else.
    await member(bob, "alice").locator("summary").click()
    await expect(action(bob, "Message", "alice")).to_be_visible()
    for verb in ("Kick", "Ban", "Mute", "Make moderator", "Make member"):
        await expect(action(bob, verb, "alice")).to_have_count(0)
    # A plain member: kick, ban and mute, but roles are the owner's.
    await member(bob, "carol").locator("summary").click()
    for verb in ("Message", "Kick", "Ban", "Mute"):
        await expect(action(bob, verb, "carol")).to_be_visible()
    await expect(action(bob, "Make moderator", "carol")).to_have_count(0)
    await expect(bob.get_by_label("Invite someone")).to_be_visible()
    await expect(bob.get_by_role("button", name="Leave room")).to_be_visible()

    # Carol is made a moderator while bob's page still shows her as a member (its
    # list is held back): the server refuses bob's kick, and he reads why.
    staff = await room_id(alice)
    members = f"/v1/api/chat/rooms/{staff}/members"
    stale = (await server.http.get(members, headers=auth(await token_of(bob)))).text

    async def held_back(route: Route) -> None:
        if route.request.method == "GET":
            await route.fulfill(status=200, content_type="application/json", body=stale)
        else:
            await route.continue_()

    await bob.route("**/members", held_back)
    res = await server.http.put(
        f"{members}/{carol['ID']}", json={"role": "moderator"}, headers=auth(await token_of(alice))
    )
    assert res.status_code == 200, res.text
    await action(bob, "Kick", "carol").click()
    await expect(bob.locator("#members-note")).to_have_text(
        "Moderators cannot act on other moderators; only the owner can."
    )
    await expect(alice.locator("#members .who")).to_have_text(["alice", "bob", "carol"])
    no_trouble(browsing)


async def test_leave(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await sign_up(bob, server, "bob")
    await create_room(alice, "lobby")
    await create_room(alice, "club", private=True)
    await invite(alice, "bob")

    # Not in a public room where bob is no member (the server would answer 204 and
    # change nothing), and never for the owner.
    await open_room(bob, "lobby")
    await expect(bob.locator("#members .who")).to_have_text(["alice", "bob"])
    await expect(bob.get_by_role("button", name="Leave room")).to_be_hidden()
    await expect(alice.get_by_role("button", name="Leave room")).to_be_hidden()

    await open_room(bob, "club", private=True)
    await expect(alice.locator("#online li")).to_have_text(["alice (you)", "bob"])
    await bob.get_by_role("button", name="Leave room").click()
    await expect(bob.locator("#notice")).to_have_text("You left “club”.")
    await expect(bob.locator("#room-title")).to_have_text("Pick a room")
    await expect(bob.get_by_role("button", name="club (private)")).to_have_count(0)
    await expect(bob.locator("#status")).to_have_text("Not connected")
    # Alice sees him go from the members, not only from the online list.
    await expect(alice.locator("#members .who")).to_have_text(["alice"])
    await expect(alice.locator("#online li")).to_have_text(["alice (you)"])
    no_trouble(browsing)


async def test_member_list_folds_away_at_phone_width(
    server: ChatServer, browsing: Browsing
) -> None:
    phone = await browsing.page("alice", viewport=PHONE)
    await sign_up(phone, server, "alice")
    await create_room(phone, "pocket", private=True)
    panel = phone.locator("#members-panel")
    toggle = phone.get_by_role("button", name="Members")
    await expect(panel).to_be_hidden()
    await expect(phone.locator("#scroller")).to_be_visible()
    await toggle.click()
    await expect(panel).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(phone.locator("#members li")).to_have_text(["alice owner (you)"])
    await expect(phone.get_by_label("Invite someone")).to_be_visible()
    await expect(phone.locator("#scroller")).to_be_hidden()
    await toggle.click()
    await expect(panel).to_be_hidden()
    await expect(phone.locator("#scroller")).to_be_visible()

    # At desktop width the list is always there and the button is not.
    desk = await second_tab(browsing, server, phone)
    await open_room(desk, "pocket", private=True)
    await expect(desk.locator("#members-panel")).to_be_visible()
    await expect(desk.get_by_role("button", name="Members")).to_be_hidden()
    no_trouble(browsing)
