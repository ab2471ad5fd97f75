"""Every way a websocket can go wrong, against the real server and the real client.

Before the upgrade a refusal is an HTTP status (SPEC section 5); after it, a bad
frame gets an `error` frame and the connection stays open; limits (SPEC section 7)
close the socket with the documented code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from chatroom_server.realtime.connection import Connection, State
from chatroom_server.services import rooms as room_service

from ..conftest import (
    TIMEOUT,
    ChatServer,
    auth,
    claims_for,
    close_code,
    eventually,
    make_settings,
    recv_json,
    start_server,
)

# Everything here runs with the in-process broker and with Redis.
pytestmark = pytest.mark.every_broker


PATHS = ("/ws", "/v1/ws")
SECRET = "test-secret-" + "s" * 60  # long enough for HS512 as well
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


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tamper(token: str) -> str:
    """Same header and signature, a payload naming somebody else."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["UserName"] = "mallory"
    claims["UserID"] = claims["UserID"] + 1000
    claims["sub"] = str(claims["UserID"])
    return ".".join([header, b64(json.dumps(claims).encode()), signature])


def hub_user_ids(server: ChatServer, room_id: int) -> list[int]:
    """Which users the server's hub holds a live connection for in this room."""
    conns = server.app.ctx.hub.connections(room_id)
    return [conn.user_id for conn in conns]


# --------------------------------------------------------------------------- before the upgrade


class TestRefusedBeforeUpgrade:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"jwt_secret": SECRET}

    async def test_bad_tokens_get_401_on_both_paths(self, server: ChatServer) -> None:
        user, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        good = jwt.encode(claims_for(user), SECRET, algorithm="HS256")
        now = int(time.time())
        bad = {
            "expired": jwt.encode(
                claims_for(user, iat=now - 7200, exp=now - 60), SECRET, algorithm="HS256"
            ),
            "alg none": jwt.encode(claims_for(user), None, algorithm="none"),
            "alg HS512": jwt.encode(claims_for(user), SECRET, algorithm="HS512"),
            "tampered": tamper(good),
            "other secret": jwt.encode(
                claims_for(user), "another-secret-of-32-characters!!", algorithm="HS256"
            ),
            "garbage": "not.a.jwt",
        }
        for path in PATHS:
            # Positive controls: the token we forge from is accepted, and so is the
            # server's own, by query and by header; and a default `*` origin accepts any.
            for kwargs in (
                {"url": server.ws_url(f"room_id={rid}&jwt={good}", path)},
                {
                    "url": server.ws_url(f"room_id={rid}&jwt={token}", path),
                    "origin": "http://anywhere.example",
                },
                {"url": server.ws_url(f"room_id={rid}", path), "additional_headers": auth(token)},
            ):
                async with connect(kwargs.pop("url"), **kwargs) as ws:
                    await works(ws, rid, f"ok via {path}")

            for query in (f"room_id={rid}", f"room_id={rid}&jwt="):
                status, body = await refused(server.ws_url(query, path))
                assert status == 401, (path, query)
                assert_error_body(401, body)
            for name, value in bad.items():
                status, body = await refused(server.ws_url(f"room_id={rid}&jwt={value}", path))
                assert status == 401, (path, name, "query")
                assert_error_body(401, body)
                status, _ = await refused(
                    server.ws_url(f"room_id={rid}", path), additional_headers=auth(value)
                )
                assert status == 401, (path, name, "header")
            status, _ = await refused(
                server.ws_url(f"room_id={rid}", path),
                additional_headers={"Authorization": f"Basic {token}"},
            )
            assert status == 401, (path, "not a Bearer header")

        # Nothing above was stored except the positive controls.
        texts = [m["chatMessage"] for m in await history(server, token, rid)]
        assert texts == [f"ok via {p}" for p in PATHS for _ in range(3)]

    async def test_bad_room_ids(self, server: ChatServer) -> None:
        _, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        doomed = (await server.create_room(token, "doomed"))["ID"]
        await room_service.delete_room(doomed)
        not_integers = [
            "abc",
            "-1",
            "1.5",
            "1e3",
            "0x10",
            "+1",
            " 1",
            "1 ",
            f"{rid}abc",
            "%F0%9F%98%80",
            # Unicode digits are not a wire integer: "²" passes str.isdigit() yet int()
            # refuses it, and "１" (fullwidth) or "٣" (Arabic-Indic) are not ASCII.
            "²",
            "１",
            "٣",
        ]
        for path in PATHS:
            for query in (f"jwt={token}", f"room_id=&jwt={token}"):
                status, body = await refused(server.ws_url(query, path))
                assert status == 400, (path, query, body)
                assert_error_body(400, body)
                assert "room_id" in body["message"]
            for raw in not_integers:
                status, body = await refused(
                    server.ws_url(f"room_id={raw.replace(' ', '%20')}&jwt={token}", path)
                )
                assert status == 400, (path, raw, body)
                assert_error_body(400, body)
            # An integer too large for any ID is no room at all.
            status, body = await refused(server.ws_url(f"room_id={'9' * 30}&jwt={token}", path))
            assert status in (400, 404), (path, body)
            assert_error_body(status, body)
            for missing in (rid + 10_000, doomed):
                status, body = await refused(server.ws_url(f"room_id={missing}&jwt={token}", path))
                assert status == 404, (path, missing, body)
                assert_error_body(404, body)
            # The existing room still works on this path.
            async with server.connect(rid, token, path=path) as ws:
                await works(ws, rid, f"ok via {path}")


