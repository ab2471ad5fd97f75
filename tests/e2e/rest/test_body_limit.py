"""A body over the limit: the client that keeps sending still reads the 413.

The server answers 413 and then closes; bytes the client is still sending that the
server never read make the kernel answer with a reset, and the client loses the
413 it had not yet read (httpx.ReadError). So the server reads the rest of a
refused body, within a bound: after the answer, with a lingering close
(web/internals/linger.py), or before answering on Sanic's own protocol
(CHATROOM_INTERNALS=off; web/internals/http.py). Both run here (every_ws_path).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from chatroom_server import protocol
from chatroom_server.web.internals.http import DRAIN_BYTES
from chatroom_server.web.internals.linger import LINGER_BYTES

from ...conftest import TIMEOUT, ChatServer
from .conftest import CREATE, LOGIN, SIGNUP, assert_error

ROUNDS = 20
PIECE = 64 * 1024
TOO_LARGE = "The request body is too large."
BOUND = max(DRAIN_BYTES, LINGER_BYTES)


def body_pieces(size: int) -> list[bytes]:
    """`size` bytes of a JSON object, in pieces of 64 KiB."""
    raw = b'{"pad": "' + b"x" * (size - 11) + b'"}'
    return [raw[i : i + PIECE] for i in range(0, len(raw), PIECE)]


async def send_whole_body(
    port: int, path: str, pieces: list[bytes], chunked: bool, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    """POST the whole body on a raw socket whatever the server does meanwhile, then
    read the answer to the end; the status and the JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        framing = (
            "Transfer-Encoding: chunked"
            if chunked
            else f"Content-Length: {sum(len(p) for p in pieces)}"
        )
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{auth}{framing}\r\n\r\n"
        )
        writer.write(head.encode())
        for piece in pieces:
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        raw = await asyncio.wait_for(reader.read(), TIMEOUT)  # to the server's close
    finally:
        writer.close()
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    assert headers.get("content-type", "").startswith("application/json"), raw[:300]
    assert len(body) == int(headers["content-length"]), raw[:300]
    return int(status_line.split(" ")[1]), json.loads(body)


@pytest.mark.every_ws_path
async def test_a_client_still_sending_reads_the_413_every_time(server: ChatServer) -> None:
    _, token = await server.signup()
    pieces = body_pieces(2 * 1024 * 1024)
    for round_number in range(ROUNDS):
        for chunked in (False, True):
            path = (SIGNUP, LOGIN, CREATE)[round_number % 3]
            status, body = await send_whole_body(server.port, path, pieces, chunked, token)
            where = f"round {round_number}, {'chunked' if chunked else 'Content-Length'}"
            assert status == 413, f"{where}: {status} {body}"
            assert body == protocol.error_json(413, TOO_LARGE), f"{where}: {body}"


async def test_httpx_still_sending_reads_the_413_every_time(server: ChatServer) -> None:
    big = b"".join(body_pieces(2 * 1024 * 1024))

    async def chunks() -> Any:
        for piece in body_pieces(2 * 1024 * 1024):
            yield piece

    headers = {"content-type": "application/json"}
    for _ in range(ROUNDS):
        # A connection of its own each time: the 413 closes it.
        async with httpx.AsyncClient(base_url=server.base, timeout=TIMEOUT) as http:
            res = await http.post(SIGNUP, content=big, headers=headers)
            assert_error(res, 413, "too large")
            res = await http.post(SIGNUP, content=chunks(), headers=headers)
            assert "content-length" not in res.request.headers
            assert_error(res, 413, "too large")


@pytest.mark.every_ws_path
async def test_the_rest_of_a_refused_body_is_read_only_up_to_a_bound(server: ChatServer) -> None:
    """A client announcing far more than the bound does not hold the connection: the
    server stops reading (and closes) long before the client is done."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    announced = 64 * BOUND
    writer.write(
        b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (SIGNUP.encode(), announced)
    )
    piece = b"x" * (1024 * 1024)
    sent = 0
    try:
        while sent < announced:
            writer.write(piece)
            await asyncio.wait_for(writer.drain(), TIMEOUT)
            sent += len(piece)
    except ConnectionError:
        pass  # the server closed: what this test waits for
    finally:
        writer.close()
    assert sent < 4 * BOUND, f"the server read {sent} bytes of a refused body"
    # The server is fine afterwards.
    assert (await server.http.get("/healthz")).status_code == 200
    del reader
