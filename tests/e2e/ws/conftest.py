"""Helpers of the websocket suites: every way a websocket can go wrong, against the
real server and the real client.

Before the upgrade a refusal is an HTTP status (SPEC section 5); after it, a bad
frame gets an `error` frame and the connection stays open; limits (SPEC section 7)
close the socket with the documented code.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from ...conftest import TIMEOUT, ChatServer, auth, recv_json

PATHS = ("/ws", "/v1/ws")
PRESENCE = ("join", "leave")


# --------------------------------------------------------------------------- helpers


async def refused(url: str, **kwargs: Any) -> tuple[int, Any]:
    """Open a websocket that the server must refuse; return (HTTP status, JSON body)."""
    try:
        async with connect(url, open_timeout=TIMEOUT, **kwargs):
            pass
    except InvalidStatus as exc:
        response = exc.response
    else:
        pytest.fail(f"the server accepted a websocket it must refuse: {url} {kwargs}")
    try:
        body = json.loads(response.body)
    except (TypeError, ValueError):
        body = response.body
    return response.status_code, body


def assert_error_body(status: int, body: Any) -> None:
    """Refusals are JSON in Sanic's shape, never HTML (SPEC section 4)."""
    assert isinstance(body, dict), body
    assert set(body) == {"description", "status", "message"}, body
    assert body["status"] == status, body
    assert isinstance(body["message"], str) and body["message"]


async def next_frame(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next frame that is not a join/leave system line."""

    async def wait() -> dict[str, Any]:
        while True:
            frame = await recv_json(ws, timeout)
            if frame.get("Event") not in PRESENCE:
                return frame

    return await asyncio.wait_for(wait(), timeout)


def assert_error_frame(frame: dict[str, Any], codes: str | tuple[str, ...]) -> None:
    wanted = (codes,) if isinstance(codes, str) else codes
    assert set(frame) == {"Type", "Event", "Body"}, frame
    assert frame["Type"] == 1 and frame["Event"] == "error", frame
    body = frame["Body"]
    assert set(body) == {"chatUserId", "chatMessage", "code"}, frame
    assert body["chatUserId"] == -1, frame
    assert isinstance(body["chatMessage"], str) and body["chatMessage"].strip(), frame
    assert body["code"] in wanted, frame


async def send_json(ws: ClientConnection, value: Any) -> None:
    await ws.send(json.dumps(value))


async def expect_message(ws: ClientConnection, text: str) -> dict[str, Any]:
    """The next non-presence frame is the `message` carrying exactly `text`."""
    frame = await next_frame(ws)
    assert frame["Type"] == 1 and frame["Event"] == "message", frame
    assert frame["Body"]["chatMessage"] == text, frame
    return frame["Body"]  # type: ignore[no-any-return]


async def works(ws: ClientConnection, room_id: int, text: str = "still here") -> dict[str, Any]:
    """Prove the socket is open and usable: a valid message goes out and comes back."""
    await send_json(ws, {"chatRoomId": room_id, "chatMessage": text})
    return await expect_message(ws, text)


async def history(server: ChatServer, token: str, room_id: int) -> list[dict[str, Any]]:
    res = await server.http.get(
        f"/v1/api/chat/rooms/{room_id}/messages", params={"limit": 200}, headers=auth(token)
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["hasMore"] is False, "test rooms hold fewer than 200 messages"
    return body["messages"]  # type: ignore[no-any-return]


def hub_user_ids(server: ChatServer, room_id: int) -> list[int]:
    """Which users the server's hub holds a live connection for in this room."""
    conns = server.app.ctx.hub.connections(room_id)
    return [conn.user_id for conn in conns]
