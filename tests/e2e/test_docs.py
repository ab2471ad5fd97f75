"""/docs works with no internet: ReDoc comes from this server, nothing from another
origin, and a Content-Security-Policy lets scripts run only from 'self' (SPEC 14).

The browser test renders the page in Debian's Chromium with every request to
another origin aborted, and fails on any such request or policy violation.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Request, Route, expect

from chatroom_server.web.openapi import REDOC_SCRIPT

from ..conftest import ChatServer
from .browser_support import Browsing, no_trouble

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# ReDoc 2.x's sidebar always asks for Redocly's logo from its CDN (the bundle is kept
# byte for byte as released): the policy's img-src blocks it, and ReDoc drops the image.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"

# Anything that names a host: http://x, https://x, or a protocol-relative //x.
FOREIGN = re.compile(r"""(?:https?:)?//[\w.-]+""")


def directives(policy: str) -> dict[str, list[str]]:
    parts = (d.split() for d in policy.split(";") if d.strip())
    return {name: values for name, *values in parts}


async def test_docs_page_names_no_other_origin_and_sends_a_policy(server: ChatServer) -> None:
    res = await server.http.get("/docs")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    assert FOREIGN.findall(res.text) == []
    assert "fonts.googleapis" not in res.text and "cdn." not in res.text
    scripts = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", res.text)
    assert scripts == [REDOC_SCRIPT]
    assert 'spec-url="/docs/openapi.json"' in res.text

    policy = directives(res.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert "'unsafe-eval'" not in sum(policy.values(), [])
    assert res.headers["x-content-type-options"] == "nosniff"

    # The same page under its other name, and the document itself, carry the policy too.
    for path in ("/docs/redoc", "/docs/openapi.json"):
        other = await server.http.get(path)
        assert other.status_code == 200, path
        assert other.headers["content-security-policy"] == res.headers["content-security-policy"]


async def test_the_redoc_script_is_served_from_here(server: ChatServer) -> None:
    res = await server.http.get(REDOC_SCRIPT)
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/javascript")
    assert res.headers["x-content-type-options"] == "nosniff"
    assert "immutable" in res.headers["cache-control"]  # the version is in its path
    assert b"ReDoc" in res.content[:2000] or b"redoc" in res.content
    assert len(res.content) > 500_000  # the whole bundle, not a stub


async def test_swagger_ui_which_would_load_from_a_cdn_is_off(server: ChatServer) -> None:
    for path in ("/docs/swagger", "/docs/oauth2-redirect.html", "/docs/swagger-config"):
        assert (await server.http.get(path)).status_code == 404, path


async def test_the_script_and_page_are_not_in_the_api_document(server: ChatServer) -> None:
    doc = (await server.http.get("/docs/openapi.json")).json()
    assert not [path for path in doc["paths"] if path.startswith("/docs")]


async def test_docs_render_offline_in_a_browser(server: ChatServer, browsing: Browsing) -> None:
    page = await browsing.page("docs")
    foreign: list[str] = []
    violations: list[str] = []

    async def only_this_origin(route: Route, request: Request) -> None:
        if request.url.startswith(server.base + "/") or request.url.startswith(("blob:", "data:")):
            await route.continue_()
        else:
            foreign.append(request.url)
            await route.abort()

    def console(message: Any) -> None:
        if "Content Security Policy" in message.text or message.type == "error":
            if REDOCLY_LOGO not in message.text:
                violations.append(message.text)

    await page.route("**/*", only_this_origin)
    page.on("console", console)
    await page.goto(server.base + "/docs")
    # ReDoc rendered the document: its title, an operation, and the search box (a worker).
    await expect(page.locator("h1").filter(has_text="chatroom-server")).to_be_visible()
    await expect(page.get_by_text("/v1/api/auth/login").first).to_be_attached()
    await page.get_by_placeholder("Search").fill("login")
    results = page.get_by_role("search").get_by_role("menuitem")
    await expect(results.filter(has_text="Log in").first).to_be_visible()
    await expect(page.get_by_alt_text("redocly logo")).to_have_count(0)  # blocked, dropped
    assert foreign == []
    assert violations == []
    no_trouble(browsing)
