"""CHATROOM_HEADER_TIMEOUT: headers complete in time from their first byte, or no answer.

Raw sockets, since an HTTP client library would not drip a header a byte at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from ..conftest import ChatServer, recv_event

HEADER_TIMEOUT = 1.5
DRIP_EVERY = 0.3
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: chat.test\r\nX-Padding: " + b"p" * 60 + b"\r\n\r\n"
# Dripped whole, REQUEST would take 30 s: far past the deadline.
assert len(REQUEST) * DRIP_EVERY > 10 * HEADER_TIMEOUT


@pytest.fixture
def server_settings() -> dict[str, Any]:
    return {"header_timeout": HEADER_TIMEOUT}


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_raw(server: ChatServer) -> Stream:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def drip(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write `data` one byte every DRIP_EVERY seconds (the slowloris client)."""
    for i in range(len(data)):
        try:
            writer.write(data[i : i + 1])
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(DRIP_EVERY)  # the pace of the attack, not a wait for an event


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sends until it closes; fails if it stays open past timeout."""
    received = b""
    async with asyncio.timeout(timeout):
        while chunk := await _read(reader):
            received += chunk
    return received


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(65536)
    except ConnectionError:
        return b""


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def test_a_dripping_client_is_dropped_at_the_deadline_from_its_first_byte(
    server: ChatServer,
) -> None:
    reader, writer = await open_raw(server)
    first_byte = time.monotonic()
    dripping = asyncio.create_task(drip(writer, REQUEST))
    try:
        received = await read_until_closed(reader, 3 * HEADER_TIMEOUT)
        elapsed = time.monotonic() - first_byte
        assert received == b""  # dropped, not answered (no 408)
        assert HEADER_TIMEOUT - 0.1 <= elapsed <= 2 * HEADER_TIMEOUT
        assert not dripping.done() or elapsed < len(REQUEST) * DRIP_EVERY
    finally:
        dripping.cancel()
        await close(writer)


async def test_a_connection_that_sends_nothing_is_dropped(server: ChatServer) -> None:
    opened = time.monotonic()
    reader, writer = await open_raw(server)
    try:
        assert await read_until_closed(reader, 3 * HEADER_TIMEOUT) == b""
        assert time.monotonic() - opened >= HEADER_TIMEOUT - 0.1
    finally:
        await close(writer)


async def test_a_slow_client_that_completes_its_headers_in_time_is_answered(
    server: ChatServer,
) -> None:
    reader, writer = await open_raw(server)
    try:
        third = len(REQUEST) // 3
        for part in (REQUEST[:third], REQUEST[third : 2 * third], REQUEST[2 * third :]):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.35)  # the client's pace: 0.7 s of a 1.5 s deadline
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200")
    finally:
        await close(writer)


async def test_keep_alive_idles_past_the_deadline_but_the_next_headers_have_one(
    server: ChatServer,
) -> None:
    reader, writer = await open_raw(server)
    try:
        writer.write(REQUEST)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        # Idle between requests is KEEP_ALIVE_TIMEOUT's (120 s), not the header deadline's.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 2 * HEADER_TIMEOUT)
        writer.write(REQUEST)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readexactly(length)
        # The third request drips: it has its own deadline, from its own first byte.
        first_byte = time.monotonic()
        dripping = asyncio.create_task(drip(writer, REQUEST))
        try:
            assert await read_until_closed(reader, 3 * HEADER_TIMEOUT) == b""
            assert time.monotonic() - first_byte <= 2 * HEADER_TIMEOUT
        finally:
            dripping.cancel()
    finally:
        await close(writer)


@pytest.mark.every_ws_path
async def test_an_idle_websocket_outlives_the_header_deadline(server: ChatServer) -> None:
    user, token = await server.signup()
    room = await server.create_room(token)
    async with server.connect(room["ID"], token) as ws:
        await recv_event(ws, "join")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 2 * HEADER_TIMEOUT)  # idle, not closed
        await ws.send('{"chatMessage": "still here"}')
        try:
            frame = await recv_event(ws, "message")
        except ConnectionClosed as exc:
            pytest.fail(f"the idle websocket was closed: {exc}")
        assert frame["Body"]["chatMessage"] == "still here"


def header_timeouts(metrics_text: str) -> float:
    (line,) = [
        line
        for line in metrics_text.splitlines()
        if line.startswith("chatroom_http_header_timeouts_total ")
    ]
    return float(line.split()[1])


async def test_healthz_answers_while_300_clients_drip_headers(
    server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    before = header_timeouts((await server.http.get("/metrics")).text)
    caplog.set_level(logging.WARNING)
    streams = [await open_raw(server) for _ in range(300)]
    try:
        for _, writer in streams:
            writer.write(b"G")
        dripping = [asyncio.create_task(drip(w, REQUEST[1:])) for _, w in streams]
        async with httpx.AsyncClient(base_url=server.base, timeout=1.0) as client:
            for _ in range(3):
                started = time.monotonic()
                assert (await client.get("/healthz")).status_code == 200
                assert time.monotonic() - started < 1.0
        # And every dripping connection is dropped, unanswered, by its deadline.
        answers = await asyncio.gather(
            *(read_until_closed(r, 4 * HEADER_TIMEOUT) for r, _ in streams)
        )
        assert set(answers) == {b""}
        for task in dripping:
            task.cancel()
        after = header_timeouts((await server.http.get("/metrics")).text)
        assert after - before >= 300
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        for _, writer in streams:
            await close(writer)


class TestPublicFallback:
    """CHATROOM_INTERNALS=off: Sanic's REQUEST_TIMEOUT is the header timeout, measured
    from the last byte read: a request that stalls that long gets 408 and is closed."""

    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"header_timeout": HEADER_TIMEOUT, "internals": "off"}

    async def test_a_stalled_request_gets_408(self, server: ChatServer) -> None:
        reader, writer = await open_raw(server)
        try:
            writer.write(REQUEST[:20])
            received = await read_until_closed(reader, 4 * HEADER_TIMEOUT)
            assert received.startswith(b"HTTP/1.1 408")
        finally:
            await close(writer)