class TestOriginCheck:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"ws_origins": "http://good.example"}

    async def test_only_listed_origins_may_connect(self, server: ChatServer) -> None:
        _, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        for path in PATHS:
            url = server.ws_url(f"room_id={rid}&jwt={token}", path)
            for origin in (
                "http://evil.example",
                "http://good.example.evil.example",
                "https://good.example",
                "null",
            ):
                status, body = await refused(url, origin=origin)
                assert status == 403, (path, origin)
                assert_error_body(403, body)
            async with connect(url, origin="http://good.example") as ws:
                await works(ws, rid, f"good origin {path}")
            async with connect(url) as ws:  # no Origin header: not a browser
                await works(ws, rid, f"no origin {path}")


# --------------------------------------------------------------------------- bad frames


# (what the client sends, the acceptable error codes)
BAD_FRAMES: list[tuple[str, Callable[[int, int], str | bytes], tuple[str, ...]]] = [
    ("not json", lambda rid, other: "{not json", ("invalid_json",)),
    ("empty frame", lambda rid, other: "", ("invalid_json",)),
    ("truncated json", lambda rid, other: '{"chatMessage": "hi"', ("invalid_json",)),
    ("binary, not UTF-8", lambda rid, other: b"\xff\xfe\xfd", ("invalid_json", "invalid_message")),
    (
        "deeply nested",
        lambda rid, other: "[" * 3000 + "]" * 3000,
        ("invalid_json", "invalid_message"),
    ),
    ("array", lambda rid, other: json.dumps([rid, "hi"]), ("invalid_message",)),
    ("number", lambda rid, other: "42", ("invalid_message",)),
    ("string", lambda rid, other: '"hi"', ("invalid_message",)),
    ("null", lambda rid, other: "null", ("invalid_message",)),
    ("no chatMessage", lambda rid, other: json.dumps({"chatRoomId": rid}), ("invalid_message",)),
    (
        "chatMessage null",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": None}),
        ("invalid_message",),
    ),
    (
        "chatMessage number",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": 5}),
        ("invalid_message",),
    ),
    (
        "chatMessage list",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": ["hi"]}),
        ("invalid_message",),
    ),
    (
        "chatMessage object",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": {"t": "hi"}}),
        ("invalid_message",),
    ),
    (
        "another room",
        lambda rid, other: json.dumps({"chatRoomId": other, "chatMessage": "hi"}),
        ("wrong_room",),
    ),
    (
        "a room that does not exist",
        lambda rid, other: json.dumps({"chatRoomId": rid + 10_000, "chatMessage": "hi"}),
        ("wrong_room",),
    ),
    (
        "chatRoomId not a number",
        lambda rid, other: json.dumps({"chatRoomId": "x", "chatMessage": "hi"}),
        ("invalid_message",),
    ),
    (
        "chatRoomId a fraction",
        lambda rid, other: json.dumps({"chatRoomId": rid + 0.5, "chatMessage": "hi"}),
        ("invalid_message", "wrong_room"),
    ),
    (
        "chatRoomId a boolean",
        lambda rid, other: json.dumps({"chatRoomId": True, "chatMessage": "hi"}),
        ("invalid_message", "wrong_room"),
    ),
    (
        "chatRoomId beyond 64 bits",
        lambda rid, other: '{"chatRoomId": ' + "9" * 30 + ', "chatMessage": "hi"}',
        ("invalid_json", "invalid_message", "wrong_room"),
    ),
    (
        "empty message",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": ""}),
        ("invalid_message",),
    ),
    (
        "whitespace only",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": " \n\t  \n"}),
        ("invalid_message",),
    ),
    (
        "4,001 characters",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": "x" * 4001}),
        ("message_too_long",),
    ),
    (
        "4,001 two-byte characters",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": "é" * 4001}),
        ("message_too_long",),
    ),
    (
        "60,000 characters, under the frame limit",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": "y" * 60_000}),
        ("message_too_long",),
    ),
    (
        "bell",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": "ding\x07"}),
        ("invalid_message",),
    ),
    (
        "carriage return",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": "line\r\nnext"}),
        ("invalid_message",),
    ),
    (
        "NUL",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": "a\x00b"}),
        ("invalid_message",),
    ),
    (
        "escape",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": "\x1b[31mred"}),
        ("invalid_message",),
    ),
    (
        "DEL",
        lambda rid, other: json.dumps({"chatRoomId": rid, "chatMessage": "a\x7fb"}),
        ("invalid_message",),
    ),
    (
        "clientMessageId empty",
        lambda rid, other: json.dumps({"chatMessage": "hi", "clientMessageId": ""}),
        ("invalid_message",),
    ),
    (
        "clientMessageId 65 characters",
        lambda rid, other: json.dumps({"chatMessage": "hi", "clientMessageId": "c" * 65}),
        ("invalid_message",),
    ),
    (
        "clientMessageId not a string",
        lambda rid, other: json.dumps({"chatMessage": "hi", "clientMessageId": 7}),
        ("invalid_message",),
    ),
]

# (what the client sends, the exact text stored and echoed)
GOOD_FRAMES: list[tuple[str, Callable[[int], dict[str, Any]], str]] = [
    (
        "exactly 4,000 characters",
        lambda rid: {"chatRoomId": rid, "chatMessage": "x" * 4000},
        "x" * 4000,
    ),
    (
        "exactly 4,000 two-byte characters",
        lambda rid: {"chatRoomId": rid, "chatMessage": "é" * 4000},
        "é" * 4000,
    ),
    (
        "newline and tab",
        lambda rid: {"chatRoomId": rid, "chatMessage": "line one\nline\ttwo\n"},
        "line one\nline\ttwo\n",
    ),
    (
        "surrounding spaces and markup kept",
        lambda rid: {"chatRoomId": rid, "chatMessage": "  <b>héllo</b> 👋 &amp;  "},
        "  <b>héllo</b> 👋 &amp;  ",
    ),
    (
        "unknown fields ignored",
        lambda rid: {
            "chatRoomId": rid,
            "chatMessage": "extra",
            "Type": 9,
            "chatUserId": -1,
            "chatUser": "admin",
            "ID": 1,
            "foo": {"bar": [1]},
        },
        "extra",
    ),
    ("chatRoomId omitted", lambda rid: {"chatMessage": "no room id"}, "no room id"),
]


class TestErrorFrames:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        # The bad frames below outnumber the default burst; rate limiting has its own test.
        return {"ws_rate": 1000.0, "ws_burst": 1000}

    async def test_bad_frames_get_an_error_and_the_socket_stays_open(
        self, server: ChatServer
    ) -> None:
        alice, alice_token = await server.signup("alice")
        _, bob_token = await server.signup("bob")
        rid = (await server.create_room(alice_token))["ID"]
        other = (await server.create_room(alice_token, "other"))["ID"]
        sent_ok: list[str] = []
        async with (
            server.connect(rid, alice_token) as alice_ws,
            server.connect(rid, bob_token) as bob_ws,
            server.connect(other, bob_token) as bystander_ws,
        ):
            for i, (name, make, codes) in enumerate(BAD_FRAMES):
                await alice_ws.send(make(rid, other))
                frame = await next_frame(alice_ws)
                try:
                    assert_error_frame(frame, codes)
                except AssertionError as exc:
                    raise AssertionError(f"{name}: {exc}") from None
                # Still open, still usable: the very next valid frame goes through.
                text = f"after {name} #{i}"
                body = await works(alice_ws, rid, text)
                assert body["chatUserId"] == alice["ID"]
                sent_ok.append(text)

            # Bob, in the same room, saw the valid messages only, in order: none of the
            # rejected ones, and none of alice's error frames.
            for text in sent_ok:
                await expect_message(bob_ws, text)
            # The other room got nothing, not even the wrong_room attempt.
            await works(bystander_ws, other, "other room is quiet")

        stored = await history(server, alice_token, rid)
        assert [m["chatMessage"] for m in stored] == sent_ok
        stored_other = await history(server, alice_token, other)
        assert [m["chatMessage"] for m in stored_other] == ["other room is quiet"]

    async def test_edge_cases_that_are_accepted_exactly(self, server: ChatServer) -> None:
        alice, alice_token = await server.signup("alice")
        _, bob_token = await server.signup("bob")
        rid = (await server.create_room(alice_token))["ID"]
        async with (
            server.connect(rid, alice_token) as alice_ws,
            server.connect(rid, bob_token) as bob_ws,
        ):
            echoed = []
            for name, make, text in GOOD_FRAMES:
                await send_json(alice_ws, make(rid))
                frame = await next_frame(alice_ws)
                assert frame["Event"] == "message", (name, frame)
                body = frame["Body"]
                assert body["chatMessage"] == text, name
                assert body["chatRoomId"] == rid, name
                assert body["chatUserId"] == alice["ID"] and body["chatUser"] == "alice", name
                assert "foo" not in body and "Type" not in body, name
                echoed.append(body)
            for body in echoed:
                assert (await next_frame(bob_ws))["Body"] == body
        stored = await history(server, alice_token, rid)
        assert [m["chatMessage"] for m in stored] == [text for _, _, text in GOOD_FRAMES]
        assert [m["ID"] for m in stored] == [b["ID"] for b in echoed]


# --------------------------------------------------------------------------- frame size


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_frame_over_the_limit_closes_with_1009(
    server: ChatServer, compression: str | None
) -> None:
    _, token = await server.signup()
    bob, bob_token = await server.signup()
    rid = (await server.create_room(token))["ID"]
    async with (
        # The client must not be the one refusing the big frame.
        server.connect(rid, token, max_size=2**22, compression=compression) as ws,
        server.connect(rid, bob_token) as bob_ws,
    ):
        await works(ws, rid, "before the big one")
        # Highly compressible: should compression ever be negotiated, the limit still
        # applies after inflating (today the server declines permessage-deflate).
        await send_json(ws, {"chatRoomId": rid, "chatMessage": "z" * (70 * 1024)})
        assert await close_code(ws) == 1009
        await expect_message(bob_ws, "before the big one")
        await works(bob_ws, rid, "the room goes on")
        await eventually(
            lambda: hub_user_ids(server, rid) == [bob["ID"]], "the closed connection leaves the hub"
        )
    stored = [m["chatMessage"] for m in await history(server, token, rid)]
    assert stored == ["before the big one", "the room goes on"]


# --------------------------------------------------------------------------- flood


async def test_flood_is_rate_limited_and_the_socket_stays_open(server: ChatServer) -> None:
    _, token = await server.signup("flooder")
    _, bob_token = await server.signup("bob")
    rid = (await server.create_room(token))["ID"]
    frames = 40
    async with server.connect(rid, token) as ws, server.connect(rid, bob_token) as bob_ws:
        for i in range(frames):
            await send_json(ws, {"chatRoomId": rid, "chatMessage": f"flood {i}"})
        # Every frame is answered by exactly one frame: its message, or rate_limited.
        replies = [await next_frame(ws) for _ in range(frames)]
        delivered = [f["Body"] for f in replies if f["Event"] == "message"]
        limited = [f for f in replies if f["Event"] != "message"]
        for frame in limited:
            assert_error_frame(frame, "rate_limited")
        assert limited, "40 frames at once must exceed a burst of 20"
        # The burst of 20 was available, so at least those went through, in order.
        assert len(delivered) >= 20
        assert len(delivered) < frames
        texts = [b["chatMessage"] for b in delivered]
        assert texts[:20] == [f"flood {i}" for i in range(20)]
        assert texts == sorted(texts, key=lambda t: int(t.split()[1]))

        # The socket stays open: once the bucket refills, a message goes through.
        for _ in range(200):
            await send_json(ws, {"chatRoomId": rid, "chatMessage": "after the flood"})
            frame = await next_frame(ws)
            if frame["Event"] == "message":
                assert frame["Body"]["chatMessage"] == "after the flood"
                delivered.append(frame["Body"])
                break
            assert_error_frame(frame, "rate_limited")
            await asyncio.sleep(0.02)  # polling for the bucket to refill; there is no event
        else:
            pytest.fail("the flooder could never send again")

        # Bob is unaffected: he gets exactly what was stored, in order, nothing more.
        bob_got = [(await next_frame(bob_ws))["Body"] for _ in delivered]
        assert bob_got == delivered
        await works(bob_ws, rid, "bob is fine")
        delivered.append(await expect_message(ws, "bob is fine"))

    stored = await history(server, token, rid)
    assert [m["ID"] for m in stored] == [b["ID"] for b in delivered]
    assert len(stored) - 2 < frames


# --------------------------------------------------------------------------- token expiry


class TestTokenExpiry:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"token_ttl": 2}

    async def test_socket_closes_with_1008_when_the_token_expires(self, server: ChatServer) -> None:
        user, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        async with server.connect(rid, token) as ws:
            await works(ws, rid, "while the token is valid")
            assert await close_code(ws, timeout=6) == 1008
            # Closed because of the expiry, not before it.
            assert time.time() >= exp - 0.5
        await eventually(
            lambda: user["ID"] not in hub_user_ids(server, rid),
            "the expired connection leaves the hub",
        )
        status, _ = await refused(server.ws_url(f"room_id={rid}&jwt={token}"))
        assert status == 401
        # A fresh token still works.
        _, fresh = await server.signup()
        async with server.connect(rid, fresh) as ws:
            await works(ws, rid, "fresh token")


