"""The bundled web client: `/` (index.html) and its assets under /static/.

The files ship inside the package (chatroom_server/static). Only files that exist
there when the app starts are served, so a request can never name another path.
"""

from __future__ import annotations

from importlib import resources

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

from ..errors import NotFound

bp = Blueprint("static")

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        # CSP3: 'self' also matches ws: and wss: to this same host (any other host is refused).
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files: revalidate every time, so an upgrade is picked up at once.
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, bytes]:
    folder = resources.files("chatroom_server") / "static"
    files: dict[str, bytes] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            files[entry.name] = entry.read_bytes()
    return files


FILES = _load()


def _serve(name: str) -> HTTPResponse:
    body = FILES.get(name)
    if body is None:
        raise NotFound("No such file.")
    content_type = CONTENT_TYPES["." + name.rpartition(".")[2]]
    return raw(body, content_type=content_type, headers=HEADERS)


@bp.get("/")
async def index(request: Request) -> HTTPResponse:
    return _serve("index.html")


@bp.get("/static/<name:str>")
async def asset(request: Request, name: str) -> HTTPResponse:
    return _serve(name)
