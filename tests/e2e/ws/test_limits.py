"""Websocket limits (SPEC section 7): frame size, message rate, a stalled reader."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from websockets.asyncio.client import connect

from chatroom_server.realtime.connection import Connection, State

from ...conftest import ChatServer, close_code, eventually, recv_json
from .conftest import (
    assert_error_frame,
    expect_message,
    history,
    hub_user_ids,
    next_frame,
    send_json,
    works,
)

# Everything here runs with the in-process broker and with Redis.
pytestmark = [pytest.mark.every_broker, pytest.mark.every_ws_path]


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
            # The stalled client, once it reads what was buffered, sees why: 1008. On the
            # public path the close frame cannot be queued behind what the stalled
            # socket has not read (Sanic's send() waits for it): the socket is dropped.
            expected = 1008 if server.app.ctx.wire.name == "fast" else 1006
            assert await close_code(slow_ws) == expected