# --------------------------------------------------------------------------- room deleted


async def test_deleting_a_room_closes_its_sockets_with_1001(server: ChatServer) -> None:
    _, alice_token = await server.signup()
    _, bob_token = await server.signup()
    rid = (await server.create_room(alice_token))["ID"]
    other = (await server.create_room(alice_token, "other"))["ID"]
    async with (
        server.connect(rid, alice_token) as a1,
        server.connect(rid, alice_token) as a2,
        server.connect(rid, bob_token) as b,
        server.connect(other, bob_token) as elsewhere,
    ):
        await works(a1, rid, "before the delete")
        await room_service.delete_room(rid)
        codes = await asyncio.gather(*(close_code(ws) for ws in (a1, a2, b)))
        assert codes == [1001, 1001, 1001]
        await eventually(
            lambda: rid not in server.app.ctx.hub.rooms(), "the deleted room leaves the hub"
        )
        # Sockets in other rooms are untouched.
        await works(elsewhere, other, "other room still open")
    status, _ = await refused(server.ws_url(f"room_id={rid}&jwt={alice_token}"))
    assert status == 404


# --------------------------------------------------------------------------- shutdown


async def test_server_shutdown_closes_sockets_with_1001(database_url: str) -> None:
    srv, stop = await start_server(make_settings(database_url))
    stopped = False
    try:
        _, token = await srv.signup()
        r1 = (await srv.create_room(token, "one"))["ID"]
        r2 = (await srv.create_room(token, "two"))["ID"]
        async with srv.connect(r1, token) as ws1, srv.connect(r2, token) as ws2:
            await works(ws1, r1, "before shutdown")
            await works(ws2, r2, "before shutdown")
            stopping = asyncio.create_task(stop())
            stopped = True
            codes = await asyncio.gather(close_code(ws1), close_code(ws2))
            await asyncio.wait_for(stopping, TIMEOUT)
            assert codes == [1001, 1001]
    finally:
        if not stopped:
            await stop()


