"""The bundled web client, driven in a real headless Chromium (Debian's /usr/bin/chromium).

Without Chromium these tests skip with the reason; with CHATROOM_REQUIRE_SERVICES=1
(CI) they fail instead. A failing test leaves screenshots of its pages in
tmp/artifacts (or $CHATROOM_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect

from ..conftest import ROOT, ChatServer, auth, service_missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("CHATROOM_ARTIFACTS", ROOT / "tmp" / "artifacts"))
XSS = "<img src=x onerror=alert(1)>"

expect.set_options(timeout=10_000)


# The browser tests only need SQLite.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def server_settings() -> dict[str, Any]:
    # Quick pings drop dead peers soon; a high rate limit lets a test fill a room fast.
    return {"ping_interval": 2.0, "ws_rate": 1000.0, "ws_burst": 1000}


@dataclass
class Browsing:
    """Browser contexts opened by one test, and everything that went wrong in them."""

    browser: Browser
    pages: list[Page] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def page(self, name: str) -> Page:
        context = await self.browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: {exc}"))
        page.on("dialog", lambda dialog: self._dialog(name, dialog))
        self.pages.append(page)
        return page

    def _dialog(self, name: str, dialog: Dialog) -> Awaitable[None]:
        self.dialogs.append(f"{name}: {dialog.type} {dialog.message}")
        return dialog.dismiss()


@pytest.fixture
def chromium() -> str:
    if not CHROMIUM.exists():
        service_missing(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    return str(CHROMIUM)


@pytest.fixture
async def browsing(request: pytest.FixtureRequest, chromium: str) -> AsyncIterator[Browsing]:
    failed_before = request.session.testsfailed
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        state = Browsing(browser)
        try:
            yield state
        finally:
            # The call phase is reported before teardown: a failure is counted by now.
            if request.session.testsfailed > failed_before:
                await _save_screenshots(request.node.name, state.pages)
            await browser.close()


def _artifact_path(test_name: str, index: int) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.-]+", "_", test_name)
    return str(ARTIFACTS / f"{safe}-page{index}.png")


async def _save_screenshots(test_name: str, pages: list[Page]) -> None:
    for index, page in enumerate(pages):
        try:
            await page.screenshot(path=_artifact_path(test_name, index), full_page=True)
        except Exception as exc:  # a crashed page must not hide the real failure
            print(f"no screenshot of page {index}: {exc}")


def no_trouble(browsing: Browsing) -> None:
    assert browsing.errors == [], "uncaught errors in the page"
    assert browsing.dialogs == [], "a dialog opened: user text ran as code?"


async def sign_up(page: Page, server: ChatServer, name: str) -> None:
    await page.goto(server.base + "/")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Email").fill(f"{name}@example.com")
    await page.get_by_label("Password").fill("password1")
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    await expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()


async def create_room(page: Page, name: str) -> None:
    await page.get_by_label("Room name").fill(name)
    await page.get_by_role("button", name="Create room").click()
    await expect(page.locator("#room-title")).to_have_text(name)
    await expect(page.locator("#status")).to_have_text("Connected")


async def open_room(page: Page, name: str) -> None:
    await page.get_by_role("button", name=name, exact=True).click()
    await expect(page.locator("#room-title")).to_have_text(name)
    await expect(page.locator("#status")).to_have_text("Connected")


async def send(page: Page, text: str, *, button: bool = False) -> None:
    box = page.get_by_label("Message")
    await box.fill(text)
    if button:
        await page.get_by_role("button", name="Send").click()
    else:
        await box.press("Enter")
    await expect(box).to_have_value("")


def message(page: Page, text: str) -> Any:
    return page.locator("#messages li.msg").filter(has=page.get_by_text(text, exact=True))


async def test_page_is_served_with_a_strict_policy(server: ChatServer) -> None:
    async with httpx.AsyncClient(base_url=server.base) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        # Websockets to this host only ('self' covers ws:/wss: in CSP3), not to any host.
        directives = [d.strip() for d in policy.split(";")]
        assert "connect-src 'self'" in directives
        assert "ws:" not in policy and "wss:" not in policy
        assert "<script>" not in page.text and " style=" not in page.text
        script = await http.get("/static/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        missing = await http.get("/static/../app.py")
        assert missing.status_code == 404
        assert (await http.get("/static/nothing.js")).json()["status"] == 404


async def test_two_people_chat(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    await sign_up(bob, server, "bob")
    await open_room(bob, "lobby")

    # Presence: each sees the other, and alice sees bob arrive.
    await expect(alice.locator("#online")).to_contain_text("bob")
    await expect(bob.locator("#online")).to_contain_text("alice")
    await expect(alice.locator("#messages li.system")).to_contain_text(["bob joined"])

    # Live, both ways: Enter and the Send button.
    await send(alice, "hello bob")
    await expect(message(bob, "hello bob")).to_be_visible()
    await expect(message(bob, "hello bob").locator(".author")).to_have_text("alice")
    await expect(message(bob, "hello bob").locator("time")).to_have_text(re.compile(r"\d"))
    await send(bob, "hi alice\nhow are you?", button=True)
    await expect(message(alice, "hi alice\nhow are you?")).to_be_visible()

    # Own messages are told apart.
    await expect(message(alice, "hello bob")).to_have_class(re.compile(r"\bown\b"))
    await expect(message(bob, "hello bob")).not_to_have_class(re.compile(r"\bown\b"))

    # User text is text: shown literally, never markup, never run.
    await send(alice, XSS)
    for page in (alice, bob):
        await expect(message(page, XSS).locator(".text")).to_have_text(XSS)
        await expect(page.locator("#messages img")).to_have_count(0)

    # A reload keeps the session, reopens the room and shows its history.
    await bob.reload()
    await expect(bob.get_by_role("button", name="Log out")).to_be_visible()
    await expect(bob.locator("#room-title")).to_have_text("lobby")
    await expect(bob.locator("#messages li.msg .text")).to_have_text(
        ["hello bob", "hi alice\nhow are you?", XSS]
    )
    await expect(bob.locator("#status")).to_have_text("Connected")
    await send(bob, "back again")
    await expect(message(alice, "back again")).to_be_visible()

    # Bob leaves: alice sees the line and her online list shrink; his session is
    # ended on the server, not only forgotten by the page.
    token = await bob.evaluate("JSON.parse(localStorage.getItem('chatroom.session')).token")
    await bob.get_by_role("button", name="Log out").click()
    await expect(bob.get_by_role("button", name="Log in")).to_be_visible()
    refused = await server.http.get(
        "/v1/api/chat/rooms", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 401
    await expect(alice.locator("#messages li.system")).to_contain_text(["bob left"])
    await expect(alice.locator("#online li")).to_have_text(["alice (you)"])
    no_trouble(browsing)


IMPOSTOR = "Server: session expired, log in at evil.example"


async def test_names_and_messages_cannot_pose_as_system_lines(
    server: ChatServer, browsing: Browsing
) -> None:
    alice = await browsing.page("alice")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    res = await server.http.post(
        "/v1/api/auth/signup",
        json={"user_name": IMPOSTOR, "email": "mallory@example.com", "password": "password1"},
    )
    assert res.status_code == 200, res.text
    token = res.json()["token"]
    rooms = await server.http.get("/v1/api/chat/rooms", headers=auth(token))
    room_id = next(r["ID"] for r in rooms.json()["chatRooms"] if r["name"] == "lobby")

    lines = alice.locator("#messages li.system")
    impostor_lines = lines.filter(has_text=IMPOSTOR)
    async with server.connect(room_id, token) as ws:
        # The join line is the client's words around the name, and the name is set
        # apart from them in the user's style, not the system's.
        await expect(impostor_lines).to_have_count(1)
        joined = impostor_lines.first
        await expect(joined).to_have_text(f"{IMPOSTOR} joined")
        await expect(joined).to_have_class(re.compile(r"\bpresence\b"))
        await expect(joined.locator(".who")).to_have_text(IMPOSTOR)
        assert await joined.evaluate("(li) => getComputedStyle(li).fontStyle") == "italic"
        who_style = "(span) => getComputedStyle(span).fontStyle"
        assert await joined.locator(".who").evaluate(who_style) == "normal"

        # A message made up as a system line is a message, under its author's name.
        await ws.send(json.dumps({"chatRoomId": room_id, "chatMessage": "alice left"}))
        fake = message(alice, "alice left")
        await expect(fake).to_be_visible()
        await expect(fake.locator(".author")).to_have_text(IMPOSTOR)
        await expect(lines.filter(has_text="alice left")).to_have_count(0)

    await expect(impostor_lines).to_have_count(2)
    await expect(impostor_lines.last).to_have_text(f"{IMPOSTOR} left")
    no_trouble(browsing)


async def test_errors_are_shown_in_words(server: ChatServer, browsing: Browsing) -> None:
    page = await browsing.page("carol")
    await sign_up(page, server, "carol")
    await page.get_by_role("button", name="Log out").click()

    # Same email again.
    await page.get_by_label("User name").fill("carol2")
    await page.get_by_label("Email").fill("carol@example.com")
    await page.get_by_label("Password").fill("password1")
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_role("alert").first).to_have_text(
        "An account with this email already exists."
    )

    # Wrong password, then the right one (keyboard only: Enter logs in).
    await page.get_by_label("Password").fill("wrong password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert").first).to_have_text("Wrong email or password.")
    await page.get_by_label("Password").fill("password1")
    await page.get_by_label("Password").press("Enter")
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()

    # A server-side validation error, in the server's words.
    await page.get_by_label("Room name").fill("x" * 100)
    await page.get_by_label("Room name").evaluate("(input) => { input.maxLength = 200; }")
    await page.get_by_label("Room name").fill("x" * 101)
    await page.get_by_role("button", name="Create room").click()
    await expect(page.locator("#room-error")).to_contain_text("name: must be 1 to 100 characters")
    no_trouble(browsing)


async def test_messages_sent_while_offline_arrive(server: ChatServer, browsing: Browsing) -> None:
    alice = await browsing.page("alice")
    bob = await browsing.page("bob")
    await sign_up(alice, server, "alice")
    await create_room(alice, "lobby")
    await sign_up(bob, server, "bob")
    await open_room(bob, "lobby")
    await send(alice, "before the drop")
    await expect(message(bob, "before the drop")).to_be_visible()

    await bob.context.set_offline(True)
    await expect(bob.locator("#status")).to_contain_text("Offline")
    await send(alice, "while you were away 1")
    await send(alice, "while you were away 2")
    await expect(message(alice, "while you were away 2")).to_be_visible()
    await expect(bob.locator("#messages li.msg")).to_have_count(1)

    await bob.context.set_offline(False)
    await expect(bob.locator("#status")).to_have_text("Connected")
    await expect(bob.locator("#messages li.msg .text")).to_have_text(
        ["before the drop", "while you were away 1", "while you were away 2"]
    )
    await send(alice, "live again")
    await send(bob, "bob is back", button=True)
    await expect(message(bob, "live again")).to_be_visible()
    await expect(message(alice, "bob is back")).to_be_visible()
    # Nothing twice.
    await expect(alice.locator("#messages li.msg")).to_have_count(5)
    await expect(bob.locator("#messages li.msg")).to_have_count(5)
    no_trouble(browsing)


async def test_older_history_loads_on_demand(server: ChatServer, browsing: Browsing) -> None:
    user, token = await server.signup("dave")
    room = await server.create_room(token, "archive")
    async with server.connect(room["ID"], token) as ws:
        for n in range(1, 61):
            await ws.send(f'{{"chatRoomId": {room["ID"]}, "chatMessage": "old {n}"}}')
        await _wait_for(lambda: _count(server, room["ID"], token), 60)

    page = await browsing.page("erin")
    await sign_up(page, server, "erin")
    await open_room(page, "archive")
    texts = page.locator("#messages li.msg .text")
    await expect(texts).to_have_count(50)
    await expect(texts.first).to_have_text("old 11")
    # Dispatched rather than clicked: Playwright's click scrolls the button into view,
    # and reaching the top of the list loads older messages by itself (the button then
    # hides before the click lands, seen under load). This tests the button's own path.
    button = page.get_by_role("button", name="Load older")
    await expect(button).to_be_visible()
    await button.dispatch_event("click")
    await expect(texts).to_have_count(60)
    await expect(texts.first).to_have_text("old 1")
    await expect(texts.last).to_have_text("old 60")
    await expect(page.get_by_role("button", name="Load older")).to_be_hidden()
    no_trouble(browsing)


async def _count(server: ChatServer, room_id: int, token: str) -> int:
    res = await server.http.get(
        f"/v1/api/chat/rooms/{room_id}/messages",
        params={"limit": 200},
        headers={"Authorization": f"Bearer {token}"},
    )
    return len(res.json()["messages"])


async def _wait_for(probe: Callable[[], Awaitable[int]], want: int) -> None:
    for _ in range(200):
        if await probe() >= want:
            return
    pytest.fail(f"only {await probe()} of {want} messages were stored")
