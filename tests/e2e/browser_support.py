"""What the browser tests share: Chromium, the `browsing` fixture and page helpers.

The tests drive Debian's Chromium (/usr/bin/chromium) through Playwright. Without it
they skip with the reason; with CHATROOM_REQUIRE_SERVICES=1 (CI) they fail instead.
A failing test leaves screenshots of its pages in tmp/artifacts (or $CHATROOM_ARTIFACTS).
The fixtures reach the test modules through tests/e2e/conftest.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    Dialog,
    Locator,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from ..conftest import ROOT, ChatServer, service_missing

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
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 780}

expect.set_options(timeout=10_000)


@dataclass
class Browsing:
    """Browser contexts opened by one test, and everything that went wrong in them."""

    browser: Browser
    pages: list[Page] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def page(self, name: str, viewport: ViewportSize = DESKTOP) -> Page:
        context = await self.browser.new_context(viewport=viewport)
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


async def create_room(page: Page, name: str, *, private: bool = False) -> None:
    await page.get_by_label("Room name").fill(name)
    if private:
        await page.get_by_label("Private: members only").check()
    await page.get_by_role("button", name="Create room").click()
    await expect(page.locator("#room-title")).to_have_text(name)
    await expect(page.locator("#status")).to_have_text("Connected")


async def open_room(page: Page, name: str, *, private: bool = False) -> None:
    # A private room's button is read out with its lock: "design (private)".
    label = f"{name} (private)" if private else name
    await page.get_by_role("button", name=label, exact=True).click()
    await expect(page.locator("#room-title")).to_have_text(name)
    await expect(page.locator("#status")).to_have_text("Connected")


async def send(page: Page, text: str, *, button: bool = False) -> None:
    # Exact: "Message someone" (direct messages) and "Message bob" (the member list) too.
    box = page.get_by_label("Message", exact=True)
    await box.fill(text)
    if button:
        await page.get_by_role("button", name="Send").click()
    else:
        await box.press("Enter")
    await expect(box).to_have_value("")


def message(page: Page, text: str) -> Locator:
    return page.locator("#messages li.msg").filter(has=page.get_by_text(text, exact=True))


def room_sockets(page: Page) -> list[str]:
    """Every websocket URL the page opens from now on."""
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    return urls


async def token_of(page: Page) -> str:
    return str(await page.evaluate("JSON.parse(localStorage.getItem('chatroom.session')).token"))


async def second_tab(
    browsing: Browsing, server: ChatServer, of: Page, path: str = "/", **kw: Any
) -> Page:
    """A new browser context signed in with `of`'s session, at `path`."""
    page = await browsing.page(f"second tab {len(browsing.pages)}", **kw)
    await page.goto(server.base + "/")
    saved = await of.evaluate("localStorage.getItem('chatroom.session')")
    await page.evaluate("(s) => localStorage.setItem('chatroom.session', s)", saved)
    await page.goto(server.base + path)
    await page.reload()  # a change of #hash alone does not load the page again
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    return page


async def room_id(page: Page) -> int:
    found = re.fullmatch(r"#room-(\d+)", await page.evaluate("location.hash"))
    assert found, "the open room is in the address"
    return int(found.group(1))