# --------------------------------------------------------------------------- slow consumer


class TestSlowConsumer:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        # Big messages fill the kernel's socket buffers in few sends.
        return {"ws_queue": 5, "ws_rate": 1000.0, "ws_burst": 1000, "max_message_chars": 60_000}

    async def test_a_stalled_reader_is_closed_and_nobody_else_waits(
        self, server: ChatServer
    ) -> None:
        _, sender_token = await server.signup("sender")
        reader_user, reader_token = await server.signup("reader")
        slow_user, slow_token = await server.signup("slow")
        rid = (await server.create_room(sender_token))["ID"]
        slow_id = slow_user["ID"]
        hub = server.app.ctx.hub

        def slow_conn() -> Connection | None:
            for conn in hub.connections(rid):
                if conn.user_id == slow_id:
                    return conn
            return None

        # A small receive buffer, so the kernel absorbs less before the server's queue
        # has to fill; the client library itself reads at most one frame ahead.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        slow_ctx = connect(
            server.ws_url(f"room_id={rid}&jwt={slow_token}"),
            sock=sock,
            max_queue=1,
            close_timeout=1,  # if this test fails, do not wait long on the stalled socket
        )

        async with (
            server.connect(rid, reader_token) as reader_ws,
            server.connect(rid, sender_token) as sender_ws,
            slow_ctx as slow_ws,
        ):
            await eventually(lambda: slow_conn() is not None, "the slow client joined")
            received: list[dict[str, Any]] = []
            left: list[int] = []

            async def read_all() -> None:
                while True:
                    frame = await recv_json(reader_ws)
                    if frame["Event"] == "message":
                        received.append(frame["Body"])
                    elif frame["Event"] == "leave":
                        left.append(frame["Body"]["user"]["ID"])

            reader = asyncio.create_task(read_all())
            sent: list[dict[str, Any]] = []

            async def send_one(i: int) -> None:
                text = f"{i:05d} " + "m" * 59_000
                await send_json(sender_ws, {"chatRoomId": rid, "chatMessage": text})
                # The sender is never held up by the stalled reader.
                sent.append(await expect_message(sender_ws, text))

            try:
                for i in range(2000):
                    await send_one(i)
                    conn = slow_conn()
                    if conn is None or conn.state is not State.OPEN:
                        break
                else:
                    pytest.fail("the stalled connection was never closed")
                # Delivery to everybody else goes on.
                for i in range(len(sent), len(sent) + 5):
                    await send_one(i)
                await eventually(
                    lambda: len(received) >= len(sent), "the active reader gets every message"
                )
                # Closed means gone: the hub no longer holds it, the room sees it leave.
                await eventually(
                    lambda: slow_conn() is None,
                    "the closed slow connection leaves the hub",
                    timeout=3,
                )
                assert hub.connection_count == 2
                await eventually(
                    lambda: slow_id in left, "the room is told the slow one left", timeout=3
                )
            finally:
                reader.cancel()
                await asyncio.wait({reader})

            assert [m["ID"] for m in received] == [m["ID"] for m in sent]
            assert received == sent
            assert reader_user["ID"] not in left
            # The stalled client, once it reads what was buffered, sees why: 1008.
            assert await close_code(slow_ws) == 1008


