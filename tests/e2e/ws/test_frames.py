"""Bad frames after the upgrade get an `error` frame and the socket stays open; edge
cases that are fine are stored exactly (SPEC section 5).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ...conftest import ChatServer
from .conftest import assert_error_frame, expect_message, history, next_frame, send_json, works

# Everything here runs with the in-process broker and with Redis.
pytestmark = [pytest.mark.every_broker, pytest.mark.every_ws_path]


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
