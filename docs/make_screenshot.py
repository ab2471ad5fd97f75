"""Take docs/web-client.png: two people chatting in the bundled web client.

    .venv/bin/python docs/make_screenshot.py [--phone]

Starts the app on a free port with a throw-away SQLite database and drives
Debian's Chromium (/usr/bin/chromium) with Playwright, as the browser tests do.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect
from sanic import Sanic

from chatroom_server.app import create_app
from chatroom_server.db import apply_migrations
from chatroom_server.settings import Settings

HERE = Path(__file__).resolve().parent
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def sign_up(page: Page, base: str, name: str) -> None:
    await page.goto(base + "/")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Email").fill(f"{name}@example.com")
    await page.get_by_label("Password").fill("password1")
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


async def say(page: Page, text: str) -> None:
    await page.get_by_label("Message", exact=True).fill(text)
    await page.get_by_label("Message", exact=True).press("Enter")
    await expect(page.locator("#messages li.msg .text").last).to_have_text(text)


async def main(phone: bool) -> None:
    Sanic.test_mode = True
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite://{Path(tmp) / 'chat.sqlite3'}"
        await apply_migrations(url)
        app = create_app(Settings.load({}, database_url=url, bcrypt_rounds=4))
        port = free_port()
        server = await app.create_server(
            host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
        )
        assert server is not None
        await server.startup()
        await server.before_start()
        await server.after_start()
        base = f"http://127.0.0.1:{port}"
        viewport = {"width": 390, "height": 780} if phone else {"width": 1280, "height": 800}
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                ann = await (await browser.new_context(viewport=viewport)).new_page()
                ben = await (await browser.new_context(viewport=viewport)).new_page()
                await sign_up(ann, base, "ann")
                for room in ("general", "random", "release-planning"):
                    if phone and await ann.locator(".chat.room-open").count():
                        await ann.get_by_role("button", name="Back to rooms").click()
                    await ann.get_by_label("Room name").fill(room)
                    await ann.get_by_role("button", name="Create room").click()
                    await expect(ann.locator("#room-title")).to_have_text(room)
                if phone:
                    await ann.get_by_role("button", name="Back to rooms").click()
                await ann.get_by_role("button", name="general", exact=True).click()
                await sign_up(ben, base, "ben")
                await ben.get_by_role("button", name="general", exact=True).click()
                await expect(ann.locator("#online li")).to_have_count(2)
                await say(ann, "Morning! Is the new build up on staging?")
                await say(ben, "Yes, deployed ten minutes ago. Web client included.")
                await say(ann, "Nice. It reconnected by itself when my wifi dropped.")
                await say(ben, "It asks for everything since the last message ID,\nso nothing is lost.")
                await say(ann, "<b>and markup</b> stays plain text")
                await expect(ann.locator("#status")).to_have_text("Connected")
                name = "web-client-phone.png" if phone else "web-client.png"
                await ann.screenshot(path=str(HERE / name))
                await browser.close()
        finally:
            await server.before_stop()
            await server.close()
            await server.after_stop()


if __name__ == "__main__":
    asyncio.run(main("--phone" in sys.argv))