class TestPing:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"ping_interval": 0.3}

    async def test_a_peer_that_answers_pings_stays(self, server: ChatServer) -> None:
        _, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        keepalive = server.app.ctx.keepalive
        async with server.connect(rid, token) as ws:
            first = keepalive.rounds
            # The client library answers every ping; three rounds later it is still here.
            await eventually(lambda: keepalive.rounds >= first + 3, "three ping rounds")
            await works(ws, rid, "after the pings")
            assert server.app.ctx.hub.connection_count == 1

    async def test_a_peer_that_never_answers_pings_is_dropped(self, server: ChatServer) -> None:
        _, token = await server.signup()
        room = await server.create_room(token)
        # A raw socket: it completes the handshake, then never reads, so never pongs.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            (
                f"GET /ws?room_id={room['ID']}&jwt={token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert b" 101 " in status
        hub = server.app.ctx.hub
        await eventually(lambda: hub.connection_count == 1, "the socket to join the hub")
        await eventually(lambda: hub.connection_count == 0, "the silent peer to be dropped")
        writer.close()


async def test_a_socket_whose_peer_closed_is_written_to_no_more(server: ChatServer) -> None:
    """The peer's close frame marks the transport closed at once, before the handler ends."""
    from chatroom_server.web.ws import SanicTransport, WatchedProtocol

    _, token = await server.signup()
    rid = (await server.create_room(token))["ID"]
    hub = server.app.ctx.hub
    async with server.connect(rid, token) as ws:
        await eventually(lambda: len(hub.connections(rid)) == 1, "the socket in the hub")
        (conn,) = hub.connections(rid)
        transport = conn.transport
        assert isinstance(transport, SanicTransport)
        assert transport.open and transport.watched
        assert type(transport.proto) is WatchedProtocol
        transport.write(b"\x81\x02hi")  # a text frame "hi": the client reads it
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hi"
        await ws.close()
    assert transport.open is False
    with pytest.raises(ConnectionError):
        transport.write(b"\x81\x02hi")
